"""Generate a crossbar, simulate it with cocotb and check it against the golden model."""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gen.cells import CellArray, ideal_conductances
from gen.config import CrossbarConfig
from gen.devices import DeviceModel, crossbar_conductances
from flow.emit import to_verilog
from gen.timing import crossbar_latency
from hw.crossbar import Crossbar
from sim.runner import run_testbench


@dataclass(frozen=True)
class CrossbarCheck:
    """What to simulate: random weights and vectors from ``seed``, optional stress, and an
    optional device model (``device``: the crossbar's cells are its conductance map, crossbar
    index 0, as initial contents; the golden model gets the same map; ``fault_aware``: the
    levels are chosen around the measured stuck cells first, ``gen.fault_aware``)."""

    cfg: CrossbarConfig
    vectors: int = 16
    seed: int = 0
    sim: str = "verilator"
    waves: bool = False
    ready_prob: float = 1.0
    gap_prob: float = 0.0
    reprogram_rows: int = 0
    device: DeviceModel | None = None
    fault_aware: bool = False

    def __post_init__(self):
        if self.vectors < 1:
            raise ValueError(f"vectors={self.vectors} is not allowed: vectors must be >= 1")
        if not 0 < self.ready_prob <= 1:
            raise ValueError(f"ready_prob={self.ready_prob} is not allowed: it must be in (0, 1]")
        if not 0 <= self.gap_prob < 1:
            raise ValueError(f"gap_prob={self.gap_prob} is not allowed: it must be in [0, 1)")
        if not 0 <= self.reprogram_rows <= self.cfg.rows:
            raise ValueError(f"reprogram_rows={self.reprogram_rows} is not allowed: it must be in [0, {self.cfg.rows}]")
        if self.device is not None and not isinstance(self.device, DeviceModel):
            raise ValueError(f"device={self.device!r} is not allowed: device must be a gen.devices.DeviceModel or None")


def run_crossbar_check(check: CrossbarCheck, cache_dir: Path | None = None,
                       waves_dir: Path | None = None) -> dict[str, Any]:
    """Generate the crossbar RTL, run ``sim.tb.crossbar`` and return its report (the waveform, with
    ``check.waves``, in ``waves_dir``; see ``sim.runner``).

    The report holds ``passed``, ``measured_clocks``, ``predicted_clocks``,
    ``mismatches``, the per-vector latencies and the wall time.
    """
    cfg = check.cfg
    rng = np.random.default_rng(check.seed)
    w_lo, w_hi = -cfg.weight_offset, cfg.weight_offset
    weights = rng.integers(w_lo, w_hi, (cfg.rows, cfg.outputs))
    vectors = rng.integers(0, 1 << cfg.a_bits, (check.vectors, cfg.rows))
    rows = sorted(rng.choice(cfg.rows, check.reprogram_rows, replace=False).tolist())
    args = {
        "cfg": cfg.to_dict(), "weights": weights.tolist(), "vectors": vectors.tolist(),
        "seed": check.seed, "ready_prob": check.ready_prob, "gap_prob": check.gap_prob,
        "predicted_latency": crossbar_latency(cfg),
        "check_timing": check.ready_prob >= 1.0,
        "reprogram": rows, "reprogram_weights": rng.integers(w_lo, w_hi, (len(rows), cfg.outputs)).tolist(),
    }
    cells, faulty = CellArray.from_weights(weights, cfg), 0
    if check.device is not None:
        g = crossbar_conductances(weights, cfg, check.device, 0, fault_aware=check.fault_aware)
        cells = CellArray.from_conductances(g, cfg)
        faulty = int((g != ideal_conductances(weights, cfg)).sum())
        args["conductances"] = g.tolist()
    t0 = time.perf_counter()
    verilog = to_verilog(Crossbar(cfg, cells), "crossbar")
    res = run_testbench(verilog, "crossbar", "sim.tb.crossbar", args, sim=check.sim, waves=check.waves,
                        cache_dir=cache_dir, seed=check.seed, waves_dir=waves_dir)
    report = {
        "passed": res.passed and res.data.get("mismatches", 1) == 0,
        "sim": check.sim, "config": cfg.to_dict(),
        "measured_clocks": res.data.get("measured_clocks"),
        "predicted_clocks": crossbar_latency(cfg),
        "mismatches": res.data.get("mismatches"),
        "vectors": check.vectors, "delivered": res.data.get("delivered"),
        "device": dataclasses.asdict(check.device) if check.device is not None else None,
        "fault_aware": check.fault_aware,
        "cells_off_ideal": faulty,
        "latencies": sorted(set(res.data.get("latencies", []))),
        "wall_seconds": round(time.perf_counter() - t0, 2),
        "log": str(res.log) if res.log else None,
        "waves": str(res.waves) if res.waves else None,
    }
    if res.data.get("first_mismatch"):
        report["first_mismatch"] = res.data["first_mismatch"]
    return report
