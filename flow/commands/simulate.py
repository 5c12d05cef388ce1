"""``pimgen simulate BUILD``: run a generated layer engine under cocotb against the golden model."""
from __future__ import annotations

import argparse
import json

HELP = "simulate a generated layer engine (cocotb) on random inputs: bit-exact vs sim.golden, clocks vs model"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("build", metavar="BUILD", help="build folder written by `pimgen generate`")
    p.add_argument("--sim", choices=["verilator", "icarus"], default="verilator", help="simulator [verilator]")
    p.add_argument("--images", type=int, default=1, help="random input images, streamed back to back [1]")
    p.add_argument("--seed", type=int, default=0, help="seed of the random images [0]")
    p.add_argument("--input", metavar="NPY", help="input images from a .npy file ([N,Cin,H,W] or [Cin,H,W])")
    p.add_argument("--backpressure", action="store_true",
                   help="random gaps on the input and random ready on the outputs (clocks not checked)")
    p.add_argument("--waves", action="store_true", help="dump a waveform next to the simulation log")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def run(args) -> int:
    import numpy as np
    from flow.layer_check import load_build, run_layer_check
    design, manifest = load_build(args.build)
    images = args.images
    if args.input:
        try:
            x = np.load(args.input)
        except (OSError, ValueError) as e:
            raise ValueError(f"--input {args.input!r} could not be read: {e}") from None
        want = tuple(design.sched.in_shape)
        if x.ndim == 3:
            x = x[None]
        if x.ndim != 4 or tuple(x.shape[1:]) != want:
            raise ValueError(f"--input has shape {x.shape}, the layer takes [N, {want[0]}, {want[1]}, {want[2]}]")
        images = x
    rep = run_layer_check(design, images=images, seed=args.seed, sim=args.sim, waves=args.waves,
                          ready_prob=0.5 if args.backpressure else 1.0, gap_prob=0.3 if args.backpressure else 0.0)
    if args.json:
        print(json.dumps(rep, indent=2))
    else:
        print(f"layer          {rep['layer']}  ({rep['mapping']} mapping, duplication {rep['duplication']})")
        print(f"simulator      {rep['sim']}  ({rep['wall_seconds']} s)")
        print(f"outputs        {rep['pixels_checked']} pixels checked over {rep['images']} image(s), "
              f"{rep['mismatches']} mismatches")
        timing = "not checked (back-pressure)" if not rep["timing_checked"] else (
            "match" if rep["measured_per_image"] and all(c == rep["predicted_clocks"]
                                                         for c in rep["measured_per_image"]) else "MISMATCH")
        print(f"clocks         measured {rep['measured_per_image']}  predicted {rep['predicted_clocks']}  {timing}")
        print(f"fm reads       {rep['fm_reads']} words (expected {rep['expected_fm_reads']}; "
              f"{rep['input_pixels']} input pixels)")
        if rep.get("first_mismatch"):
            print(f"first mismatch {rep['first_mismatch']}")
        if rep.get("waves"):
            print(f"waves          {rep['waves']}")
        print("PASS" if rep["passed"] else f"FAIL  (log: {rep['log']})")
    return 0 if rep["passed"] else 1
