"""``pimgen demo``: the main job on built-in defaults — the trained digits CNN as a chip."""
from __future__ import annotations

import argparse
import json
import sys
import time

from flow.progress import Progress

HELP = ("run the built-in demo: the trained digits CNN -> chip RTL (novel mapping) -> Verilator -> real "
        "scikit-learn digits, bit-exact and clock-exact")


def add_arguments(p):
    p.add_argument("--sim", choices=["verilator", "icarus"], default="verilator", help="simulator [verilator]")
    p.add_argument("--images", type=int, default=20, help="held-out digits images streamed through the chip [20]")
    p.add_argument("--mapping", choices=["conventional", "novel"], default="novel", help="weight mapping [novel]")
    p.add_argument("-o", "--out", default="build/demo", metavar="DIR", help="build folder [build/demo]")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    from flow.commands._common import add_jobs_arg
    add_jobs_arg(p)


def run(args) -> int:
    from flow.chip_check import design_from_network, run_chip_check, write_build
    from gen.config import ChipConfig
    from gen.models import digits_dataset
    from flow.commands._common import jobs_from_args
    if args.images < 1:
        raise ValueError(f"--images {args.images} is not allowed: it must be >= 1")
    jobs = jobs_from_args(args)
    say = (lambda *a, **k: None) if args.json else (lambda *a, **k: print(*a, **k, flush=True))
    chip = ChipConfig.preset("small")
    t0 = time.perf_counter()
    say(f"== pimgen demo: digits CNN (trained, int8) -> chip ({args.mapping} mapping, 'small' preset) -> "
        f"{args.sim} -> {args.images} held-out scikit-learn digits")
    d = design_from_network("digits", chip, args.mapping)
    d.jobs = jobs
    out = write_build(d, args.out)
    t_build = time.perf_counter() - t0
    cp = d.cp
    say(f"built      {out}/rtl/chip.v: {len(cp.stages)} layer engines, {cp.n_xbars} crossbars "
        f"({len(d.verilog) / 1e6:.1f} MB Verilog, {t_build:.0f} s)")
    x, labels = digits_dataset("test")
    say(f"simulating (a cold Verilator build of the chip takes about half a minute; later runs reuse it) ...")
    rep = run_chip_check(d, x[:args.images], labels=labels[:args.images], seed=0, sim=args.sim,
                         progress=Progress(False if args.json else None, sys.stdout))
    steady = d.timing(2).steady_interval
    # the same chip with duplication balancing its stages (`pimgen build --duplication balance`): the model only
    bal = design_from_network("digits", chip, args.mapping, duplication="balance")
    bal_steady = bal.timing(2).steady_interval
    rep.update({"build": str(out), "images_per_s_at_clock": chip.clock_hz / steady, "clock_mhz": chip.clock_mhz,
                "steady_interval": steady, "wall_seconds_total": round(time.perf_counter() - t0, 1),
                "balanced": {"crossbars": bal.cp.n_xbars, "replicas": [len(s.replicas) for s in bal.cp.stages],
                             "steady_interval": bal_steady, "images_per_s_at_clock": chip.clock_hz / bal_steady}})
    if args.json:
        print(json.dumps(rep, indent=2))
        return 0 if rep["passed"] else 1
    exact = rep["measured_latency"] == rep["predicted_latency"] and rep["measured_interval"] == rep["predicted_interval"]
    say(f"logits     {'bit-exact' if rep['mismatches'] == 0 else 'MISMATCH'} vs the crossbar-exact golden model "
        f"({rep['images']} images)")
    say(f"clocks     latency {rep['measured_latency'][0]} (first image), {rep['measured_latency'][-1]} (steady); "
        f"interval {rep['measured_interval'][-1] if rep['measured_interval'] else '-'}: "
        f"{'== gen.perf, every image' if exact else 'MISMATCH with gen.perf'}")
    say(f"accuracy   {rep['accuracy'] * 100:.1f} % top-1 on {rep['images']} held-out digits")
    say(f"throughput {rep['images_per_s_at_clock']:.0f} images/s at {chip.clock_mhz} MHz (interval {steady} clocks)")
    b = rep["balanced"]
    say(f"balanced   --duplication balance: replicas {b['replicas']}, {b['crossbars']} crossbars, interval "
        f"{b['steady_interval']} clocks = {b['images_per_s_at_clock']:.0f} images/s (gen.perf; `pimgen build "
        f"digits --duplication balance` then `pimgen simulate` checks it)")
    say("PASS" if rep["passed"] else f"FAIL (log: {rep['log']})")
    return 0 if rep["passed"] else 1
