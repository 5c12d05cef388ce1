"""Emulated (block-RAM) crossbar vs the flip-flop crossbar on ECP5-85F: LUT4, FF, DP16KD, Fmax,
and the clocks per MVM (host clocks for the emulation, target clocks for the flip-flop one).

    .venv/bin/python bench/emu_crossbar_fpga.py [--preset small] [--freq 100] [--seed 1] [--no-ff] [--json]

The crossbar is the preset's (``small``: 32x32, cell_bits 4, cols_per_adc 8), random
weights as initial contents, each wrapped in the five-pin scan top (``hw/fpga_top.py``) and
run through ``flow.fpga.synthesize`` (Yosys ``synth_ecp5`` + ``nextpnr-ecp5 --85k``). The FF
count includes the wrapper's scan chain and output fold registers (``wrapper_ff``). At the
end, a per-crossbar budget: how many such emulated crossbars an ECP5-85F holds by LUT4 and
by DP16KD (crossbars alone, no layer engines or buffers).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gen.config import CrossbarConfig  # noqa: E402
from gen.emulation import EmulatedGeometry  # noqa: E402
from gen.timing import crossbar_latency, emulated_crossbar_host_clocks  # noqa: E402
from flow.fpga import synthesize  # noqa: E402
from hw.crossbar import Crossbar  # noqa: E402
from hw.emu_crossbar import EmulatedCrossbar  # noqa: E402

ECP5_85F = {"lut4": 83640, "bram": 208}


def run(cfg, freq, seed, with_ff=True):
    weights = np.random.default_rng(seed).integers(-cfg.weight_offset, cfg.weight_offset, (cfg.rows, cfg.outputs))
    kinds = [("emulated", EmulatedCrossbar(cfg, weights), emulated_crossbar_host_clocks(cfg))]
    if with_ff:
        kinds.append(("flip-flop", Crossbar(cfg, weights), crossbar_latency(cfg)))
    rows = []
    for kind, dut, clocks in kinds:
        t0 = time.monotonic()
        r = synthesize(dut, "ecp5", name=f"bench-{kind}-crossbar-{cfg.rows}x{cfg.cols}", freq_mhz=freq,
                       seed=seed, bitstream=False)
        rows.append({"kind": kind, "lut4": r.lut4, "ff": r.ff, "wrapper_ff": r.wrapper_ff, "bram": r.bram,
                     "dsp": r.dsp, "fmax_mhz": r.fmax_mhz, "timing_met": r.timing_met, "clocks_per_mvm": clocks,
                     "mvm_per_s_at_fmax": round(r.fmax_mhz * 1e6 / clocks), "yosys_s": r.yosys_seconds,
                     "pnr_s": r.pnr_seconds, "wall_s": round(time.monotonic() - t0, 1),
                     "critical_path": r.critical_path.describe() if r.critical_path else None})
        print(f"  {kind}: done in {rows[-1]['wall_s']} s", file=sys.stderr, flush=True)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="small", help="crossbar of gen/presets/<name>.toml (default small)")
    ap.add_argument("--freq", type=float, default=100.0, help="clock target in MHz (default 100)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--no-ff", action="store_true", help="skip the flip-flop crossbar")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    preset = Path(__file__).resolve().parents[1] / "gen" / "presets" / f"{args.preset}.toml"
    cfg = CrossbarConfig.from_toml(preset)
    rows = run(cfg, args.freq, args.seed, with_ff=not args.no_ff)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    geo = EmulatedGeometry(cfg)
    print(f"Crossbar {cfg.rows}x{cfg.cols}, cell_bits {cfg.cell_bits}, cols_per_adc {cfg.cols_per_adc} on ECP5 "
          f"LFE5U-85F (target {args.freq:g} MHz, seed {args.seed}); emulation: {geo.rows_per_word} rows per "
          f"{geo.rows_per_word * geo.cell_width}-bit word, {geo.reads} words")
    hdr = f"{'kind':>10} {'LUT4':>6} {'FF':>6} {'(wrapper)':>9} {'DP16KD':>6} {'Fmax MHz':>9} {'clk/MVM':>8} " \
          f"{'MVM/s @Fmax':>12} {'yosys s':>8} {'P&R s':>6}"
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        print(f"{r['kind']:>10} {r['lut4']:>6} {r['ff']:>6} {r['wrapper_ff']:>9} {r['bram']:>6} {r['fmax_mhz']:>9.1f} "
              f"{r['clocks_per_mvm']:>8} {r['mvm_per_s_at_fmax']:>12} {r['yosys_s']:>8.1f} {r['pnr_s']:>6.1f}")
    emu = rows[0]
    print()
    print(f"host clocks per target clock of one MVM: {emu['clocks_per_mvm']} / {crossbar_latency(cfg)} = "
          f"{emu['clocks_per_mvm'] / crossbar_latency(cfg):.2f}")
    core_lut = emu["lut4"]      # includes the wrapper's fold XORs (a few dozen LUT4)
    print(f"ECP5-85F budget, crossbars alone: {ECP5_85F['lut4'] // max(1, core_lut)} by LUT4 "
          f"({core_lut} each), {ECP5_85F['bram'] // max(1, emu['bram'])} by DP16KD ({emu['bram']} each)")
    for r in rows:
        print(f"critical path {r['kind']}: {r['critical_path']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
