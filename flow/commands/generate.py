"""``pimgen generate --layer SPEC``: a layer engine's RTL, weights and manifest from its mapping plan."""
from __future__ import annotations

import argparse
import dataclasses
import json

HELP = "generate the RTL of one conv/linear layer engine (conventional or novel mapping) + weights + manifest"
DESCRIPTION = (
    "Map one layer onto a chip (the 'small' preset unless told otherwise, as for `pimgen build`) and generate "
    "its layer engine (hw.layer.ConvLayerEngine): OUT/rtl/layer.v (crossbars programmed through `prog`), "
    "OUT/weights/ (params.json and program.hex, the programming beats) and "
    "OUT/manifest.json (ports, shapes, schedule, expected clocks from the cycle model, the config). "
    "Simulate it with `pimgen simulate OUT`.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--layer", required=True, metavar="SPEC",
                   help='layer spec, e.g. "conv Cin=8 Cout=16 K=3 H=8 W=8 stride=1 pad=1" or "fc in=64 out=10"')
    p.add_argument("--mapping", choices=["conventional", "novel"], default="conventional",
                   help="weight mapping [conventional]; layers the novel mapping does not suit fall back")
    p.add_argument("-o", "--out", required=True, metavar="DIR",
                   help="build folder (created, or an earlier pimgen build replaced whole)")
    p.add_argument("--force", action="store_true",
                   help="replace DIR even if it is not a pimgen build (no manifest.json); its contents are deleted")
    p.add_argument("--dup", type=int, default=1, metavar="N", help="replicas of the layer (duplication) [1]")
    p.add_argument("--raw", action="store_true",
                   help="raw int32 outputs (last layer) instead of bias+requantize+ReLU to a_bits")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights and requantization [0]")
    p.add_argument("--json", action="store_true", help="machine-readable output (the manifest)")
    from flow.commands.map import add_chip_args
    add_chip_args(p, default_preset="small")


def design_from_args(args):
    from gen.layerspec import parse_layer_spec
    from flow.layer_check import LayerDesign
    from flow.commands.map import chip_from_args
    spec = parse_layer_spec(args.layer)
    chip = chip_from_args(args)
    return LayerDesign(spec, chip, args.mapping, args.dup, args.raw, args.seed)


def run(args) -> int:
    from flow.buildfolder import check_output
    from flow.layer_check import write_build
    check_output(args.out, force=args.force)        # before the work: a refusal costs nothing
    if args.seed < 0:
        raise ValueError(f"--seed {args.seed} is not allowed: it must be >= 0")
    d = design_from_args(args)
    out = write_build(d, args.out, force=args.force)
    m = json.loads((out / "manifest.json").read_text())
    if args.json:
        print(json.dumps(m, indent=2))
        return 0
    lt = d.sched
    xb = d.chip.crossbar
    fb = f" (fell back: {d.lp.reason})" if d.lp.mapping != args.mapping else ""
    print(f"layer      {d.spec}")
    print(f"mapping    {d.lp.mapping}{fb}, duplication {d.lp.duplication}, "
          f"{'raw int32' if d.raw else 'requantized'} outputs")
    print(f"hardware   crossbar {xb.rows}x{xb.cols} (cell_bits {xb.cell_bits}, adc {xb.adc_resolution} bits, "
          f"{xb.cols_per_adc} cols/ADC), {d.lp.n_subarrays} crossbars in {d.lp.n_pes} PEs, {d.lp.n_tiles} tile(s); "
          f"buses G/T/P = {d.chip.global_bus_bits}/{d.chip.tile_bus_bits}/{d.chip.pe_bus_bits} bits")
    print(f"schedule   load {lt.load_words} + prologue {lt.prologue} + steps {lt.steps} (interval {lt.interval}; "
          f"stages {', '.join(f'{k} {v}' for k, v in lt.stages.items() if v)})")
    print(f"expected   {m['expected_clocks']} clocks per image (first input word -> last output word), "
          f"{m['expected_fm_reads']} feature-map reads")
    print(f"ports      i: {m['ports']['i']['bits']}-bit words x {m['ports']['i']['words_per_image']}; "
          + ", ".join(f"o[{t}]: {d.chip.global_bus_bits}-bit" for t in range(len(d.sched.tiles))))
    print(f"wrote      {out}/rtl/layer.v ({m['subarrays']} crossbars, programmed through `prog`), "
          f"{out}/weights/ ({m['ports']['prog']['beats']} programming beats), {out}/manifest.json")
    return 0
