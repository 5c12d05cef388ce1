"""Chips simulated end to end: the table a closing note of the chip work gives.

    .venv/bin/python bench/chip_simulate.py [--quick] [--json]

For each chip (the digits CNN on the 'small' preset, both mappings, on 5PP, mesh and torus
with ``--duplication balance``, with ``--duplication 3``, whose bands of 3, 3 and 2 rows
differ in size, and with ``--duplication 12``, whose novel conv2 is a 4x3 grid of columns 3,
3 and 2 wide (the 2-wide replicas compute 3); ``resnet20-mini`` with random weights, both mappings on
5PP and novel on a mesh, whose skips share its channels in time slots) it
streams images back to back through the Verilator model (``flow.chip_check.run_chip_check``:
every logit and every stage's words against ``sim.golden``, every image's latency and
interval against ``gen.perf``) and prints network, mapping, topology, images, the measured
latency of the first and last image, the steady interval, whether everything matched, the
accuracy where labels exist, and the wall time (a cold Verilator build included: builds are
cached under build/sim_cache, so a second run shows the simulation alone). ``--quick``
leaves out resnet20-mini, which takes minutes per mapping.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gen.config import ChipConfig  # noqa: E402
from gen.models import digits_dataset  # noqa: E402
from flow.chip_check import design_from_network, run_chip_check  # noqa: E402

#: (network, preset, mapping, topology, duplication, images)
CHIPS = [("digits", "small", "novel", "5pp", 1, 10), ("digits", "small", "conventional", "5pp", 1, 10),
         ("digits", "small", "novel", "mesh", 1, 10), ("digits", "small", "novel", "torus", 1, 10),
         ("digits", "small", "novel", "5pp", "balance", 10), ("digits", "small", "novel", "5pp", 3, 10),
         ("digits", "small", "novel", "5pp", 12, 10),
         ("resnet20-mini", "small", "novel", "5pp", 1, 3), ("resnet20-mini", "small", "conventional", "5pp", 1, 3),
         ("resnet20-mini", "small", "novel", "mesh", 1, 3)]


def simulate(name: str, preset: str, mapping: str, topology: str, duplication, images: int) -> dict:
    """One chip's row: build (cached), simulate ``images`` images, check, time."""
    t0 = time.perf_counter()
    d = design_from_network(name, ChipConfig.preset(preset), mapping, topology=topology, duplication=duplication)
    if name == "digits":
        x, labels = digits_dataset("test")
        x, labels = x[:images], labels[:images]
    else:
        x = np.random.default_rng(0).integers(0, 1 << d.chip.crossbar.a_bits, (images, *d.network.input_shape))
        labels = None
    rep = run_chip_check(d, x, labels=labels)
    lat, iv = rep["measured_latency"] or [], rep["measured_interval"] or []
    return {"network": name, "mapping": mapping, "topology": topology, "duplication": duplication, "images": images,
            "passed": rep["passed"], "mismatches": rep["mismatches"],
            "latency_first": lat[0] if lat else None, "latency_last": lat[-1] if lat else None,
            "interval_last": iv[-1] if iv else None, "timing_exact": (rep["measured_latency"] == rep["predicted_latency"]
                                                                      and rep["measured_interval"] == rep["predicted_interval"]),
            "accuracy": rep.get("accuracy"), "sim_clocks": rep.get("sim_clocks"),
            "wall_seconds": round(time.perf_counter() - t0, 1)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="leave out resnet20-mini (minutes per mapping)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    rows = []
    chips = [c for c in CHIPS if not (args.quick and c[0] != "digits")]
    for k, chip in enumerate(chips):
        print(f"  [{k + 1}/{len(chips)}] {chip[0]}, {chip[2]} mapping, {chip[3]}, duplication {chip[4]} ...",
              file=sys.stderr, flush=True)
        rows.append(simulate(*chip))
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0 if all(r["passed"] for r in rows) else 1
    print("| network | mapping | topology | duplication | images | latency first / last | interval (last) "
          "| bit-exact, clocks exact | accuracy | wall s |")
    print("|---|---|---|---|---:|---:|---:|---|---:|---:|")
    for r in rows:
        acc = "" if r["accuracy"] is None else f"{100 * r['accuracy']:.0f} %"
        ok = "yes" if r["passed"] and r["timing_exact"] else f"NO ({r['mismatches']} mismatches)"
        print(f"| {r['network']} | {r['mapping']} | {r['topology']} | {r['duplication']} | {r['images']} | "
              f"{r['latency_first']} / {r['latency_last']} | {r['interval_last']} | {ok} | {acc} | {r['wall_seconds']} |")
    return 0 if all(r["passed"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
