"""``pimgen synth BLOCK ...``: Yosys synthesis + nextpnr place & route of one block, or of a
whole chip on a board.

The first positional argument is the kind of block; each kind is one entry of
:data:`BLOCKS` with its own options (``add_arguments``) and a ``build(args)`` that returns
``(Amaranth component, build-folder name, one-line description)``. ``board`` is the whole
chip of a ``pimgen build`` folder on an FPGA board (``flow.board.synthesize_board``):
``pimgen synth DIR --board ulx3s`` is short for ``pimgen synth board DIR --board ulx3s``
(:func:`alias`).
"""
from __future__ import annotations

import argparse
import json
import sys

from flow import fpga

HELP = "synthesize and place & route a block on an FPGA (ECP5 / iCE40): LUT4, FF, BRAM, DSP, Fmax"
DESCRIPTION = (
    "Synthesize a block with Yosys and place & route it with nextpnr (YoWASP packages), inside a five-pin "
    "scan-chain top (clk, rst, sin, sen, sout) so any block fits the package. Prints LUT4/FF/BRAM/DSP and "
    "Fmax. Build files go to build/synth/<name>-<target>/.")


# --- block kinds --------------------------------------------------------------------
def _crossbar_args(p: argparse.ArgumentParser) -> None:
    from flow.commands._common import add_crossbar_args
    add_crossbar_args(p)


def _crossbar_build(args):
    from flow.commands._common import crossbar_from_args
    from hw.crossbar import Crossbar

    cfg = crossbar_from_args(args)
    name = fpga.design_name(f"crossbar-{cfg.rows}x{cfg.cols}", cfg.to_dict())
    desc = (f"crossbar {cfg.rows}x{cfg.cols} (cell_bits {cfg.cell_bits}, dac_bits {cfg.dac_bits}, "
            f"adc_bits {cfg.adc_resolution}, adc_shift {cfg.adc_shift}, cols_per_adc {cfg.cols_per_adc})")
    return Crossbar(cfg), name, desc


#: kind -> (help, add_arguments, build)
BLOCKS = {
    "crossbar": ("one RRAM crossbar (hw.crossbar.Crossbar)", _crossbar_args, _crossbar_build),
}


def _flow_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("flow")
    g.add_argument("--target", choices=sorted(fpga.TARGETS), default="ecp5",
                   help="ecp5: LFE5U-85F CABGA381 (ULX3S); ice40: iCE40UP5K SG48 (iCEBreaker). Default ecp5")
    g.add_argument("--freq", type=float, default=None, metavar="MHZ",
                   help="clock target in MHz (default: the constraint file's, 100)")
    g.add_argument("--seed", type=int, default=1, help="nextpnr placer seed (default 1)")
    g.add_argument("--build-dir", default=None, metavar="DIR", help="folder of build folders (default build/synth)")
    g.add_argument("--no-bitstream", action="store_true", help="skip packing a bitstream")
    g.add_argument("--json", action="store_true", help="print the result as JSON")


BOARD_HELP = ("a chip build folder (`pimgen build`) on an FPGA board: its emulation build (block-RAM crossbars, "
              "decoupled target clock) behind a UART, programmed from block RAM; writes DIR/fpga/<board>.bit")


def alias(argv: list[str]) -> list[str]:
    """``synth DIR ...`` means ``synth board DIR ...``: a first argument that is no block kind and
    names a folder (an existing one, or a path with a separator; any other word is left to the
    parser, which lists the block kinds)."""
    import os
    if (len(argv) >= 2 and argv[0] == "synth" and not argv[1].startswith("-") and argv[1] not in (*BLOCKS, "board")
            and (os.path.isdir(argv[1]) or os.sep in argv[1] or "/" in argv[1])):
        return ["synth", "board", *argv[1:]]
    return argv


def _board_args(p: argparse.ArgumentParser) -> None:
    from flow.board import BOARDS
    p.add_argument("build", metavar="DIR", help="chip build folder written by `pimgen build`")
    p.add_argument("--board", choices=sorted(BOARDS), default="ulx3s",
                   help="ulx3s: ECP5-85F, 20 MHz from its PLL; icebreaker: iCE40UP5K, 12 MHz (small designs only). "
                        "Default ulx3s")
    p.add_argument("--seed", type=int, default=1, help="nextpnr placer seed (default 1)")
    p.add_argument("--clock-mhz", type=float, default=None, metavar="F",
                   help="the design's clock: on the ulx3s a PLL output from the 25 MHz oscillator (default 20, "
                        "the clock the digits chip has been routed and measured at), or 25 for the oscillator itself")
    p.add_argument("--images", type=int, default=3,
                   help="images the emulation build is simulated on (Verilator) to measure host clocks per target "
                        "clock, for the images/s on the board; 0 skips it (default 3)")
    p.add_argument("--no-fit-check", action="store_true",
                   help="run synthesis and place and route even when the design has more flip-flops than the "
                        "device before synthesis (the check takes seconds, the run most of an hour)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="block", metavar="BLOCK", required=True,
                                title="blocks", description=f"one of: {', '.join(BLOCKS)}, board "
                                                            "(or a chip build folder: `pimgen synth DIR --board ulx3s`)")
    for kind, (help_, add, _) in BLOCKS.items():
        p = sub.add_parser(kind, help=help_, description=f"{DESCRIPTION}\n\nBlock: {help_}.")
        add(p)
        _flow_args(p)
    p = sub.add_parser("board", help=BOARD_HELP, description=f"Synthesize, place and route {BOARD_HELP}. Prints "
                       "LUT4/FF/BRAM/DSP against the device, Fmax, the board clock and the images/s it gives. "
                       "Place and route of a near-full ECP5-85F takes tens of minutes.")
    _board_args(p)


def _table(res: fpga.SynthResult, desc: str) -> str:
    util = res.utilisation

    def cap(cell):
        if cell in util and util[cell][1]:
            used, avail = util[cell]
            return f" / {avail} ({100 * used / avail:.1f}%)"
        return ""

    logic = fpga.TARGETS[res.target].lut_capacity_cell
    lines = [
        f"{desc} on {res.target} ({res.device})",
        f"  LUT4      {res.lut4:>8}" + (cap("TRELLIS_COMB") if res.target == "ecp5" else ""),
        f"  FF        {res.ff:>8}" + (cap("TRELLIS_FF") if res.target == "ecp5" else ""),
        f"  BRAM      {res.bram:>8}",
        f"  DSP       {res.dsp:>8}",
    ]
    if res.target == "ice40" and logic in util:
        lines.append(f"  LC        {util[logic][0]:>8} / {util[logic][1]} ({100 * util[logic][0] / util[logic][1]:.1f}%)")
    lines += [
        f"  Fmax      {res.fmax_mhz:>8.2f} MHz (target {res.freq_mhz:g} MHz: "
        f"{'met' if res.timing_met else 'NOT met'})",
        f"  target    {res.target}",
        f"  build     {res.build_dir}  (yosys {res.yosys_seconds:.1f} s, nextpnr {res.pnr_seconds:.1f} s)",
    ]
    if res.critical_path:
        lines.append(f"  critical  {res.critical_path.describe()}")
    lines += [f"  note      {n}" for n in res.notes]
    return "\n".join(lines)


def _run_board(args) -> int:
    from flow.board import board_clock, board_of, board_throughput, synthesize_board
    from flow.chip_check import load_build
    from flow.progress import Progress
    if args.seed < 0:
        raise ValueError(f"--seed={args.seed} is not allowed: it must be >= 0")
    if args.images < 0:
        raise ValueError(f"--images {args.images} is not allowed: it must be >= 0 (0 skips the measurement)")
    if args.clock_mhz is not None and not args.clock_mhz > 0:
        raise ValueError(f"--clock-mhz {args.clock_mhz:g} is not allowed: the clock must be > 0 MHz")
    b = board_of(args.board)
    if args.clock_mhz is not None:      # a clock the board cannot make: refused before the long run
        board_clock(b, b.platform_class()(), args.clock_mhz)
    design = load_build(args.build)
    progress = Progress.for_args(args)
    try:
        res = synthesize_board(design, args.build, args.board, seed=args.seed, clock_mhz=args.clock_mhz,
                               progress=progress, fit_check=not args.no_fit_check)
        res = board_throughput(design, res, args.images, progress)
    except fpga.FlowError as e:
        print(f"pimgen synth: error: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(res, indent=2))
        return 0
    av = res["available"]

    def of(k):
        return f"{res[k]:>8} / {av[k]} ({100 * res[k] / av[k]:.1f}%)" if av.get(k) else f"{res[k]:>8}"
    print("\n".join([
        f"{design.network.name} chip on {res['board']} ({res['device']}): emulation build, UART {res['baud']} baud",
        f"  LUT4      {of('lut4')}", f"  FF        {of('ff')}", f"  BRAM      {of('bram')}", f"  DSP       {of('dsp')}",
        f"  Fmax      {res['fmax_mhz']:>8.2f} MHz (board clock {res['clock_mhz']:g} MHz"
        + (f", PLL from the oscillator, VCO {res['pll']['vco_mhz']:g} MHz" if res["pll"] else "") + ": "
        f"{'met' if res['timing_met'] else 'NOT met'})",
        (f"  images/s  {res['board_images_per_s']:,.0f} on the board ({res['target_clocks_per_image']} target clocks per image x "
         f"{res['host_per_target']:.2f} host clocks per target clock, measured over {args.images} images, at "
         f"{res['clock_mhz']:g} MHz) against {res['asic_images_per_s']:,.0f} for the ASIC at {res['asic_clock_mhz']} MHz"
         if res["host_per_target"] else
         f"  images/s  {res['asic_images_per_s']:,.0f} for the ASIC at {res['asic_clock_mhz']} MHz "
         f"({res['target_clocks_per_image']} target clocks per image; --images N measures the board's)"),
        f"  bitstream {res['bitstream']}",
        f"  build     {res['build_dir']}  (" + ", ".join(f"{k} {v:.0f} s" for k, v in res["seconds"].items()) + ")",
        *([f"  critical  {res['critical_path']}"] if res.get("critical_path") else []),
    ]))
    return 0


def run(args) -> int:
    if args.block == "board":
        return _run_board(args)
    _, _, build = BLOCKS[args.block]
    if args.freq is not None and not args.freq > 0:
        raise ValueError(f"--freq={args.freq:g} is not allowed: the clock target must be > 0 MHz")
    if args.seed < 0:
        raise ValueError(f"--seed={args.seed} is not allowed: it must be >= 0")
    design, name, desc = build(args)
    try:
        res = fpga.synthesize(design, args.target, name=name, freq_mhz=args.freq, seed=args.seed,
                              build_root=args.build_dir, bitstream=not args.no_bitstream)
    except fpga.FlowError as e:
        print(f"pimgen synth: error: {e}", file=sys.stderr)
        return 1
    if args.json:
        d = res.to_dict()
        cp = res.critical_path
        d["critical_path"] = None if cp is None else {
            "start": cp.start, "end": cp.end, "delay_ns": cp.delay_ns, "logic_levels": cp.logic_levels,
            "logic_ns": cp.logic_ns, "routing_ns": cp.routing_ns}
        d["block"] = args.block
        print(json.dumps(d, indent=2))
    else:
        print(_table(res, desc))
    return 0
