"""Whole chips on the ULX3S (ECP5-85F): resources, Fmax, host clocks per target clock, images/s
on the board beside the ASIC's.

    .venv/bin/python bench/fpga_board.py [--only NAME] [--images N] [--clock-mhz F] [--json]

For each chip (the small 'board' network -- conv, max-pool, conv, linear on a 2x6x6 input, random
weights -- and the trained digits network in both mappings, 'small' preset), it runs
``flow.board.synthesize_board`` (Yosys, nextpnr, ecppack on the board top: the chip's emulation
build behind the UART) and, on N images (default 3), the emulation build under Verilator for host
clocks per target clock (``flow.board.board_throughput``), at the board's clock (a PLL's 20 MHz) or,
with ``--clock-mhz``, another one (``flow.board.board_clock``). A chip with more flip-flops than the
device is refused before synthesis; its row gives the count and where the registers are.
Synthesis and place and route of a near-full 85F take tens of minutes each: this stays out of
the tests.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flow import fpga  # noqa: E402
from flow.board import ULX3S_CLOCK_MHZ, board_throughput, synthesize_board  # noqa: E402
from flow.chip_check import ChipDesign, design_from_network  # noqa: E402
from flow.progress import Progress  # noqa: E402
from gen.config import ChipConfig  # noqa: E402

SMALL = ChipConfig.preset("small")


def board_network() -> ChipDesign:
    """A network small enough for the 85F: conv 2->4 (3x3) -> max-pool 2 -> conv 4->8 -> linear 10."""
    from gen.network import Conv2d, Linear, MaxPool, Network
    from gen.quantize import random_weights
    net = Network("board-net", (2, 6, 6), [
        Conv2d(name="c1", cin=2, cout=4, k=3, pad=1), MaxPool(name="p1", k=2),
        Conv2d(name="c2", cin=4, cout=8, k=3, pad=1), Linear(name="fc", in_features=8 * 3 * 3, out_features=10)])
    return ChipDesign(net, random_weights(net, 3), SMALL, "novel", source="random_weights(seed=3)")


DESIGNS = {
    "board-net": board_network,
    "digits-novel": lambda: design_from_network("digits", SMALL, "novel"),
    "digits-conventional": lambda: design_from_network("digits", SMALL, "conventional"),
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", choices=list(DESIGNS))
    ap.add_argument("--images", type=int, default=3)
    ap.add_argument("--clock-mhz", type=float, default=None, help="the board clock (default the board's, flow.board.ULX3S_CLOCK_MHZ)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    say = Progress(False if args.json else None)
    rows = []
    for name, make in DESIGNS.items():
        if args.only and name != args.only:
            continue
        d = make()
        t0 = time.perf_counter()
        row = {"design": name, "crossbars": d.cp.n_xbars}
        with tempfile.TemporaryDirectory(prefix=f"board-{name}-", dir="build") as tmp:
            try:
                res = synthesize_board(d, tmp, "ulx3s", clock_mhz=args.clock_mhz, progress=say)
                row.update({k: res[k] for k in ("lut4", "ff", "bram", "dsp", "fmax_mhz", "clock_mhz", "timing_met",
                                                "seconds")})
                row["fits"] = True
            except fpga.FitError as e:
                row.update({"fits": False, "why": str(e)})
                res = {"clock_mhz": args.clock_mhz or ULX3S_CLOCK_MHZ}
                row["clock_mhz"] = res["clock_mhz"]
        row.update({k: v for k, v in board_throughput(d, res, args.images, say).items()
                    if k in ("host_per_target", "board_images_per_s", "asic_images_per_s", "asic_clock_mhz",
                             "target_clocks_per_image")})
        row["wall_s"] = round(time.perf_counter() - t0, 1)
        rows.append(row)
        say(f"{name}: done in {row['wall_s']} s")
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print("| chip | crossbars | LUT4 | FF | DP16KD | MULT18 | Fmax MHz (clock) | host/target | images/s on the board "
          "| ASIC images/s | wall s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        hw = (f"{r['lut4']} | {r['ff']} | {r['bram']} | {r['dsp']} | {r['fmax_mhz']} ({r['clock_mhz']:g}: "
              f"{'met' if r['timing_met'] else 'NOT met'})" if r["fits"] else "does not fit | | | |")
        board = f"{r['board_images_per_s'] or 0:,.0f}" if r["fits"] else \
            f"({r['board_images_per_s'] or 0:,.0f} on a device it fits)"
        print(f"| {r['design']} | {r['crossbars']} | {hw} | {r['host_per_target']} | {board} | "
              f"{r['asic_images_per_s']:,.0f} at {r['asic_clock_mhz']} MHz | {r['wall_s']} |")
    for r in rows:
        if not r["fits"]:
            print(f"\n{r['design']}: {r['why']}")
        else:
            print(f"\n{r['design']}: " + ", ".join(f"{k} {v:.0f} s" for k, v in r["seconds"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
