"""Chip generation cost and simulation speed.

    .venv/bin/python bench/chip_generate.py [--quick] [--simulate] [--json]

For each network (digits on the 'small' preset, once with every layer mapped once and once
with ``--duplication balance``; resnet20, resnet18, resnet34 on the 'paper' preset; novel
mapping) it plans the chip and generates its Verilog, printing seconds, peak
MiB (the resident high-water mark of a process that generates that network alone), module
bodies, crossbar instances and Verilog MiB — or the one-line reason the chip does not build
that network yet. ResNet-18 and ResNet-34 take minutes and up to 3 GiB each; ``--quick``
leaves them out. With
``--simulate`` it also streams 10 real digits images through the digits chip on Verilator
and prints the simulated clocks per wall-clock second, as the testbench measures them over
programming and images (the build is cached under build/sim_cache; the first run compiles it).
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gen.chipplan import ChipError  # noqa: E402
from gen.config import ChipConfig  # noqa: E402
from flow.chip_check import design_from_network, run_chip_check  # noqa: E402

#: (network, preset, duplication)
NETWORKS = [("digits", "small", "1"), ("digits", "small", "balance"), ("resnet20", "paper", "1"),
            ("resnet18", "paper", "1"), ("resnet34", "paper", "1")]

def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def generate(name: str, preset: str, duplication: str = "1") -> dict:
    row = {"network": name if duplication == "1" else f"{name} (duplication {duplication})", "preset": preset}
    t0 = time.perf_counter()
    try:
        d = design_from_network(name, ChipConfig.preset(preset), "novel",
                                duplication=int(duplication) if duplication.isdigit() else duplication)
        v = d.verilog
    except ChipError as e:
        row["refused"] = str(e)
        return row
    row.update({"seconds": round(time.perf_counter() - t0, 1), "peak_mib": round(_peak_mib()),
                "module_bodies": v.count("\nmodule ") + v.startswith("module "),
                "crossbar_instances": d.cp.n_xbars, "verilog_mib": round(len(v) / 2**20, 2)})
    return row


def simulate_digits(images: int = 10) -> dict:
    from gen.models import digits_dataset
    d = design_from_network("digits", ChipConfig.preset("small"), "novel")
    x, labels = digits_dataset("test")
    rep = run_chip_check(d, x[:images], labels=labels[:images])
    # the testbench times programming and images itself (simulator start-up and golden model apart)
    return {"images": images, "passed": rep["passed"], "simulated_clocks": rep["sim_clocks"],
            "wall_seconds": rep["wall_seconds"], "clocks_per_second": rep["clocks_per_second"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--simulate", action="store_true", help="also measure Verilator clocks/s on the digits chip")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--quick", action="store_true", help="digits and resnet20 only (resnet18 and resnet34 take "
                                                         "minutes and GiB each)")
    ap.add_argument("--one", nargs=3, metavar=("NETWORK", "PRESET", "DUPLICATION"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:        # one network in this process, so its peak memory is its own
        print(json.dumps(generate(*args.one)))
        return 0
    rows = []
    for name, preset, dup in NETWORKS:
        if args.quick and name in ("resnet18", "resnet34"):
            continue
        print(f"  generating {name} (duplication {dup}) ...", file=sys.stderr, flush=True)
        r = subprocess.run([sys.executable, __file__, "--one", name, preset, dup], capture_output=True, text=True)
        if r.returncode:
            sys.stderr.write(r.stderr)
            return 1
        rows.append(json.loads(r.stdout.splitlines()[-1]))
    sim = simulate_digits() if args.simulate else None
    if args.json:
        print(json.dumps({"generate": rows, "simulate": sim}, indent=2))
        return 0
    print("| network | preset | seconds | peak MiB | module bodies | crossbar instances | Verilog MiB |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        if "refused" in r:
            why = f"refused: {r['refused']}"
            print(f"| {r['network']} | {r['preset']} | {why} | | | | |")
        else:
            print(f"| {r['network']} | {r['preset']} | {r['seconds']} | {r['peak_mib']} | {r['module_bodies']} | "
                  f"{r['crossbar_instances']} | {r['verilog_mib']} |")
    if sim:
        print(f"\ndigits chip on Verilator: {sim['simulated_clocks']} clocks for {sim['images']} images in "
              f"{sim['wall_seconds']} s = {sim['clocks_per_second']} simulated clocks/s "
              f"({'bit-exact, clocks exact' if sim['passed'] else 'FAILED'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
