"""``pimgen map``: map a network onto the chip and print the per-layer plan and cycle model."""
from __future__ import annotations

import argparse
import json
import sys

# the network argument is shared by every command that takes one (sweep imports these names from here)
from flow.network_input import add_network_args, network_from_args  # noqa: F401

HELP = "map a network (zoo name, NeuroSim CSV, ONNX or .pimgen file) onto the chip; per-layer plan and clocks"
DESCRIPTION = (HELP + ". Networks: digits, vgg8, vgg16, resnet18, resnet34, resnet20, resnet32, a NeuroSim CSV "
               "(positional or --neurosim-csv FILE), an ONNX file (float or quantized; only the architecture is "
               "used) or a .pimgen file. The chip is the 'paper' preset unless told otherwise.")


def add_chip_args(p: argparse.ArgumentParser, default_preset: str = "paper") -> None:
    """The chip knobs: ``--preset NAME|FILE.toml`` (``default_preset`` when neither it nor
    ``--chip-config`` is given), ``--chip-config``, and one flag per chip/crossbar field."""
    from gen.config import chip_presets
    g = p.add_argument_group("chip")
    g.add_argument("--preset", metavar="NAME|FILE.toml",
                   help=f"chip preset ({', '.join(chip_presets())}) or a chip TOML file [{default_preset}]")
    g.add_argument("--chip-config", metavar="TOML", help="load the chip config from a TOML file instead of a preset")
    p.set_defaults(default_preset=default_preset)
    from flow.commands._common import add_config_flags
    from gen.config import ChipConfig, CrossbarConfig
    d = ChipConfig.preset(default_preset)
    add_config_flags(g, ChipConfig, d, where=f"{default_preset}: ")
    add_config_flags(p.add_argument_group("crossbar (of the chip)"), CrossbarConfig, d.crossbar,
                     where=f"{default_preset}: ")


def add_plan_args(p: argparse.ArgumentParser) -> None:
    """How the analysis commands (map, compare, sweep) plan and count: duplication, speed-up, serial."""
    g = p.add_argument_group("plan")
    g.add_argument("--speedup", type=int, default=8,
                   help="NeuroSim speed-up degree for the pipelined chip's duplication [8]")
    g.add_argument("--duplication", metavar="N|auto",
                   help="replicas per weight layer: an integer, 'auto' (NeuroSim's rule; default with --pipeline) or "
                        "'balance' (in proportion to each layer's clocks)")
    g.add_argument("--serial", action="store_true",
                   help="cycle model without double-buffering (stages back to back, NeuroSim-style accounting)")


def chip_from_args(args):
    import dataclasses
    from gen.config import ChipConfig
    if getattr(args, "speedup", 1) is not None and getattr(args, "speedup", 1) < 1:
        raise ValueError(f"--speedup {args.speedup} is not allowed: the speed-up degree must be an integer >= 1")
    preset = getattr(args, "preset", None)
    if preset is not None and not preset.strip():
        raise ValueError("--preset '' is not allowed: give a preset name or a chip TOML file")
    if preset and getattr(args, "chip_config", None):
        raise ValueError(f"--preset {preset} and --chip-config {args.chip_config} both name the chip: give one")
    chip = (ChipConfig.from_toml(args.chip_config) if getattr(args, "chip_config", None)
            else ChipConfig.preset(preset or getattr(args, "default_preset", "paper")))
    from flow.commands._common import config_overrides
    from gen.config import CrossbarConfig
    over = config_overrides(args, ChipConfig)
    xo = config_overrides(args, CrossbarConfig)
    if xo:
        over["crossbar"] = dataclasses.replace(chip.crossbar, **xo)
    return dataclasses.replace(chip, **over) if over else chip


def duplication_from_args(args):
    d = args.duplication
    if d is None or d in ("auto", "balance"):
        return d
    try:
        n = int(d)
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"--duplication {d!r} is not allowed: use an integer >= 1, 'auto' or 'balance'")
    return n


def fmt_shape(s) -> str:
    return "x".join(str(v) for v in s)


def layer_record(lp, lt) -> dict:
    """JSON record of one layer (plan + timing)."""
    u = lt.utilization if lp.has_weights else None
    return {"name": lp.name, "kind": lp.layer.kind, "mapping": lp.mapping, "reason": lp.reason,
            "in_shape": list(lp.in_shape), "out_shape": list(lp.out_shape), "clocks": lt.clocks,
            "interval": lt.interval, "bound": lt.bound, "subarrays": lp.n_subarrays, "pes": lp.n_pes,
            "tiles": lp.n_tiles, "duplication": lp.duplication,
            "utilization": u["subarray"] if u else None, "utilization_levels": u,
            "busy_clocks": lt.busy, "step_clocks": lt.step, "traffic_bits": lt.traffic,
            "params": 0 if not lp.has_weights else lp.layer.weight_rows * lp.layer.weight_cols + lp.layer.weight_cols}


def summary_record(plan, est) -> dict:
    """The ``map --json`` object (also each side of ``compare --json``)."""
    u = est.utilization
    return {"network": plan.network.name, "mapping": plan.mapping, "pipeline": plan.pipeline,
            "overlap": est.overlap, "params": plan.network.params, "macs": plan.network.macs,
            "total_clocks": est.total_clocks, "latency_clocks": est.latency_clocks,
            "interval_clocks": est.interval_clocks, "clock_mhz": plan.chip.clock_mhz, "fps": est.fps,
            "latency_ms": est.latency_s * 1e3, "subarrays": est.subarrays, "pes": est.pes, "tiles": est.tiles,
            "fits": plan.fits, "utilization": u["subarray"], "utilization_levels": u,
            "novel_layers": sum(lp.mapping == "novel" for lp in plan.layers),
            "weight_layers": len(plan.weight_layers),
            "traffic_bits": est.traffic(), "busy_clocks": est.busy(),
            "layers": [layer_record(lp, lt) for lp, lt in zip(plan.layers, est.layers)]}


def chip_line(chip) -> str:
    x = chip.crossbar
    return (f"chip: {x.rows}x{x.cols} subarrays ({x.cell_bits} b/cell, {x.outputs} weights/row, "
            f"{x.cols_per_adc} cols/ADC, MVM {__import__('gen.timing', fromlist=['crossbar_latency']).crossbar_latency(x)}"
            f" clk), {chip.subarrays_per_pe} subarrays/PE, {chip.pes_per_tile} PEs/tile, buses "
            f"global {chip.global_bus_bits} / tile {chip.tile_bus_bits} / PE {chip.pe_bus_bits} b/clk, "
            f"{chip.clock_mhz} MHz")


def print_table(plan, est, out=None) -> None:
    out = out or sys.stdout   # looked up per call: a default bound at import goes stale
    hdr = (f"{'layer':<20} {'kind':<7} {'in -> out':<22} {'mapping':<12} {'subarr':>6} {'PEs':>5} {'tiles':>5} "
           f"{'dup':>4} {'util':>5} {'clocks':>10} {'II':>4} {'bound':<9} {'mvm':>9} {'buffer':>9} "
           f"{'intercon':>9} {'accum':>8}")
    print(hdr, file=out)
    print("-" * len(hdr), file=out)
    for lp, lt in zip(plan.layers, est.layers):
        util = f"{lt.utilization['subarray'] * 100:4.0f}%" if lp.has_weights else "    -"
        mp = lp.mapping if lp.mapping != "none" else "-"
        if lp.reason and plan.mapping == "novel":
            mp += "*"
        b = lt.busy
        print(f"{lp.name:<20} {lp.layer.kind:<7} {fmt_shape(lp.in_shape) + ' -> ' + fmt_shape(lp.out_shape):<22} "
              f"{mp:<12} {lp.n_subarrays:>6} {lp.n_pes:>5} {lp.n_tiles:>5} {lp.duplication:>4} {util:>5} "
              f"{lt.clocks:>10,} {lt.interval:>4} {lt.bound:<9} {b.get('mvm', 0):>9,} {b.get('buffer', 0):>9,} "
              f"{b.get('interconnect', 0):>9,} {b.get('accumulate', 0):>8,}", file=out)
    if plan.mapping == "novel":
        reasons = sorted({lp.reason for lp in plan.layers if lp.reason})
        if reasons:
            print(f"* fell back to conventional: {'; '.join(reasons)}", file=out)


def print_summary(plan, est, out=None) -> None:
    out = out or sys.stdout
    net = plan.network
    u = est.utilization
    mode = "layer-pipelined" if plan.pipeline else "layer-by-layer"
    print(f"network {net.name}: input {fmt_shape(net.input_shape)}, {len(net.weight_layers)} weight layers, "
          f"{net.params:,} parameters, {net.macs:,} MACs", file=out)
    print(chip_line(plan.chip), file=out)
    print(f"mapping {plan.mapping}, {mode}{'' if est.overlap else ', serial stages (no double-buffering)'}: "
          f"latency {est.latency_clocks:,} clk ({est.latency_s * 1e3:.3f} ms), interval {est.interval_clocks:,} clk, "
          f"{est.fps:,.1f} images/s", file=out)
    print(f"hardware: {est.subarrays:,} subarrays, {est.pes:,} PEs, {est.tiles:,} tiles"
          f"{'' if plan.fits else f' (chip has {plan.chip.tiles}: does NOT fit)'}; utilisation subarray "
          f"{u['subarray'] * 100:.1f}%, PE {u['pe'] * 100:.1f}%, tile {u['tile'] * 100:.1f}%", file=out)


def run(args) -> int:
    from gen.mapping import map_network
    from gen.perf import estimate
    net = network_from_args(args)
    chip = chip_from_args(args)
    plan = map_network(net, chip, mapping=args.mapping, pipeline=args.pipeline,
                       duplication=duplication_from_args(args), speedup=args.speedup)
    est = estimate(plan, overlap=not args.serial)
    if args.write_csv:
        from gen.neurosim import write_neurosim_csv
        write_neurosim_csv(net, args.write_csv)
    if args.json:
        json.dump(summary_record(plan, est), sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    print_summary(plan, est)
    print()
    print_table(plan, est)
    return 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_network_args(p)
    p.add_argument("--mapping", choices=["conventional", "novel"], default="conventional",
                   help="weight mapping [conventional]")
    p.add_argument("--pipeline", action="store_true", help="layer-pipelined chip (duplication 'auto' by default)")
    add_chip_args(p)
    add_plan_args(p)
    p.add_argument("--write-csv", metavar="FILE", help="also write the network as a NeuroSim CSV")
    p.add_argument("--json", action="store_true", help="machine-readable output")
