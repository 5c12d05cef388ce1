"""Build a whole-network chip, write its build folder, simulate it with cocotb and check it.

* :class:`ChipDesign` — a network + its params + chip config + mapping: the
  :class:`gen.chipplan.ChipPlan`, the RTL (``hw.chip.Chip``, one module per distinct
  block), the programming image, the manifest.
* :func:`write_build` / :func:`load_build` — ``build/<name>/``: ``rtl/chip.v``,
  ``weights/params.json`` (the lowered network's :class:`gen.params.NetworkParams`) and
  ``weights/program.hex`` (the programming beats ``(crossbar, row, cells)``, one packed payload
  per line; the cells are the device model's when the design has one, ``ChipDesign.device``),
  ``manifest.json`` (schema version, pimgen version, ports, stages, expected clocks). Written
  to a temporary folder and renamed at the end, so nothing half-written is ever left.
* :func:`run_chip_check` — images through ``sim.tb.chip``: every logit against
  ``sim.golden.run_plan`` on the chip's (lowered) plan, every stage's words against the
  golden model's tensor of that layer, per-image latency and interval against
  ``gen.perf.chip_timing``.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gen.chipplan import ChipPlan, plan_chip
from gen.config import ChipConfig
from gen.devices import DeviceModel, plan_conductances
from gen.network import Network, zoo
from gen.params import NetworkParams
from gen.perf import chip_timing
from flow.buildfolder import check_output, read_manifest, reading_build, write_folder
from flow.cli import pimgen_version

# 5: mesh and torus flows in time slots (a build of 4 on them has other clocks);
# 4: programming beats carry cells (device model); 3: stage tails, forks and skip links;
# 2: stages on a fabric (topology); 1: wired links
SCHEMA = 5
TOP = "chip"


@dataclass
class ChipDesign:
    """A network on a chip (see the module docstring)."""
    network: Network
    params: NetworkParams
    chip: ChipConfig
    mapping: str = "novel"
    source: str = ""
    topology: str = "5pp"
    device: DeviceModel | None = None
    fault_aware: bool = False
    #: the emulation build (``hw.decoupled.EmulatedChip``: block-RAM crossbars, target clocks
    #: advanced by an enable) instead of the simulation build (``hw.chip.Chip``)
    emulated: bool = False
    #: replicas per weight layer, as ``gen.chipplan.plan_chip`` takes them (an int, a
    #: ``{layer: replicas}`` dict, ``"auto"`` or ``"balance"``)
    duplication: int | str | dict = 1
    #: processes that convert the Verilog's blocks (``flow.emit.to_verilog``; the same text)
    jobs: int = 1
    _verilog: str | None = field(default=None, repr=False)

    def __post_init__(self):
        self.params.check(self.network, w_bits=self.chip.crossbar.w_bits)
        self.cp: ChipPlan = plan_chip(self.network, self.params, self.chip, self.mapping, self.topology,
                                      self.duplication)
        self._conductances = None

    @property
    def conductances(self) -> dict | None:
        """The cells the chip is programmed with, one map per crossbar of the (lowered) plan
        (``gen.devices.plan_conductances``, ``fault_aware`` or not), or ``None`` for ideal cells.
        The programming image and the golden model both read them here."""
        if self.device is not None and self._conductances is None:
            self._conductances = plan_conductances(self.cp.plan, self.cp.params, self.device,
                                                   fault_aware=self.fault_aware)
        return self._conductances

    def emulation(self) -> "ChipDesign":
        """The same chip's emulation build (``hw.decoupled``; the same plan, programming and
        golden model)."""
        new = copy.copy(self)
        new.emulated, new._verilog = True, None
        return new

    def with_device(self, device: DeviceModel | None, fault_aware: bool = False) -> "ChipDesign":
        """The same chip (plan and RTL) with its cells programmed under ``device`` (around its
        stuck cells with ``fault_aware``)."""
        new = copy.copy(self)
        new.device, new.fault_aware, new._conductances = device, fault_aware, None
        return new

    @property
    def verilog(self) -> str:
        if self._verilog is None:
            from flow.emit import to_verilog
            from hw.chip import Chip
            from hw.decoupled import EmulatedChip
            from hw.reset import RegisteredReset
            chip = EmulatedChip(self.cp) if self.emulated else Chip(self.cp)
            self._verilog = to_verilog(RegisteredReset(chip), TOP, self.jobs)
        return self._verilog

    def program_words(self) -> list[int]:
        """The programming beats packed as ``hw.pe.prog_layout`` payloads."""
        from hw.pe import pack_program
        return pack_program(self.cp.programming(self.conductances), self.chip.crossbar, self.cp.n_xbars)

    def timing(self, images: int):
        return chip_timing(self.cp, images)

    def manifest(self) -> dict:
        cp = self.cp
        t = self.timing(4)
        return {
            "schema": SCHEMA, "pimgen": pimgen_version(), "top": TOP, "kind": "chip", "rtl": f"rtl/{TOP}.v",
            "network": self.network.name, "network_ir": self.network.to_dict(), "source": self.source,
            "mapping": self.mapping, "topology": self.topology, "duplication": self.duplication,
            "device": None if self.device is None else dataclasses.asdict(self.device),
            "fault_aware": self.fault_aware,
            "chip": self.chip.to_dict(), "input_shape": list(self.network.input_shape),
            "ports": {"i": {"dir": "in", "kind": "stream", "bits": cp.input_layout.word_bits,
                            "words_per_image": cp.input_layout.depth},
                      "o": {"dir": "out", "kind": "stream", "bits": cp.stages[-1].bus_bits,
                            "words_per_image": cp.logit_layout.depth, "values": cp.logits, "value_bits": 32},
                      "prog": {"dir": "in", "kind": "stream", "beats": len(cp.programming())},
                      "cycles": {"dir": "out", "bits": 32}, "status": {"dir": "out", "bits": len(cp.stages)}},
            "plan": cp.to_dict(), "crossbars": cp.n_xbars,
            "expected": {"latency_first_images": t.latency, "interval_first_images": t.interval,
                         "steady_interval": t.steady_interval, "bound": t.bound},
            "weights": {"params": "weights/params.json", "program": "weights/program.hex"},
        }


def design_from_network(name_or_net, chip: ChipConfig, mapping: str = "novel", seed: int = 0,
                        topology: str = "5pp", device: DeviceModel | None = None,
                        fault_aware: bool = False, duplication: int | str | dict = 1) -> ChipDesign:
    """A chip for a zoo name (``digits``: the trained model shipped with pimgen, others:
    ``gen.quantize.random_weights``) or a ``(Network, NetworkParams)`` pair, its cells under
    ``device`` (``None``: ideal; ``fault_aware``: programmed around its stuck cells), its layers
    duplicated as ``duplication`` says (:class:`ChipDesign`)."""
    kw = {"topology": topology, "device": device, "fault_aware": fault_aware, "duplication": duplication}
    if isinstance(name_or_net, tuple):
        net, params = name_or_net
        return ChipDesign(net, params, chip, mapping, source="given", **kw)
    net = zoo(name_or_net)
    trained = _trained(name_or_net)
    if trained is not None:
        return ChipDesign(net, trained, chip, mapping, source="trained", **kw)
    from gen.quantize import random_weights
    return ChipDesign(net, random_weights(net, seed, w_bits=chip.crossbar.w_bits, a_bits=chip.crossbar.a_bits),
                      chip, mapping, source=f"random_weights(seed={seed})", **kw)


def _trained(name: str):
    """The trained params pimgen ships for zoo network ``name``, or None."""
    try:
        from gen import models
    except ImportError:
        return None
    get = getattr(models, f"{name}_params", None)
    return get()[1] if get else None


def chip_images(design, n: int, seed: int = 0):
    """``(images, labels or None, source)``: ``n`` held-out scikit-learn digits for the digits
    network, else random input codes (seeded)."""
    import numpy as np
    if design.network.name == "digits" and tuple(design.network.input_shape) == (1, 8, 8):
        from gen.models import digits_dataset
        x, labels = digits_dataset("test")
        return x[:n], labels[:n], "scikit-learn digits, held-out split"
    rng = np.random.default_rng(seed + 7919)
    return rng.integers(0, 1 << design.chip.crossbar.a_bits, (n,) + tuple(design.network.input_shape)), None, \
        f"random (seed {seed})"


def write_build(design: ChipDesign, out: str | Path, *, force: bool = False) -> Path:
    """Write ``out/`` (rtl, weights, manifest) atomically; returns the folder. An existing ``out``
    that is not a pimgen build is refused unless ``force`` (``flow.buildfolder``)."""
    out = check_output(out, force=force)
    verilog = design.verilog          # may raise: nothing written yet
    manifest = design.manifest()
    prog = design.program_words()
    return write_folder(out, {
        f"rtl/{TOP}.v": verilog, "weights/params.json": design.params.to_json(),
        "weights/program.hex": "".join(f"{v:x}\n" for v in prog), "manifest.json": json.dumps(manifest, indent=2)},
        force=force)


def load_build(folder: str | Path) -> ChipDesign:
    """Re-create the :class:`ChipDesign` of a chip build folder (Verilog from ``rtl/``). A folder that
    is not one, or a damaged one, is one ``ValueError`` line."""
    folder = Path(folder)
    m = read_manifest(folder, hint=f"`pimgen build NETWORK -o {folder}`")
    mf = folder / "manifest.json"
    if m.get("kind") != "chip":
        raise ValueError(f"{str(mf)!r} is not a chip build (kind {m.get('kind')!r}, expected 'chip')")
    if m.get("schema") != SCHEMA:
        raise ValueError(f"{str(folder)!r} was built by another pimgen (manifest schema {m.get('schema')}, this "
                         f"pimgen reads {SCHEMA}); rebuild it with `pimgen build`")
    with reading_build(folder, "chip", "`pimgen build`"):
        params = NetworkParams.from_json((folder / m["weights"]["params"]).read_text())
        device = m.get("device")
        d = ChipDesign(Network.from_dict(m["network_ir"]), params, ChipConfig.from_dict(m["chip"]), m["mapping"],
                       m.get("source", ""), m.get("topology", "5pp"), None if device is None else DeviceModel(**device),
                       bool(m.get("fault_aware", False)), duplication=m.get("duplication", 1))
        d._verilog = (folder / m["rtl"]).read_text()
    return d


def shared_blocks(cfg, banks: tuple[tuple[int, bool], ...] = ()) -> tuple[str, ...]:
    """The modules a programmed design instantiates many times, for hierarchical Verilation:
    its one crossbar module (``hw.blackbox``), or in an emulation build its banks of
    target-timed emulated crossbars, one module per bank kind in ``banks``
    (``hw.decoupled.bank_kinds``)."""
    from hw.crossbar import Crossbar
    from hw.decoupled import TargetCrossbar
    if banks:
        return tuple(TargetCrossbar.module_name(cfg, *kind) for kind in banks)
    return (Crossbar.module_name(cfg),)


def golden(design: ChipDesign, x_codes: np.ndarray) -> list[dict[str, np.ndarray]]:
    """Per image, every layer's tensor of the chip's (lowered) plan, crossbar-exact."""
    from sim.golden import run_plan
    return [run_plan(design.cp.plan, design.cp.params, x, return_all=True, conductances=design.conductances)
            for x in x_codes]


def _words(t: np.ndarray, bits: int, g: int) -> list[int]:
    """A ``[C, H, W]`` tensor as a stage sends it: per pixel in raster order, ``C`` values of
    ``bits`` bits packed into ``g``-bit words."""
    c = t.shape[0]
    per = -(-c * bits // g)
    mask = (1 << bits) - 1
    out = []
    for y in range(t.shape[1]):
        for xx in range(t.shape[2]):
            v = 0
            for ch in range(c):
                v |= (int(t[ch, y, xx]) & mask) << (ch * bits)
            out += [(v >> (k * g)) & ((1 << g) - 1) for k in range(per)]
    return out


def tb_arguments(design: ChipDesign, x_codes: np.ndarray, *, seed: int = 0, ready_prob: float = 1.0,
                 gap_prob: float = 0.0, corrupt: tuple[str, int] | None = None) -> dict[str, Any]:
    cp = design.cp
    gold = golden(design, x_codes)
    t = design.timing(len(x_codes))
    stages = []
    for n, sc in enumerate(cp.stages):
        bits, words = cp.tap(n)
        stages.append({"name": sc.name, "words": words, "value_bits": sc.a_out, "signed": sc.raw,
                       "expected": [_words(g[sc.name], sc.a_out, bits) for g in gold]})
    last = cp.stages[-1].name
    prog = design.program_words()
    return {
        "prog": prog, "in_words": [cp.input_layout.pack(x) for x in x_codes],
        "logit_words": cp.logit_layout.depth, "g": cp.stages[-1].bus_bits,
        "expected_logits": [[int(v) for v in g[last].reshape(-1)] for g in gold],
        "stages": stages, "predicted_latency": t.latency, "predicted_interval": t.interval,
        "seed": seed, "ready_prob": ready_prob, "gap_prob": gap_prob,
        "check_timing": ready_prob >= 1.0 and gap_prob == 0.0,
        "target_clock": design.emulated, "tap_file": "taps.txt",
        "timeout_scale": host_per_target_bound(design) if design.emulated else 1,
    }


def host_per_target_bound(design: ChipDesign) -> int:
    """A bound on host clocks per target clock of the emulation build, for timeouts only: an
    emulated MVM over the target MVM, a row write (every stored column, and its pipeline), or
    a layer's serial sum of its partial sums or its serial post stage (bounded by one output
    per placed crossbar column block)."""
    from gen.emulation import CHIP_PARALLEL_CYCLES, serial_sum_steps
    from gen.timing import (crossbar_latency, emulated_crossbar_host_clocks, emulated_row_write_host_clocks,
                            serial_post_host_clocks, serial_sum_host_clocks)
    from hw.decoupled import bank_kinds
    xb = design.chip.crossbar
    mvm = emulated_crossbar_host_clocks(xb, parallel_cycles=CHIP_PARALLEL_CYCLES, n_xbars=max(n for n, _ in bank_kinds(design.cp)))
    sweep = max(max(serial_sum_host_clocks(len(serial_sum_steps(lp, xb.outputs))),
                    serial_post_host_clocks(sum(p.cols[1] - p.cols[0] for p in lp.placements)))
                for lp in design.cp.plan.layers if lp.placements)
    return 2 + max(-(-mvm // crossbar_latency(xb)), emulated_row_write_host_clocks(xb) + 1, sweep + 1)


def run_chip_check(design: ChipDesign, images: np.ndarray, *, labels: np.ndarray | None = None, seed: int = 0,
                   sim: str = "verilator", waves: bool = False, ready_prob: float = 1.0, gap_prob: float = 0.0,
                   cache_dir: Path | None = None, args_hook=None, waves_dir: Path | None = None,
                   progress=None, hierarchical: bool = True) -> dict[str, Any]:
    """Simulate ``design`` on ``images`` (``[N, C, H, W]`` input codes); return the report
    (``passed``, ``mismatches``, ``images``, ``measured_latency``, ``predicted_latency``,
    ``measured_interval``, ``predicted_interval``, ``accuracy``, ``diverged``, ...).
    ``hierarchical``: Verilator compiles the shared crossbar module once, apart (``sim.runner``)."""
    from hw.decoupled import bank_kinds
    from sim.recorder import tap_recorder
    from sim.runner import run_testbench
    x = np.asarray(images)
    if progress:
        progress(f"golden model: {len(x)} image(s) through the crossbar-exact plan walk")
    args = tb_arguments(design, x, seed=seed, ready_prob=ready_prob, gap_prob=gap_prob)
    if args_hook is not None:
        args = args_hook(args)
    t0 = time.perf_counter()
    # the taps are recorded from inside the simulator (sim.recorder), around the chip's own Verilog
    rec, rec_top = tap_recorder(design.verilog, TOP, "tap_valid", [f"tap_data__s{n}" for n in range(len(args["stages"]))],
                                args["tap_file"])
    res = run_testbench(design.verilog + "\n" + rec, rec_top, "sim.tb.chip", args, sim=sim, waves=waves, cache_dir=cache_dir,
                        hier_blocks=shared_blocks(design.chip.crossbar, bank_kinds(design.cp) if design.emulated else ())
                        if hierarchical else (),
                        seed=seed, waves_dir=waves_dir, progress=progress)
    d = res.data
    timing_ok = (not args["check_timing"]) or (d.get("measured_latency") == args["predicted_latency"]
                                               and d.get("measured_interval") == args["predicted_interval"])
    report = {
        "passed": bool(res.passed and d.get("mismatches", 1) == 0 and d.get("diverged") is None and timing_ok),
        "sim": sim, "network": design.network.name, "mapping": design.mapping, "topology": design.topology,
        "images": len(x),
        "mismatches": d.get("mismatches"), "diverged": d.get("diverged"), "first_mismatch": d.get("first_mismatch"),
        "measured_latency": d.get("measured_latency"), "predicted_latency": args["predicted_latency"],
        "measured_interval": d.get("measured_interval"), "predicted_interval": args["predicted_interval"],
        "timing_checked": args["check_timing"], "programming_clocks": d.get("programming_clocks"),
        "prog_beats": d.get("prog_beats"), "accuracy": None,
        "sim_clocks": d.get("sim_clocks"), "clocks_per_second": d.get("clocks_per_second"),
        "sim_wall_seconds": d.get("sim_wall_seconds"),
        "emulated": design.emulated, "logits": d.get("logits"),
        "wall_seconds": round(time.perf_counter() - t0, 2),
        "log": str(res.log) if res.log else None, "waves": str(res.waves) if res.waves else None,
    }
    if design.emulated and d.get("image_target_clocks"):
        report["host_clocks"] = d["image_host_clocks"]
        report["target_clocks"] = d["image_target_clocks"]
        report["host_per_target"] = round(d["image_host_clocks"] / d["image_target_clocks"], 3)
    if labels is not None and d.get("logits"):
        pred = [int(np.argmax(v)) if v is not None else -1 for v in d["logits"]]
        report["predictions"] = pred
        report["accuracy"] = float(np.mean(np.asarray(pred) == np.asarray(labels)[:len(pred)]))
    return report
