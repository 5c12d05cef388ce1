"""DNN+NeuroSim's accounting of a layer-by-layer chip, beside pimgen's own (issue 15).

pimgen's cycle model (``gen.perf.estimate``) runs each layer's stages overlapped and
double-buffered, as the RTL does. The seed paper's figures come from DNN+NeuroSim V1.x, which
accounts differently in two ways; this module reproduces both on pimgen's schedule, so that
``pimgen compare`` can show the gap between the paper and pimgen by mechanism:

1. **Stages added, not overlapped.** NeuroSim's layer latency is the sum of its subarray
   read (MVM, ADC, shift-add), buffer and interconnect latencies
   (``Inference_pytorch/NeuroSIM/main.cpp``: ``chipReadLatency += layerReadLatency``, the
   buffer and IC latencies summed alongside). Here: ``gen.perf.estimate(plan, overlap=False)``,
   the same :func:`gen.schedule.schedule_layer` stages run back to back.

2. **Extra duplication into spare capacity** (layer-by-layer chip too). NeuroSim's floorplan
   gives every layer whole PEs and tiles and then fills their idle subarrays/PEs with copies
   of the layer's weights, which process different input vectors in parallel; the tile's
   read, buffer and IC latencies are divided by the copies
   (``Inference_pytorch/NeuroSIM/Tile.cpp``, ``TileCalculatePerformance``:
   ``*readLatency /= (speedUpRow*speedUpCol)``, the same for ``bufferLatency`` and
   ``icLatency``). The copies are counted in ``Chip.cpp``:

   * ``SubArrayDup`` (novel- and conventional-mapped layers): when the layer's matrix is no
     larger than a PE in one dimension, ``dupRow = max(1, floor(subarrays per PE row /
     subarrays the matrix needs in rows))`` and the same for columns; for a novel layer the
     matrix is one kernel position's ``Cin x Cout``, which is small, so a novel PE of the
     ``K x K`` tile holds several copies;
   * ``PEDesign`` (conventional layers only): the same rule one level up, copies of the
     matrix in the idle PEs of a tile;
   * ``OverallEachLayer``: the layer's speed-up is ``peDup * subArrayDup`` (rows x cols).

   With pimgen's geometry a PE of ``subarrays_per_pe`` subarrays is read as a
   ``isqrt(s) x s//isqrt(s)`` grid and a tile of ``pes_per_tile`` PEs the same way (the paper
   preset: 2x2 subarrays per PE, 3x3 PEs per tile, NeuroSim's minimum PE of
   ``2*numRowSubArray``); a subarray holds ``rows`` matrix rows and ``outputs`` weights
   (pimgen keeps one column for the reference, NeuroSim does not). In pimgen's plan the
   copies become replicas (``duplication``), each computing a share of the output pixels,
   which is how NeuroSim's copies divide the input vectors; the area stays that of the
   un-duplicated layer because the copies fill capacity the floorplan already has.

Layers NeuroSim maps with the novel mapping are pimgen's novel-eligible layers (the same
rule: the network's most common ``K*K``, ``K*K*Cin >= rows``). Pure: reads the plan and
the schedule, no ``hw``/``sim``/``flow``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from gen.config import ChipConfig
from gen.mapping import MappingPlan, map_network
from gen.network import Network
from gen.perf import Estimate, estimate

__all__ = ["extra_duplication", "NeurosimAccount", "neurosim_account"]


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _grid(n: int) -> tuple[int, int]:
    """``n`` units as a near-square grid ``(r, c)``, ``r*c <= n``."""
    r = max(1, math.isqrt(n))
    return r, max(1, n // r)


def _fill(need_r: int, need_c: int, have_r: int, have_c: int) -> int:
    """NeuroSim's copies of a ``need_r x need_c`` matrix in a ``have_r x have_c`` container:
    only when it fits in one dimension, ``max(1, have_r // need_r) * max(1, have_c // need_c)``."""
    if need_r <= have_r or need_c <= have_c:
        return max(1, have_r // need_r) * max(1, have_c // need_c)
    return 1


def extra_duplication(plan: MappingPlan) -> dict[str, dict]:
    """Per weight layer: NeuroSim's copies in spare subarrays (``subarray``) and spare PEs
    (``pe``, conventional layers), their product ``copies``, and the rule that gave them."""
    chip = plan.chip
    xb = chip.crossbar
    pr, pc = _grid(chip.subarrays_per_pe)
    tr, tc = _grid(chip.pes_per_tile)
    out = {}
    for lp in plan.layers:
        if not lp.has_weights:
            continue
        layer = lp.layer
        cout = layer.weight_cols
        need_c = _cdiv(cout, xb.outputs)
        if lp.mapping == "novel":
            need_r = _cdiv(layer.cin, xb.rows)
            sub = _fill(need_r, need_c, pr, pc)
            pe = 1
            rule = "SubArrayDup (novel PE)"
        else:
            need_r = _cdiv(layer.weight_rows, xb.rows)
            sub = _fill(need_r, need_c, pr, pc)
            pe = _fill(_cdiv(need_r, pr), _cdiv(need_c, pc), tr, tc) if (need_r <= tr * pr or need_c <= tc * pc) else 1
            rule = "PEDesign x SubArrayDup (conventional tile)"
        out[lp.name] = {"subarray": sub, "pe": pe, "copies": sub * pe, "rule": rule,
                        "matrix_subarrays": (need_r, need_c)}
    return out


@dataclass
class NeurosimAccount:
    """The NeuroSim-accounted layer-by-layer chip of one mapping: ``plan`` (un-duplicated,
    the area), ``dup_plan`` (the copies as replicas), ``estimate`` (stages added, on
    ``dup_plan``) and the copies per layer."""
    mapping: str
    plan: MappingPlan
    dup_plan: MappingPlan
    estimate: Estimate
    copies: dict[str, dict]

    @property
    def total_clocks(self) -> int:
        return self.estimate.latency_clocks


def neurosim_account(net: Network, chip: ChipConfig, mapping: str) -> NeurosimAccount:
    """NeuroSim's accounting of the layer-by-layer chip: extra copies, stages added."""
    plan = map_network(net, chip, mapping=mapping, duplication=1)
    copies = extra_duplication(plan)
    dup_plan = map_network(net, chip, mapping=mapping, duplication={n: c["copies"] for n, c in copies.items()})
    return NeurosimAccount(mapping, plan, dup_plan, estimate(dup_plan, overlap=False), copies)
