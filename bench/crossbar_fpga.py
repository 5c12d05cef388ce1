"""Crossbar on ECP5-85F: LUT4, FF, BRAM, DSP and Fmax for 16x16, 32x32 and 64x64.

    .venv/bin/python bench/crossbar_fpga.py [--sizes 16 32 64] [--freq 100] [--seed 1] [--json]

Each size is a ``CrossbarConfig(rows=n, cols=n, cell_bits=2, cols_per_adc=8)`` (other
fields default), wrapped in the five-pin scan top (``hw/fpga_top.py``) and run through
``flow.fpga.synthesize`` (Yosys ``synth_ecp5`` + ``nextpnr-ecp5 --85k``). The FF count
includes the wrapper's scan chain (one FF per crossbar input bit) and output fold
registers. Goals (foundation issue): >= 100 MHz at 32x32; LUTs growing no faster than
linearly in cells (LUT/cell flat or falling).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gen.config import CrossbarConfig  # noqa: E402
from flow.fpga import synthesize  # noqa: E402
from hw.crossbar import Crossbar  # noqa: E402


def run(sizes, freq, seed, target="ecp5"):
    rows = []
    for n in sizes:
        cfg = CrossbarConfig(rows=n, cols=n, cell_bits=2, cols_per_adc=8)
        t0 = time.monotonic()
        r = synthesize(Crossbar(cfg), target, name=f"bench-crossbar-{n}x{n}", freq_mhz=freq, seed=seed,
                       bitstream=False)
        cells = n * n
        rows.append({
            "size": f"{n}x{n}", "cells": cells, "lut4": r.lut4, "ff": r.ff, "bram": r.bram, "dsp": r.dsp,
            "fmax_mhz": r.fmax_mhz, "timing_met": r.timing_met, "lut_per_cell": round(r.lut4 / cells, 2),
            "wrapper_ff": r.wrapper_ff, "yosys_s": r.yosys_seconds, "pnr_s": r.pnr_seconds,
            "wall_s": round(time.monotonic() - t0, 1),
            "critical_path": r.critical_path.describe() if r.critical_path else None,
        })
        print(f"  {n}x{n}: done in {rows[-1]['wall_s']} s", file=sys.stderr, flush=True)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[16, 32, 64])
    ap.add_argument("--freq", type=float, default=100.0, help="clock target in MHz (default 100)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    rows = run(args.sizes, args.freq, args.seed)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"Crossbar on ECP5 LFE5U-85F (cell_bits 2, cols_per_adc 8; target {args.freq:g} MHz, seed {args.seed})")
    hdr = f"{'size':>6} {'cells':>6} {'LUT4':>7} {'FF':>7} {'(wrapper)':>9} {'BRAM':>5} {'DSP':>4} {'Fmax MHz':>9}" \
          f" {'LUT/cell':>9} {'yosys s':>8} {'P&R s':>7}"
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        print(f"{r['size']:>6} {r['cells']:>6} {r['lut4']:>7} {r['ff']:>7} {r['wrapper_ff']:>9} {r['bram']:>5} {r['dsp']:>4} "
              f"{r['fmax_mhz']:>9.1f} {r['lut_per_cell']:>9.2f} {r['yosys_s']:>8.1f} {r['pnr_s']:>7.1f}")
    print()
    for r in rows:
        print(f"critical path {r['size']}: {r['critical_path']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
