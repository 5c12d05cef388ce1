"""``pimgen build NETWORK -o DIR``: the whole network as one chip (RTL, weights, manifest)."""
from __future__ import annotations

import argparse
import json

from gen.chipplan import TOPOLOGIES

HELP = "build a whole network as one layer-pipelined chip: rtl/, weights/ (programming image), manifest.json"
DESCRIPTION = (HELP + ". NETWORK is a zoo name (digits uses the trained model pimgen ships; the others random "
               "weights), a NeuroSim CSV (random weights), an ONNX file (float: with --calibration X.npy; "
               "quantized: as is) or a .pimgen file from `pimgen quantize`. The chip is the 'small' preset unless "
               "told otherwise. The folder is written whole or not at all.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from flow.commands.map import add_chip_args
    from flow.network_input import add_network_args
    add_network_args(p)
    p.add_argument("-o", "--out", required=True, metavar="DIR",
                   help="build folder (created, or an earlier pimgen build replaced whole)")
    p.add_argument("--force", action="store_true",
                   help="replace DIR even if it is not a pimgen build (no manifest.json); its contents are deleted")
    p.add_argument("--mapping", choices=["conventional", "novel"], default="novel", help="weight mapping [novel]")
    p.add_argument("--topology", choices=list(TOPOLOGIES), default="5pp",
                   help="interconnect the stages are placed on: 5pp (a link FIFO per flow) or mesh/torus (routers the "
                        "flows share in time slots) [5pp]")
    p.add_argument("--duplication", metavar="N|auto|balance", default="1",
                   help="replicas per weight layer, each computing a rectangle of its output (their pixels are put "
                        "back in raster order on the way out): an integer, 'auto' (NeuroSim's rule) or 'balance' (in "
                        "proportion to each layer's clocks) [1]")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of random weights (networks without trained ones) and of the device model's draws [0]")
    p.add_argument("--json", action="store_true", help="machine-readable output (the manifest)")
    add_chip_args(p, default_preset="small")
    from flow.commands._common import add_device_args, add_jobs_arg
    add_jobs_arg(p)
    add_device_args(p, note="the cells programmed into the chip (weights/program.hex) and predicted by the golden "
                            "model; draws seeded by --seed")


def design_from_args(args):
    from flow.chip_check import ChipDesign, design_from_network
    from flow.commands.map import chip_from_args, duplication_from_args
    if args.seed < 0:
        raise ValueError(f"--seed {args.seed} is not allowed: it must be >= 0")
    from flow.commands._common import device_from_args
    from flow.network_input import network_input
    chip = chip_from_args(args)
    dup = duplication_from_args(args)
    device = device_from_args(args, args.seed)
    ni = network_input(args, need_params=True)
    if ni.quant is not None:
        return ChipDesign(ni.net, ni.quant.params, chip, args.mapping, source=ni.source, topology=args.topology,
                          device=device, fault_aware=args.fault_aware, duplication=dup)
    if ni.kind == "zoo":
        return design_from_network(ni.source, chip, args.mapping, args.seed, args.topology, device, args.fault_aware,
                                   dup)
    # a NeuroSim CSV: the architecture only, random weights as for the zoo networks
    from gen.quantize import random_weights
    return ChipDesign(ni.net, random_weights(ni.net, args.seed, w_bits=chip.crossbar.w_bits, a_bits=chip.crossbar.a_bits),
                      chip, args.mapping, source=f"{ni.source}, random_weights(seed={args.seed})",
                      topology=args.topology, device=device, fault_aware=args.fault_aware, duplication=dup)


def run(args) -> int:
    from gen.chipplan import ChipError
    from flow.buildfolder import check_output
    from flow.chip_check import write_build
    from flow.progress import Progress
    from flow.commands._common import jobs_from_args
    check_output(args.out, force=args.force)        # before the work: a refusal costs nothing
    jobs = jobs_from_args(args)
    progress = Progress.for_args(args)
    try:
        progress(f"planning {args.network} ({args.mapping} mapping, {args.topology})")
        d = design_from_args(args)
        d.jobs = jobs
        progress(f"generating Verilog for {len(d.cp.stages)} layer engines, {d.cp.n_xbars} crossbars")
        out = write_build(d, args.out, force=args.force)
    except ChipError as e:      # the chip planner's refusal (a residual add, a concat, ...): one line
        raise ValueError(str(e).splitlines()[0]) from None
    m = json.loads((out / "manifest.json").read_text())
    m["paths"] = {"rtl": str(out / m["rtl"]), "weights": str(out / "weights"), "manifest": str(out / "manifest.json")}
    if args.json:
        print(json.dumps(m, indent=2))
        return 0
    cp = d.cp
    print(f"network    {d.network.name} ({d.source}), {d.mapping} mapping; {len(cp.stages)} layer engines, "
          f"{cp.n_xbars} crossbars, {len(cp.links)} links ({sum(ln.port == 'skip' for ln in cp.links)} into skip "
          f"FIFOs) on {cp.placement.topo.label if cp.placement else 'no fabric'}"
          + (f", the flows sharing its routers in {cp.links[0].period} time slots" if cp.links and cp.links[0].period > 1
             else ""))
    wn = max(len(s.name) for s in cp.stages)
    for n, s in enumerate(cp.stages):
        tail = "".join(f" -> {'+ stage ' + str(op.skip) if op.kind == 'add' else op.kind}"
                       + (f" {op.k}x{op.k}" if op.k else "")
                       + (f"/{op.stride} pad {op.pad}" if op.kind == "maxpool" and (op.pad or op.stride != op.k) else "")
                       for op in cp.tail(n))
        to = ", ".join(f"{ln.consumer}" + (" (skip)" if ln.port == "skip" else "") for ln in cp.out_links(n))
        reps = f" x{len(s.replicas)}" if len(s.replicas) > 1 else ""
        print(f"  stage {n:<2} {s.name:{wn}} {s.mapping + reps:12} in {s.in_shape} out {s.out_shape}  {s.clocks} clocks/image"
              f"{tail}" + (f" -> stage {to}" if to else ""))
    xb = d.chip.crossbar
    print(f"cells      {d.device.describe() if d.device else 'ideal'}{', fault-aware' if d.fault_aware else ''}; "
          f"{xb.cell_bits}-bit levels, "
          f"g_frac_bits={xb.g_frac_bits}")
    e = m["expected"]
    print(f"expected   latency {e['latency_first_images'][0]} clocks (first image), interval {e['steady_interval']} "
          f"clocks once full (bound: {e['bound']}) = {d.chip.clock_hz / e['steady_interval']:.0f} images/s at "
          f"{d.chip.clock_mhz} MHz")
    print(f"wrote      {m['paths']['rtl']}, {m['paths']['weights']}/ ({m['ports']['prog']['beats']} programming "
          f"beats), {m['paths']['manifest']}")
    return 0
