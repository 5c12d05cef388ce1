"""Chip generation cost and simulation speed.

    .venv/bin/python bench/chip_generate.py [--quick] [--jobs N] [--simulate] [--json]

For each network (digits on the 'small' preset, once with every layer mapped once and once
with ``--duplication balance``; resnet20, resnet18, resnet34 on the 'paper' preset; novel
mapping) it plans the chip and generates its Verilog with ``--jobs`` processes (default
``flow.emit.default_jobs()``: ``PIMGEN_JOBS``, else the cores), printing seconds, peak MiB
(the high-water mark of the proportional set size summed over the process that generates
that network alone and the processes it forks, sampled every 0.2 s: shared pages counted
once), module bodies, crossbar instances and Verilog MiB — or the one-line reason the chip
does not build that network yet. ResNet-18 and ResNet-34 take minutes and up to 2 GiB each;
``--quick`` leaves them out. With
``--simulate`` it also streams 10 real digits images through the digits chip on Verilator,
in the hierarchical build (the default) and the flat one (``pimgen simulate --flat``), and
prints the simulated clocks per wall-clock second, as the testbench measures them over
programming and images (the builds are cached under build/sim_cache; the first run compiles them).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gen.chipplan import ChipError  # noqa: E402
from gen.config import ChipConfig  # noqa: E402
from flow.chip_check import design_from_network, run_chip_check  # noqa: E402
from flow.commands._common import add_jobs_arg, jobs_from_args  # noqa: E402

#: (network, preset, duplication)
NETWORKS = [("digits", "small", "1"), ("digits", "small", "balance"), ("resnet20", "paper", "1"),
            ("resnet18", "paper", "1"), ("resnet34", "paper", "1")]

#: The issue's goal for the digits chip on Verilator, simulated clocks per wall-clock second.
SIM_GOAL = 100_000


def _tree_pss_kib(pid: int) -> int:
    """Proportional set size of process ``pid`` and all its descendants, KiB (0 once gone)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            total += next(int(line.split()[1]) for line in open(f"/proc/{p}/smaps_rollup") if line.startswith("Pss:"))
            for t in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (t / "children").read_text().split()]
        except (OSError, StopIteration, ValueError):
            pass        # it ended meanwhile
    return total


def run_one(name: str, preset: str, dup: str, jobs: int) -> dict:
    """Generate one network in a process of its own; its row, with the peak memory of that
    process and the ones it forks."""
    proc = subprocess.Popen([sys.executable, __file__, "--one", name, preset, dup, "--jobs", str(jobs)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, _tree_pss_kib(proc.pid))
        time.sleep(0.2)
    out, err = proc.communicate()
    if proc.returncode:
        raise RuntimeError(f"generating {name} failed:\n{err}")
    row = json.loads(out.splitlines()[-1])
    if "refused" not in row:
        row["peak_mib"] = round(peak / 1024)
    return row


def generate(name: str, preset: str, duplication: str = "1", jobs: int = 1) -> dict:
    row = {"network": name if duplication == "1" else f"{name} (duplication {duplication})", "preset": preset}
    t0 = time.perf_counter()
    try:
        d = design_from_network(name, ChipConfig.preset(preset), "novel",
                                duplication=int(duplication) if duplication.isdigit() else duplication)
        d.jobs = jobs
        v = d.verilog
    except ChipError as e:
        row["refused"] = str(e)
        return row
    row.update({"seconds": round(time.perf_counter() - t0, 1), "jobs": jobs,
                "module_bodies": v.count("\nmodule ") + v.startswith("module "),
                "crossbar_instances": d.cp.n_xbars, "verilog_mib": round(len(v) / 2**20, 2)})
    return row


def simulate_digits(images: int = 10) -> list[dict]:
    """The digits chip on Verilator, hierarchical (the default) and flat (``--flat``)."""
    from gen.models import digits_dataset
    d = design_from_network("digits", ChipConfig.preset("small"), "novel")
    x, labels = digits_dataset("test")
    rows = []
    for hierarchical in (True, False):
        rep = run_chip_check(d, x[:images], labels=labels[:images], hierarchical=hierarchical)
        # the testbench times programming and images itself (simulator start-up and golden model apart)
        rows.append({"build": "hierarchical" if hierarchical else "flat", "images": images,
                     "passed": rep["passed"], "simulated_clocks": rep["sim_clocks"],
                     "sim_wall_seconds": rep["sim_wall_seconds"], "clocks_per_second": rep["clocks_per_second"],
                     "run_seconds": rep["wall_seconds"]})
    return rows


def _processes(jobs: int) -> str:
    return f"{jobs} process" + ("es" if jobs > 1 else "")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--simulate", action="store_true", help="also measure Verilator clocks/s on the digits chip")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--quick", action="store_true", help="digits and resnet20 only (resnet18 and resnet34 take "
                                                         "minutes and GiB each)")
    add_jobs_arg(ap)
    ap.add_argument("--one", nargs=3, metavar=("NETWORK", "PRESET", "DUPLICATION"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    try:
        args.jobs = jobs_from_args(args)
    except ValueError as e:
        ap.error(str(e))
    if args.one:        # one network in this process, so its peak memory is its own
        print(json.dumps(generate(*args.one, jobs=args.jobs)))
        return 0
    rows = []
    for name, preset, dup in NETWORKS:
        if args.quick and name in ("resnet18", "resnet34"):
            continue
        print(f"  generating {name} (duplication {dup}, {_processes(args.jobs)}) ...", file=sys.stderr, flush=True)
        try:
            rows.append(run_one(name, preset, dup, args.jobs))
        except RuntimeError as e:
            sys.stderr.write(f"{e}\n")
            return 1
    sim = simulate_digits() if args.simulate else None
    if args.json:
        print(json.dumps({"generate": rows, "simulate": sim}, indent=2))
        return 0
    print(f"generation with {_processes(args.jobs)}")
    print("| network | preset | seconds | peak MiB | module bodies | crossbar instances | Verilog MiB |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        if "refused" in r:
            why = f"refused: {r['refused']}"
            print(f"| {r['network']} | {r['preset']} | {why} | | | | |")
        else:
            print(f"| {r['network']} | {r['preset']} | {r['seconds']} | {r['peak_mib']} | {r['module_bodies']} | "
                  f"{r['crossbar_instances']} | {r['verilog_mib']} |")
    for r in sim or ():
        print(f"\ndigits chip on Verilator, {r['build']} build: {r['simulated_clocks']} clocks for {r['images']} "
              f"images in {r['sim_wall_seconds']} s = {r['clocks_per_second']} simulated clocks/s "
              f"(goal {SIM_GOAL // 1000} k: {'met' if r['clocks_per_second'] >= SIM_GOAL else 'not met'}; "
              f"{'bit-exact, clocks exact' if r['passed'] else 'FAILED'}; the whole run, Verilator build "
              f"included unless cached, {r['run_seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
