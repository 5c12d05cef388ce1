"""Measured RTL clocks of layer engines, conventional vs novel, next to the cycle model.

    .venv/bin/python bench/layer_cycles.py [--sim icarus|verilator] [--json]

Every layer is generated for both mappings (``flow.layer_check.LayerDesign``), simulated on
one random image with no back-pressure, and its measured clocks (first input word accepted
-> last output word taken) are printed next to ``gen.perf`` (``engine_clocks`` = feature-map
load + layer clocks; ``layer`` = the layer alone, what ``estimate()`` uses). Two chips:
16x16 crossbars with 4-bit cells (7 outputs per crossbar, 4 columns per ADC: 37-clock MVMs)
and PE/tile buses of 32/64 bits, with a 64-bit and a 16-bit global bus — with the narrow
bus the conventional mapping's window fetch (``K*K`` pixels per output) becomes the
bottleneck, which the novel mapping (``s*s`` new pixels per output) avoids.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gen.config import ChipConfig, CrossbarConfig  # noqa: E402
from gen.layerspec import parse_layer_spec  # noqa: E402
from flow.layer_check import LayerDesign, run_layer_check  # noqa: E402

XB = CrossbarConfig(rows=16, cols=16, cell_bits=4, cols_per_adc=4)
CHIPS = {
    "G64": ChipConfig(crossbar=XB, subarrays_per_pe=4, pes_per_tile=9, global_bus_bits=64, tile_bus_bits=64,
                      pe_bus_bits=32),
    "G16": ChipConfig(crossbar=XB, subarrays_per_pe=4, pes_per_tile=9, global_bus_bits=16, tile_bus_bits=64,
                      pe_bus_bits=32),
}
LAYERS = [
    ("conv Cin=8 Cout=8 K=3 H=8 W=8 stride=1 pad=1", 9),
    ("conv Cin=16 Cout=8 K=3 H=8 W=8 stride=1 pad=1", 9),
    ("conv Cin=8 Cout=8 K=3 H=9 W=9 stride=2 pad=1", 9),
    ("conv Cin=4 Cout=4 K=5 H=8 W=8 stride=1 pad=2", 25),
]


def run(sim: str, chips=("G64", "G16"), layers=LAYERS):
    rows = []
    for chip_name in chips:
        for spec_text, ppt in layers:
            chip = dataclasses.replace(CHIPS[chip_name], pes_per_tile=ppt)
            spec = parse_layer_spec(spec_text)
            row = {"layer": spec_text, "chip": chip_name}
            for mapping in ("conventional", "novel"):
                d = LayerDesign(spec, chip, mapping)
                rep = run_layer_check(d, images=1, seed=1, sim=sim)
                lt = d.sched
                row[mapping] = {"mapping_used": d.lp.mapping, "measured": rep["measured_clocks"],
                                "model": lt.engine_clocks, "layer_model": lt.clocks, "load": lt.load_words,
                                "interval": lt.interval, "bound": lt.bound, "passed": rep["passed"],
                                "fm_reads": rep["fm_reads"], "crossbars": d.lp.n_subarrays}
                print(f"  {chip_name} {spec_text} {mapping}: {rep['measured_clocks']} clocks "
                      f"({'pass' if rep['passed'] else 'FAIL'}, {rep['wall_seconds']} s)", file=sys.stderr, flush=True)
            c, n = row["conventional"], row["novel"]
            row["ratio"] = round(c["measured"] / n["measured"], 3) if c["measured"] and n["measured"] else None
            row["layer_ratio"] = round(c["layer_model"] / n["layer_model"], 3)
            rows.append(row)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sim", choices=["icarus", "verilator"], default="icarus")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    rows = run(args.sim)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"Layer engines, RTL ({args.sim}) vs cycle model; crossbar 16x16, cell_bits 4, cols_per_adc 4 "
          f"(MVM {rows[0]['conventional']['interval'] if rows else '?'}+ clocks); clocks per image incl. the "
          f"feature-map load")
    hdr = (f"| {'bus':3} | {'layer':44} | {'conv RTL':>8} | {'conv model':>10} | {'novel RTL':>9} | "
           f"{'novel model':>11} | {'conv/novel':>10} | {'layer conv/novel':>16} | {'reads c/n':>9} |")
    print(hdr)
    print("|" + "|".join("-" * (len(x)) for x in hdr.split("|")[1:-1]) + "|")
    for r in rows:
        c, n = r["conventional"], r["novel"]
        nov = f"{n['measured']}" + ("" if n["mapping_used"] == "novel" else "*")
        print(f"| {r['chip']:3} | {r['layer']:44} | {c['measured']:>8} | {c['model']:>10} | {nov:>9} | "
              f"{n['model']:>11} | {r['ratio']:>10} | {r['layer_ratio']:>16} | "
              f"{str(c['fm_reads']) + '/' + str(n['fm_reads']):>9} |")
    bad = [r for r in rows for m in ("conventional", "novel")
           if r[m]["measured"] != r[m]["model"] or not r[m]["passed"]]
    print()
    print("every measured == model, every output bit-exact" if not bad else f"MISMATCH in {len(bad)} rows")
    return 0 if not bad else 1


if __name__ == "__main__":
    sys.exit(main())
