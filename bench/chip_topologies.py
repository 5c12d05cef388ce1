"""What a chip pays for its interconnect: the same network on 5PP, mesh and torus.

    .venv/bin/python bench/chip_topologies.py [--json]

For ResNet-20 on the 'paper' preset and resnet20-mini on 'small' (novel mapping, random
weights), without duplication and with ``--duplication balance``, it plans the chip on each
fabric and prints, from the cycle model (``gen.perf.chip_timing``, which the chip tests
check clock for clock): the grid, the time-slot period the flows share the routers in
(``gen.topology.slot_table``; 5PP has a link per flow), the longest flow in hops, the first
image's latency and the steady interval. No simulation: seconds.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gen.chipplan import plan_chip  # noqa: E402
from gen.config import ChipConfig  # noqa: E402
from gen.network import zoo  # noqa: E402
from gen.perf import chip_timing  # noqa: E402
from gen.quantize import random_weights  # noqa: E402

#: (network, preset, duplication)
CHIPS = [("resnet20", "paper", 1), ("resnet20", "paper", "balance"),
         ("resnet20-mini", "small", 1), ("resnet20-mini", "small", "balance")]
TOPOLOGIES = ("5pp", "mesh", "torus")


def row(name: str, preset: str, duplication, topology: str) -> dict:
    net = zoo(name)
    cp = plan_chip(net, random_weights(net, 0, calibrate=False), ChipConfig.preset(preset), "novel", topology,
                   duplication=duplication)
    t = chip_timing(cp, 4)
    pl = cp.placement
    return {"network": name, "preset": preset, "duplication": duplication, "topology": pl.topo.label,
            "period": cp.links[0].period or None, "max_hops": max(pl.hops(f) for f in pl.cg.flows),
            "latency_first": t.latency[0], "steady_interval": t.steady_interval}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    rows = []
    for k, (name, preset, dup) in enumerate(CHIPS):
        print(f"  [{k + 1}/{len(CHIPS)}] {name} ({preset}), duplication {dup} ...", file=sys.stderr, flush=True)
        rows += [row(name, preset, dup, topo) for topo in TOPOLOGIES]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print("| network | duplication | fabric | slot period | longest flow (hops) | first latency | steady interval |")
    print("|---|---|---|---:|---:|---:|---:|")
    for r in rows:
        period = "—" if r["period"] is None else r["period"]
        print(f"| {r['network']} ({r['preset']}) | {r['duplication']} | {r['topology']} | {period} | {r['max_hops']} | "
              f"{r['latency_first']} | {r['steady_interval']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
