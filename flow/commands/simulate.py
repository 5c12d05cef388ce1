"""``pimgen simulate BUILD``: run a generated layer engine under cocotb against the golden model."""
from __future__ import annotations

import argparse
import json

from flow.progress import Progress

HELP = ("simulate a build folder under cocotb: a chip (`pimgen build`) on real or given images, or a layer engine "
        "(`pimgen generate`); bit-exact vs sim.golden, clocks vs the cycle model")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("build", metavar="BUILD", help="build folder written by `pimgen build` or `pimgen generate`")
    p.add_argument("--sim", choices=["verilator", "icarus"], default="verilator", help="simulator [verilator]")
    p.add_argument("--flat", action="store_true",
                   help="Verilator: compile the design as one model instead of compiling the shared crossbar module "
                        "once, apart (hierarchical, the default). On the digits chip about twice the clocks per "
                        "second for a build a third longer: worth it for long runs (docs/architecture.md, "
                        "'Hierarchical Verilation')")
    p.add_argument("--images", type=int, default=None,
                   help="images streamed back to back [chip: 3, layer: 1]; a chip of the digits network takes real "
                        "scikit-learn digits (held-out split), any other network random images")
    p.add_argument("--dataset", metavar="NPY", help="chip: input images as uint8 codes [N,C,H,W] (.npy)")
    p.add_argument("--labels", metavar="NPY", help="chip: labels [N] for --dataset, for the accuracy")
    p.add_argument("--seed", type=int, default=0, help="seed of the random images [0]")
    p.add_argument("--input", metavar="NPY", help="input images from a .npy file ([N,Cin,H,W] or [Cin,H,W])")
    p.add_argument("--backpressure", action="store_true",
                   help="random gaps on the input and random ready on the outputs (clocks not checked)")
    p.add_argument("--waves", action="store_true", help="dump a waveform next to the simulation log")
    p.add_argument("--emulated", action="store_true",
                   help="chip builds: simulate the chip's FPGA emulation build (block-RAM crossbars, target clocks "
                        "advanced by an enable) instead; clocks are target clocks, and host clocks per target "
                        "clock are reported")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    from flow.commands._common import add_device_args
    add_device_args(p, note="chip builds: program the cells under this device model instead of the build's "
                            "(its draws seeded by --seed); the golden model predicts the faulty outputs")


def _load_npy(path: str, flag: str):
    """A ``.npy`` array, or one line naming the flag when it cannot be read."""
    import numpy as np
    try:
        return np.load(path)
    except (OSError, ValueError) as e:
        raise ValueError(f"{flag} {path!r} could not be read: {e}") from None


def _chip_images(design, args):
    n = 3 if args.images is None else args.images
    if n < 1:
        raise ValueError(f"--images {n} is not allowed: it must be >= 1")
    if args.dataset:
        x = _load_npy(args.dataset, "--dataset")
        want = tuple(design.network.input_shape)
        if x.ndim != 4 or tuple(x.shape[1:]) != want:
            raise ValueError(f"--dataset has shape {x.shape}, the chip takes [N, {', '.join(map(str, want))}] codes")
        labels = None
        if args.labels:
            labels = _load_npy(args.labels, "--labels")
            if labels.shape != (x.shape[0],):
                raise ValueError(f"--labels has shape {labels.shape}, expected ({x.shape[0]},) for --dataset")
            labels = labels[:n]
        return x[:n], labels, args.dataset
    from flow.chip_check import chip_images
    return chip_images(design, n, args.seed)


def _run_chip(args) -> int:
    from flow.chip_check import load_build, run_chip_check
    from flow.commands._common import device_from_args
    design = load_build(args.build)
    device = device_from_args(args, args.seed, fallback=design.device)
    if device is not None:
        design = design.with_device(device, args.fault_aware)
    elif args.fault_aware:          # the build's own device model, now worked around
        design = design.with_device(design.device, True)
    if args.emulated:
        design = design.emulation()
    x, labels, source = _chip_images(design, args)
    rep = run_chip_check(design, x, labels=labels, seed=args.seed, sim=args.sim, waves=args.waves,
                         ready_prob=0.5 if args.backpressure else 1.0, gap_prob=0.3 if args.backpressure else 0.0,
                         waves_dir=args.build, progress=Progress.for_args(args), hierarchical=not args.flat)
    rep["dataset"] = source
    rep["rtl"] = ("emulation build, generated from the build folder (not written)" if args.emulated
                  else str(design_path(args.build, "rtl/chip.v")))
    if args.json:
        print(json.dumps(rep, indent=2))
        return 0 if rep["passed"] else 1
    ok = rep["mismatches"] == 0 and rep["diverged"] is None
    print(f"chip           {rep['network']} ({rep['mapping']} mapping, {rep['topology']}), {rep['images']} image(s) "
          f"from {source}")
    speed = f", {rep['clocks_per_second']} clocks/s" if rep.get("clocks_per_second") else ""
    print(f"cells          {design.device.describe() if design.device else 'ideal'}"
          f"{', fault-aware' if design.fault_aware else ''}")
    build = " flat" if args.flat else ""
    print(f"simulator      {rep['sim']}{build} ({rep['wall_seconds']} s{speed}); programming: {rep['prog_beats']} beats in "
          f"{rep['programming_clocks']} clocks")
    print(f"logits         {'bit-exact vs sim.golden.run_plan' if ok else 'MISMATCH'} "
          f"({rep['mismatches']} of {rep['images']} images differ"
          + (f"; first divergence in layer {rep['diverged']['layer']}" if rep['diverged'] else "") + ")")
    timing = "not checked (back-pressure)" if not rep["timing_checked"] else (
        "exact" if rep["measured_latency"] == rep["predicted_latency"]
        and rep["measured_interval"] == rep["predicted_interval"] else "MISMATCH")
    print(f"latency        measured {rep['measured_latency']}  predicted {rep['predicted_latency']}  {timing}")
    print(f"interval       measured {rep['measured_interval']}  predicted {rep['predicted_interval']}")
    if rep.get("host_per_target"):
        print(f"emulation      {rep['host_per_target']:.3f} host clocks per target clock "
              f"({rep['host_clocks']} host / {rep['target_clocks']} target clocks over the images)")
    if rep["accuracy"] is not None:
        print(f"accuracy       {rep['accuracy'] * 100:.1f} % top-1 (predictions {rep['predictions']})")
    print(f"rtl            {rep['rtl']}\nlog            {rep['log']}")
    if rep.get("waves"):
        print(f"waves          {rep['waves']}")
    print("PASS" if rep["passed"] else "FAIL")
    return 0 if rep["passed"] else 1


def design_path(build, rel):
    from pathlib import Path
    return Path(build) / rel


def run(args) -> int:
    from flow.buildfolder import read_manifest
    if args.flat and args.sim != "verilator":
        raise ValueError(f"--flat is not allowed with --sim {args.sim}: it is a way to build a Verilator model")
    m = read_manifest(args.build)
    if m.get("kind") == "chip":
        return _run_chip(args)
    if args.emulated:
        raise ValueError("--emulated is not allowed for a layer engine build: it applies to chip builds (`pimgen build`)")
    from flow.layer_check import TOP, load_build, run_layer_check
    if m.get("top") != TOP:
        raise ValueError(f"{args.build!r} is not a design pimgen can simulate: its manifest is neither a chip "
                         f"(`pimgen build`) nor a layer engine (`pimgen generate`)")
    from flow.commands._common import device_from_args
    if device_from_args(args, args.seed) is not None:
        raise ValueError(f"{args.build!r} is a layer engine: device flags apply to chips (`pimgen build`) and to "
                         f"`pimgen crossbar`")
    design, manifest = load_build(args.build)
    images = 1 if args.images is None else args.images
    if args.input:
        x = _load_npy(args.input, "--input")
        want = tuple(design.sched.in_shape)
        if x.ndim == 3:
            x = x[None]
        if x.ndim != 4 or tuple(x.shape[1:]) != want:
            raise ValueError(f"--input has shape {x.shape}, the layer takes [N, {want[0]}, {want[1]}, {want[2]}]")
        images = x
    rep = run_layer_check(design, images=images, seed=args.seed, sim=args.sim, waves=args.waves,
                          ready_prob=0.5 if args.backpressure else 1.0, gap_prob=0.3 if args.backpressure else 0.0,
                          waves_dir=args.build, progress=Progress.for_args(args), hierarchical=not args.flat)
    if args.json:
        print(json.dumps(rep, indent=2))
    else:
        print(f"layer          {rep['layer']}  ({rep['mapping']} mapping, duplication {rep['duplication']})")
        print(f"simulator      {rep['sim']}{' flat' if args.flat else ''}  ({rep['wall_seconds']} s)")
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
