"""Generate an emulated (block-RAM) crossbar, simulate it with cocotb and check it against the
golden model and ``gen.timing.emulated_crossbar_host_clocks``.

The DUT has the flip-flop crossbar's ports, so the crossbar testbench ``sim.tb.crossbar``
drives it unchanged: random weights as the memory's initial contents, random vectors, the
optional half-way re-programming of rows through the write port (read-modify-write here),
every result compared with ``sim.golden.crossbar_mvm`` and every accept -> take distance
with the predicted host clocks.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from flow.crossbar_check import CrossbarCheck
from flow.emit import to_verilog
from gen.emulation import EMU_WORD_BITS
from gen.timing import crossbar_latency, emulated_crossbar_host_clocks
from hw.emu_crossbar import EmulatedCrossbar
from sim.runner import run_testbench

__all__ = ["CrossbarCheck", "run_emu_crossbar_check"]


def _tb_args(check: CrossbarCheck, predicted: int) -> tuple[np.ndarray, dict[str, Any]]:
    """The initial weights and the testbench arguments, all drawn from ``check.seed``."""
    cfg, rng = check.cfg, np.random.default_rng(check.seed)
    w_range = (-cfg.weight_offset, cfg.weight_offset)
    weights = rng.integers(*w_range, (cfg.rows, cfg.outputs))
    vectors = rng.integers(0, 1 << cfg.a_bits, (check.vectors, cfg.rows))
    rows = sorted(rng.choice(cfg.rows, check.reprogram_rows, replace=False).tolist())
    new_rows = rng.integers(*w_range, (len(rows), cfg.outputs))
    return weights, dict(cfg=cfg.to_dict(), weights=weights.tolist(), vectors=vectors.tolist(), seed=check.seed,
                         ready_prob=check.ready_prob, gap_prob=check.gap_prob, predicted_latency=predicted,
                         check_timing=check.ready_prob >= 1.0, reprogram=rows,
                         reprogram_weights=new_rows.tolist())


def run_emu_crossbar_check(check: CrossbarCheck, *, word_bits: int = EMU_WORD_BITS, cache_dir: Path | None = None,
                           waves_dir: Path | None = None, parallel_cycles: int | None = None) -> dict[str, Any]:
    """Run ``sim.tb.crossbar`` on ``hw.emu_crossbar.EmulatedCrossbar`` and return the report:
    ``passed``, ``mismatches``, ``measured_clocks`` (host clocks, accept -> take),
    ``predicted_clocks`` (``emulated_crossbar_host_clocks``), ``target_clocks``
    (``crossbar_latency``, what a decoupled-clock build presents), latencies and wall time.
    ``parallel_cycles``: input cycles per read (``gen.emulation``; ``None``: all)."""
    cfg = check.cfg
    predicted = emulated_crossbar_host_clocks(cfg, word_bits, parallel_cycles)
    weights, args = _tb_args(check, predicted)
    cells = weights
    device = getattr(check, "device", None)     # non-ideal cells (gen.devices), crossbar index 0
    if device is not None:
        from gen.cells import CellArray
        from gen.devices import crossbar_conductances
        g = crossbar_conductances(weights, cfg, device, 0)
        cells, args["conductances"] = CellArray.from_conductances(g, cfg), g.tolist()
    t0 = time.perf_counter()
    verilog = to_verilog(EmulatedCrossbar(cfg, cells, word_bits=word_bits, parallel_cycles=parallel_cycles),
                         "emu_crossbar")
    res = run_testbench(verilog, "emu_crossbar", "sim.tb.crossbar", args, sim=check.sim, waves=check.waves,
                        cache_dir=cache_dir, seed=check.seed, waves_dir=waves_dir)
    data = res.data
    report = {
        "passed": res.passed and data.get("mismatches", 1) == 0, "sim": check.sim, "config": cfg.to_dict(),
        "word_bits": word_bits, "parallel_cycles": parallel_cycles, "measured_clocks": data.get("measured_clocks"), "predicted_clocks": predicted,
        "target_clocks": crossbar_latency(cfg), "mismatches": data.get("mismatches"),
        "vectors": check.vectors, "delivered": data.get("delivered"),
        "latencies": sorted(set(data.get("latencies", []))), "reprogrammed_rows": len(args["reprogram"]),
        "non_ideal_cells": "conductances" in args,
        "wall_seconds": round(time.perf_counter() - t0, 2),
        "log": str(res.log) if res.log else None, "waves": str(res.waves) if res.waves else None,
    }
    if data.get("first_mismatch"):
        report["first_mismatch"] = data["first_mismatch"]
    return report
