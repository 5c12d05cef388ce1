"""Simulation turnaround, cold: generate, Verilator build, run.

    .venv/bin/python bench/sim_turnaround.py [--only l1|layer180|digits] [--json]

For the README's layer example (L1: ``conv Cin=8 Cout=16 K=3 H=8 W=8 stride=1 pad=1``,
novel mapping, the 'small' chip with 2-bit cells and a 32-bit PE bus), a large layer (``conv Cin=64 Cout=64 K=3
H=16 W=16``, novel, 32x32 crossbars, 20 per PE: 180 crossbars in one tile) and the digits chip ('small' preset, 3 images), each
in a fresh simulator cache (a cold build), it prints: crossbars, Verilog MB, generate s,
Verilator build s, run s (simulator start-up included) and simulated clocks per second of
the run. The stage times come from ``sim.runner``'s progress calls, so build and run are
measured apart. Verilator builds are hierarchical (the shared crossbar module compiled once,
``sim.runner``'s ``hier_blocks``); ``--flat`` measures the flat build for comparison.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flow.cli import build_parser  # noqa: E402

LAYERS = {"l1": "conv Cin=8 Cout=16 K=3 H=8 W=8 stride=1 pad=1",
          "layer180": "conv Cin=64 Cout=64 K=3 H=16 W=16 stride=1 pad=1"}
# The designs the table was first measured on: 2-bit cells and a 32-bit PE bus (generate's old
# default chip; it now takes the 'small' preset, 4-bit cells). The large layer in one tile (the
# engine takes one tile per replica): 9 PEs x 20 subarrays = 180 crossbars.
OLD_DEFAULT = ["--cell-bits", "2", "--pe-bus-bits", "32"]
EXTRA = {"l1": OLD_DEFAULT, "layer180": [*OLD_DEFAULT, "--subarrays-per-pe", "20"]}


class _Stamps:
    """Records when sim.runner starts building and running."""

    def __init__(self):
        self.t = {}

    def __call__(self, stage: str) -> None:
        key = "build" if ": building" in stage else "run" if ": running" in stage else "done" if ": done" in stage \
            else None
        if key:
            self.t[key] = time.perf_counter()


def _layer(name: str, cache: Path, hierarchical: bool = True) -> dict:
    from flow.commands.generate import design_from_args
    from flow.layer_check import run_layer_check
    args = build_parser().parse_args(["generate", "--layer", LAYERS[name], "--mapping", "novel", *EXTRA[name],
                                      "-o", "unused"])
    t0 = time.perf_counter()
    d = design_from_args(args)
    v = d.verilog
    gen_s = time.perf_counter() - t0
    st = _Stamps()
    rep = run_layer_check(d, images=1, cache_dir=cache, progress=st, hierarchical=hierarchical)
    run_s = st.t["done"] - st.t["run"]
    return {"design": f"{name}: {LAYERS[name]}", "crossbars": d.lp.n_subarrays, "verilog_mb": round(len(v) / 1e6, 2),
            "generate_s": round(gen_s, 1), "build_s": round(st.t["run"] - st.t["build"], 1), "run_s": round(run_s, 1),
            "clocks_per_s": round(sum(rep["measured_per_image"]) / run_s), "passed": rep["passed"]}


def _digits(cache: Path, hierarchical: bool = True) -> dict:
    from flow.chip_check import design_from_network, run_chip_check
    from gen.config import ChipConfig
    from gen.models import digits_dataset
    t0 = time.perf_counter()
    d = design_from_network("digits", ChipConfig.preset("small"), "novel")
    v = d.verilog
    gen_s = time.perf_counter() - t0
    x, labels = digits_dataset("test")
    st = _Stamps()
    rep = run_chip_check(d, x[:3], labels=labels[:3], cache_dir=cache, progress=st, hierarchical=hierarchical)
    return {"design": "digits chip (small preset, 3 images)", "crossbars": d.cp.n_xbars,
            "verilog_mb": round(len(v) / 1e6, 2), "generate_s": round(gen_s, 1),
            "build_s": round(st.t["run"] - st.t["build"], 1), "run_s": round(st.t["done"] - st.t["run"], 1),
            "clocks_per_s": rep["clocks_per_second"], "passed": rep["passed"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=["l1", "layer180", "digits"], action="append")
    ap.add_argument("--flat", action="store_true",
                    help="Verilate flat (the crossbar module inlined everywhere), not hierarchically")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    rows = []
    for name in args.only or ["l1", "layer180", "digits"]:
        print(f"  {name} ...", file=sys.stderr, flush=True)
        with tempfile.TemporaryDirectory(prefix="pimgen-cold-") as cache:
            rows.append(_digits(Path(cache), not args.flat) if name == "digits"
                        else _layer(name, Path(cache), not args.flat))
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print("| design | crossbars | Verilog MB | generate s | Verilator build s | run s | clocks/s | check |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        print(f"| {r['design']} | {r['crossbars']} | {r['verilog_mb']} | {r['generate_s']} | {r['build_s']} | "
              f"{r['run_s']} | {r['clocks_per_s']} | {'pass' if r['passed'] else 'FAIL'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
