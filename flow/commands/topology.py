"""``pimgen topology``: place a CNN's communication graph on 5PP and reference topologies."""
from __future__ import annotations

HELP = "place a network's core-to-core flows on 5PP / mesh / torus / ring / bus and compare channel bandwidth"
DESCRIPTION = (
    "Build the communication graph of a pipelined network (cores = crossbar groups, flows = "
    "activations, residual skips and partial-sum reductions), place it on each topology, route it "
    "and report the bandwidth per channel (bits/clock at the pipelined throughput). 5PP is "
    "pimgen's reconstruction of Dazzi et al. 2019 (k parallel lines, core i linked to i+1..i+k-1).")

ALL = ["5pp", "mesh", "torus", "ring", "bus"]


def add_arguments(p):
    from flow.commands.map import add_chip_args
    from flow.network_input import add_network_args
    add_network_args(p)
    p.add_argument("--topology", default="all", metavar="T",
                   help="5pp|mesh|torus|ring|bus|all, or a comma list; 3pp..8pp for other lane counts "
                        "(kpp = 3pp..8pp) [all]")
    p.add_argument("--core-crossbars", type=int, default=None, metavar="N",
                   help="crossbars per core [auto: half the largest layer, so it takes two cores]")
    p.add_argument("--psum-bits", type=int, default=32, help="partial-sum width on reduction flows [32]")
    p.add_argument("--mapping", choices=["conventional", "novel"], default="conventional",
                   help="mapping whose crossbar counts size the cores (needs gen.mapping) [conventional]")
    p.add_argument("--links", action="store_true",
                   help="also list every used channel (directed link) with its traffic and flows")
    p.add_argument("--json", action="store_true", help="machine-readable output (always includes the channels)")
    p.add_argument("--plot", metavar="FILE.png", help="draw each placement with link load as colour")
    p.add_argument("--verilog", metavar="FILE.v",
                   help="write the interconnect RTL of the (single) placed topology: point-to-point links "
                        "for 5PP, routers for mesh/torus")
    p.add_argument("--fifo-depth", type=int, default=2, help="link / router input FIFO depth for --verilog [2]")
    add_chip_args(p)


def parse_kinds(spec: str) -> list[str]:
    out: list[str] = []
    for t in spec.lower().split(","):
        t = t.strip()
        if t == "all":
            out += ALL
        elif t == "kpp":
            out += [f"{k}pp" for k in range(3, 9)]
        elif t in ("mesh", "torus", "ring", "bus") or (t.endswith("pp") and t[:-2].isdigit()
                                                       and 2 <= int(t[:-2]) <= 64):
            out.append(t)
        else:
            raise ValueError(f"unknown topology {t!r}; choose from 5pp, mesh, torus, ring, bus, all, kpp, 3pp..8pp")
    return list(dict.fromkeys(out))


def evaluate(network, kinds: list[str], cfg=None, *, core_crossbars=None, psum_bits=32,
             mapping="conventional"):
    """Rows of the comparison (one dict per topology) and the placements, for the CLI and docs.
    ``network``: a zoo name or a :class:`gen.network.Network`."""
    from gen.commgraph import build_comm_graph
    from gen.topology import PlacementError, build, place
    cg = build_comm_graph(network, cfg, crossbars_per_core=core_crossbars, psum_bits=psum_bits, mapping=mapping)
    rows, placements = [], []
    for kind in kinds:
        topo = build(kind, cg.n)
        try:
            p = place(cg, topo)
        except PlacementError as e:
            if len(kinds) == 1:
                raise
            rows.append({"topology": topo.label, "kind": topo.kind, "cores": cg.n, "links": topo.links,
                         "one_hop": False, "error": str(e)})
            continue
        rows.append(p.stats())
        placements.append(p)
    return cg, rows, placements


def format_table(cg, rows) -> str:
    head = (f"{cg.name}: {cg.n} cores, {len(cg.flows)} flows, {cg.meta.get('crossbars_per_core')} crossbars/core, "
            f"1 image / {cg.meta.get('interval_clocks', 0):.0f} clocks; bandwidth in bits/clock per channel")
    cols = f"{'topology':<11} {'cores':>5} {'links':>5} {'used ch':>7} {'max bw':>9} {'mean bw':>9} " \
           f"{'mean hops':>9}  {'one-hop':<7} hops (count of flows)"
    lines = [head, cols, "-" * len(cols)]
    for r in rows:
        if "error" in r:
            lines.append(f"{r['topology']:<11} {r['cores']:>5} {r['links']:>5}  does not map: {r['error']}")
            continue
        hops = " ".join(f"{h}:{c}" for h, c in r["hops"].items())
        lines.append(f"{r['topology']:<11} {r['cores']:>5} {r['links']:>5} {r['used_channels']:>7} "
                     f"{r['max_bw']:>9.3f} {r['mean_bw_used']:>9.3f} {r['mean_hops_traffic']:>9.2f}  "
                     f"{'yes' if r['one_hop'] else 'no':<7} {hops}")
    ok = [r for r in rows if "error" not in r]
    pp = [r for r in ok if r["kind"] == "kpp" and r["topology"] == "5pp"]
    others = [r for r in ok if r["kind"] in ("mesh", "torus", "ring")]
    if pp and others:
        best = min(r["max_bw"] for r in others)
        verdict = ("lower than" if pp[0]["max_bw"] < best else "equal to" if pp[0]["max_bw"] == best
                   else "HIGHER than")
        bus = [r["max_bw"] for r in ok if r["kind"] == "bus"]
        lines.append(f"5pp max bandwidth per channel {pp[0]['max_bw']:.3f} is {verdict} the best of mesh/torus/ring "
                     f"({best:.3f})" + (f"; the fully connected bus bound is {bus[0]:.3f}" if bus else ""))
    return "\n".join(lines)


def channel_rows(p) -> list[dict]:
    """Per used channel (directed physical link) of a placement: traffic and the flows crossing it."""
    cg, flows = p.cg, p.channel_flows()
    bpi = p.channel_bits_per_image()
    out = []
    for (u, v), ids in sorted(flows.items()):
        out.append({"from_node": u, "to_node": v, "bits_per_image": bpi[(u, v)],
                    "bits_per_clock": float(bpi[(u, v)] * cg.images_per_clock), "flows": ids})
    return out


def format_links(p) -> str:
    cg = p.cg
    core_at = {n: c for c, n in enumerate(p.node_of)}
    name = lambda n: cg.cores[core_at[n]].name if n in core_at else f"node{n}"  # noqa: E731
    lines = [f"channels of {cg.name} on {p.topo.label} ({p.method}):",
             f"{'from':<24} {'to':<24} {'bits/image':>11} {'bits/clock':>10}  flows"]
    for r in sorted(channel_rows(p), key=lambda r: -r["bits_per_image"]):
        lines.append(f"{name(r['from_node']):<24} {name(r['to_node']):<24} {r['bits_per_image']:>11} "
                     f"{r['bits_per_clock']:>10.3f}  {','.join(map(str, r['flows']))}")
    return "\n".join(lines)


def plot(placements, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import cm, colors
    n = len(placements)
    if not n:
        raise ValueError("nothing to plot: no topology could be placed")
    fig, axes = plt.subplots(n, 1, figsize=(12, 3.2 * n), squeeze=False)
    vmax = max((max(p.channel_bits_per_clock().values(), default=0) for p in placements), default=1) or 1
    norm, cmap = colors.Normalize(0, vmax), plt.get_cmap("viridis")
    for ax, p in zip(axes[:, 0], placements):
        t, pos = p.topo, p.topo.pos
        load = p.channel_bits_per_clock()
        core_at = {v: c for c, v in enumerate(p.node_of)}
        for u, v in t.graph.edges():
            (x0, y0), (x1, y1) = pos[u], pos[v]
            w = load.get((u, v), 0) + load.get((v, u), 0)
            if w:
                ax.plot([x0, x1], [y0, y1], color=cmap(norm(max(load.get((u, v), 0), load.get((v, u), 0)))),
                        lw=2.5, zorder=2)
            elif t.kind != "bus":
                ax.plot([x0, x1], [y0, y1], color="0.85", lw=0.6, zorder=1)
        for v in range(t.n):
            x, y = pos[v]
            used = v in core_at
            ax.scatter([x], [y], s=40 if used else 12, color="tab:red" if used else "0.7", zorder=3)
            if used and p.cg.n <= 64:
                ax.annotate(p.cg.cores[core_at[v]].name, (x, y), fontsize=5, xytext=(2, 3), textcoords="offset points")
        st = p.stats()
        ax.set_title(f"{p.cg.name} on {t.label}: max {st['max_bw']:.2f} bits/clock per channel, "
                     f"{'one hop' if st['one_hop'] else 'multi-hop'} ({p.method})", fontsize=9)
        ax.set_axis_off()
    fig.colorbar(cm.ScalarMappable(norm=norm, cmap=cmap), ax=axes[:, 0].tolist(), label="bits/clock (busier direction)")
    fig.savefig(path, dpi=130)
    plt.close(fig)


def run(args) -> int:
    from flow.commands._common import print_json
    from flow.commands.map import chip_from_args
    from flow.network_input import network_from_args
    cfg = chip_from_args(args)
    kinds = parse_kinds(args.topology)
    if not 1 <= args.psum_bits <= 64:
        raise ValueError(f"--psum-bits {args.psum_bits} is not allowed: it must be an integer in [1, 64]")
    cg, rows, placements = evaluate(network_from_args(args), kinds, cfg, core_crossbars=args.core_crossbars,
                                    psum_bits=args.psum_bits, mapping=args.mapping)
    if args.plot:
        plot(placements, args.plot)
    if args.verilog:
        if len(placements) != 1 or placements[0].topo.kind == "ring":
            raise ValueError("--verilog needs exactly one placed topology among 5pp (kpp), mesh, torus, bus")
        if args.fifo_depth < 1:
            raise ValueError(f"--fifo-depth={args.fifo_depth} must be >= 1")
        from pathlib import Path

        from flow.emit import to_verilog
        from hw.interconnect import build_fabric
        fab = build_fabric(placements[0], fifo_depth=args.fifo_depth)
        Path(args.verilog).write_text(to_verilog(fab, "fabric"))
    if args.json:
        by_label = {p.topo.label: p for p in placements}
        for r in rows:
            if r["topology"] in by_label:
                p = by_label[r["topology"]]
                r["node_of_core"] = p.node_of
                r["channel_load"] = channel_rows(p)
        print_json({"network": cg.name, "graph": cg.summary() | {"meta": cg.meta}, "topologies": rows,
                    "flows": [{"id": f.id, "src": cg.cores[f.src].name, "dst": cg.cores[f.dst].name, "kind": f.kind,
                               "bits_per_image": f.bits_per_image, "bits_per_clock": cg.bits_per_clock(f)}
                              for f in cg.flows]})
    else:
        print(format_table(cg, rows))
        if args.links:
            for p in placements:
                print()
                print(format_links(p))
        if args.plot:
            print(f"plot: {args.plot}")
        if args.verilog:
            print(f"verilog: {args.verilog} (module fabric, {type(fab).__name__}, {len(fab.links)} links)")
    return 0
