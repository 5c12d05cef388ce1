"""Topology constructions, the kPP homomorphism (placement), routing and link loads.

Expected values are hand-counted (see the comments) or brute force, never copied from
the code under test.
"""
from __future__ import annotations

import itertools
from collections import Counter
from fractions import Fraction

import pytest

from gen.commgraph import CommGraph, Core, Flow, LayerSpec, chain, comm_graph, from_layers, resnet_like
from gen.topology import (PlacementError, bandwidth_order, build, bus, compare, mesh, one_hop_order, place,
                          prism, ring, slot_departure, slot_table, snake_order, torus)

ZOO_NETS = ["digits", "vgg8", "vgg16", "resnet18", "resnet34", "resnet20", "resnet32"]


# --- constructions: (links, min degree, max degree, diameter), counted by hand -----------
@pytest.mark.parametrize("topo, links, dmin, dmax, diam", [
    # 5PP: node i linked to i+1..i+4. 12 nodes: 4*12 - (4+3+2+1) = 38 links; the ends have
    # degree 4, the middle 8; 0 -> 11 needs ceil(11/4) = 3 hops.
    (prism(12, 5), 38, 4, 8, 3),
    (prism(5, 5), 10, 4, 4, 1),            # K5
    (prism(3, 5), 3, 2, 2, 1),             # fewer nodes than lines: K3
    (prism(10, 3), 17, 2, 4, 5),           # 2*10 - (2+1) = 17; ceil(9/2) = 5
    (prism(20, 8), 7 * 20 - 28, 7, 14, 3),  # 7n - (7+6+...+1); ceil(19/7) = 3
    # mesh 3x4: 3 rows * 3 horizontal + 4 cols * 2 vertical = 17; corner degree 2; 2 + 3 = 5
    (mesh(12), 17, 2, 4, 5),
    (mesh(16), 24, 2, 4, 6),               # 4x4: 4*3 + 4*3
    (torus(16), 32, 4, 4, 4),              # 4x4 torus: 2 links per node; 2 + 2
    (torus(9), 18, 4, 4, 2),               # 3x3 torus
    (torus(6), 9, 3, 3, 2),                # 2x3: 2 rings of 3 (6) + 3 vertical, no double links
    (ring(7), 7, 2, 2, 3),
    (ring(2), 1, 1, 1, 1),
    (bus(6), 15, 5, 5, 1),
])
def test_construction(topo, links, dmin, dmax, diam):
    assert topo.links == links
    assert topo.min_degree == dmin
    assert topo.max_degree == dmax
    assert topo.diameter == diam


def test_prism_k_lines_form_cliques():
    for k in range(3, 9):
        t = prism(30, k)
        assert t.label == f"{k}pp"
        for i in range(30 - k + 1):  # every k consecutive nodes: K_k
            assert all(t.graph.has_edge(a, b) for a, b in itertools.combinations(range(i, i + k), 2))
        assert not t.graph.has_edge(0, k)


def test_grid_shape_and_snake():
    t = mesh(21)  # ceil(sqrt(21)) = 5 columns, ceil(21/5) = 5 rows
    assert (t.params["rows"], t.params["cols"]) == (5, 5)
    s = snake_order(3, 4)
    assert s == [0, 1, 2, 3, 7, 6, 5, 4, 8, 9, 10, 11]
    g = mesh(12).graph
    assert all(g.has_edge(a, b) for a, b in zip(s, s[1:]))


def test_build_names_and_errors():
    assert build("5pp", 10).label == "5pp"
    assert build("7pp", 10).params["k"] == 7
    assert build("mesh", 16).label == "mesh 4x4"
    with pytest.raises(ValueError, match="unknown topology"):
        build("hypercube", 8)
    with pytest.raises(ValueError, match="cores"):
        build("ring", 0)


# --- routing: dimension order, shortest direction ----------------------------------------
def test_routes_by_hand():
    m = mesh(16)  # 4x4, v = 4y + x
    assert m.route(0, 15) == [0, 1, 2, 3, 7, 11, 15]          # X first, then Y
    assert m.route(13, 2) == [13, 14, 10, 6, 2]
    t = torus(16)
    assert t.route(0, 3) == [0, 3]                              # wrap is shorter
    assert t.route(0, 2) == [0, 1, 2]                           # tie -> + direction
    assert t.route(5, 13) == [5, 9, 13]
    r = ring(8)
    assert r.route(1, 6) == [1, 0, 7, 6]
    assert r.route(0, 4) == [0, 1, 2, 3, 4]                     # tie -> +
    p = prism(20, 5)
    assert p.route(0, 9) == [0, 4, 8, 9]
    assert p.route(9, 0) == [9, 5, 1, 0]
    assert bus(5).route(4, 1) == [4, 1]


def _brute_force_loads(cg: CommGraph, topo, node_of) -> dict:
    """Count, for every directed channel, the bits of the flows whose dimension-order /
    shortest-direction route crosses it - written from the routing rules directly, without
    building paths."""
    kind = topo.kind
    out = {}
    for (u, v) in list(topo.graph.edges()) + [(b, a) for a, b in topo.graph.edges()]:
        tot = 0
        for f in cg.flows:
            s, d = node_of[f.src], node_of[f.dst]
            if kind == "ring":
                n = topo.n
                fwd = (d - s) % n
                step = 1 if fwd <= n - fwd else -1
                length = fwd if step == 1 else n - fwd
                on = (v - u) % n == step % n and 0 <= ((u - s) * step) % n < length
            else:
                C, R = topo.params["cols"], topo.params["rows"]
                (ux, uy), (vx, vy) = (u % C, u // C), (v % C, v // C)
                (sx, sy), (dx, dy) = (s % C, s // C), (d % C, d // C)

                def steps(a, b, size):
                    if kind == "mesh":
                        return (1 if b > a else -1), abs(b - a)
                    fwd = (b - a) % size
                    return (1, fwd) if fwd <= size - fwd else (-1, size - fwd)
                on = False
                if uy == vy and uy == sy:      # X move on the source row
                    st, ln = steps(sx, dx, C)
                    on = (vx - ux) % C == st % C and ((ux - sx) * st) % C < ln and C > 1
                if ux == vx and ux == dx and not on:  # Y move on the destination column
                    st, ln = steps(sy, dy, R)
                    on = (vy - uy) % R == st % R and ((uy - sy) * st) % R < ln and R > 1
            if on:
                tot += f.bits_per_image
        if tot:
            out[(u, v)] = tot
    return out


def _random_graph(n, m, seed):
    import random
    rnd = random.Random(seed)
    pairs = rnd.sample([(a, b) for a in range(n) for b in range(n) if a != b], m)
    cores = [Core(i, f"l{i}") for i in range(n)]
    return CommGraph("rand", cores, [Flow(a, b, rnd.randint(1, 100), "forward", i) for i, (a, b) in enumerate(pairs)])


@pytest.mark.parametrize("kind, n, seed", [("mesh", 9, 1), ("mesh", 12, 2), ("torus", 16, 3), ("torus", 12, 4),
                                           ("ring", 7, 5), ("ring", 8, 6), ("mesh", 16, 7), ("torus", 25, 8)])
def test_routed_loads_equal_brute_force(kind, n, seed):
    cg = _random_graph(n, 2 * n, seed)
    p = place(cg, build(kind, n))
    assert p.channel_bits_per_image() == _brute_force_loads(cg, p.topo, p.node_of)


def test_loads_per_clock_and_stats_by_hand():
    # chain of 3 cores, 100 bits each, 1 image per 50 clocks -> 2 bits/clock per flow
    cg = chain(3, 100, images_per_clock=Fraction(1, 50))
    st = place(cg, ring(3)).stats()
    assert st["max_bw"] == 2.0 and st["one_hop"] and st["hops"] == {1: 2}
    # flows 0->2 and 1->2 and 0->1 on a 1x3 mesh: channel 1->2 carries both 0->2 and 1->2
    cores = [Core(i, f"l{i}") for i in range(3)]
    cg = CommGraph("t", cores, [Flow(0, 1, 10, id=0), Flow(0, 2, 20, id=1), Flow(1, 2, 30, id=2)])
    p = place(cg, mesh(3, (1, 3)))
    assert p.channel_bits_per_image() == {(0, 1): 30, (1, 2): 50}
    st = p.stats()
    assert st["max_bw"] == 50 and st["used_channels"] == 2 and st["hops"] == {1: 2, 2: 1}
    assert st["mean_bw_all"] == pytest.approx(80 / 4)


# --- the homomorphism ----------------------------------------------------------------------
def _check_homomorphism(p):
    """Every CNN edge lands on a topology link (independent of the placement code)."""
    for f in p.cg.flows:
        assert p.topo.graph.has_edge(p.node_of[f.src], p.node_of[f.dst]), p.cg.flow_name(f)


@pytest.mark.parametrize("name", ZOO_NETS)
def test_5pp_homomorphism_every_zoo_network(name):
    cg = comm_graph(name)
    p = place(cg, prism(cg.n, 5))
    _check_homomorphism(p)
    assert p.one_hop and p.stats()["hops"] == {1: len(cg.flows)}


def test_exact_search_finds_non_pipeline_order():
    # a cycle of 12 cores has bandwidth 2: the pipeline order fails (0-11 spans 11), a
    # zig-zag order works; on 3PP (span <= 2) the search must find it
    cores = [Core(i, f"l{i}") for i in range(12)]
    cg = CommGraph("cycle", cores, [Flow(i, (i + 1) % 12, 8, id=i) for i in range(12)])
    p = place(cg, prism(12, 3))
    _check_homomorphism(p)
    assert "exact" in p.method


def test_exact_search_matches_brute_force():
    import random
    rnd = random.Random(3)
    for _ in range(150):
        n = rnd.randint(2, 7)
        e = rnd.sample(list(itertools.combinations(range(n), 2)), rnd.randint(1, n * (n - 1) // 2))
        b = rnd.randint(1, 3)
        brute = any(max(abs(q.index(u) - q.index(v)) for u, v in e) <= b for q in itertools.permutations(range(n)))
        order, complete = bandwidth_order(n, e, b)
        assert complete and (order is not None) == brute
        if order:
            assert max(abs(order.index(u) - order.index(v)) for u, v in e) <= b


def test_refuses_fan_out_too_wide():
    # one layer's output feeds a layer split over 9 cores: 9 neighbours > 2*4
    cg = from_layers("fan9", [LayerSpec("a", 1, 64), LayerSpec("b", 9, 64, 128, inputs=("a",))])
    with pytest.raises(PlacementError) as e:
        place(cg, prism(cg.n, 5))
    msg = str(e.value)
    assert "a -> b[" in msg and "spans" in msg and "9 neighbours" in msg
    assert e.value.proven and e.value.edge is not None


def test_refuses_clique_of_six_by_exhaustive_search():
    cores = [Core(i, f"c{i}") for i in range(6)]
    flows = [Flow(a, b, 8, id=i) for i, (a, b) in enumerate(itertools.combinations(range(6), 2))]
    cg = CommGraph("k6", cores, flows)
    with pytest.raises(PlacementError, match=r"c\d -> c\d .*spans 5 positions > 4.*exhaustive") as e:
        one_hop_order(cg, 5)
    assert e.value.proven
    assert one_hop_order(cg, 6)[0]  # fits 6PP


def test_refuses_skip_spanning_too_many_cores():
    # residual blocks whose two convs take 3 cores each: the skip spans 6 cores, and the
    # chain of such blocks is too dense for any order (ball bound)
    cg = resnet_like(6, (3, 3))
    with pytest.raises(PlacementError, match="skip") as e:
        place(cg, prism(cg.n, 5))
    assert "b" in str(e.value) and e.value.proven
    # with 2 + 2 cores per block the skip spans exactly 4: maps one hop
    _check_homomorphism(place(resnet_like(6, (2, 2)), prism(25, 5)))


def test_k_pp_sweep_resnet_blocks():
    cg = resnet_like(4, (2, 2))  # each skip spans 4 positions in pipeline order
    assert place(cg, prism(cg.n, 5)).one_hop
    assert place(cg, prism(cg.n, 8)).one_hop
    with pytest.raises(PlacementError):
        place(cg, prism(cg.n, 3))


# --- communication graph -------------------------------------------------------------------
def test_from_layers_flows_by_hand():
    cg = resnet_like(1, (2, 2), bits=100, psum_bits=400)
    # cores: stem=0, conv1=1,2, conv2=3,4
    got = {(f.src, f.dst): (f.bits_per_image, f.kind) for f in cg.flows}
    assert got == {(0, 1): (100, "forward"), (0, 2): (100, "forward"), (1, 2): (400, "reduce"),
                   (2, 3): (100, "forward"), (2, 4): (100, "forward"), (3, 4): (400, "reduce"),
                   (0, 4): (100, "skip")}


def test_comm_graph_from_network_by_hand():
    from gen.config import CrossbarConfig
    from gen.network import Add, Conv2d, Network
    net = Network("tiny", (4, 6, 6), [
        Conv2d(name="c1", cin=4, cout=8, k=3, pad=1),
        Conv2d(name="c2", cin=8, cout=8, k=3, pad=1),
        Add(name="add", inputs=("c2", "c1")),
        Conv2d(name="c3", cin=8, cout=8, k=1),
    ])
    cfg = CrossbarConfig(rows=32, cols=32)  # 7 outputs per crossbar
    # crossbars: c1 36 rows -> 2 x ceil(8/7)=2 -> 4; c2 72 rows -> 3 x 2 = 6; c3 8 rows -> 1 x 2 = 2
    cg = comm_graph(net, cfg, crossbars_per_core=3, images_per_clock=Fraction(1, 36))
    assert cg.meta["crossbars"] == {"c1": 4, "c2": 6, "c3": 2}
    assert [c.name for c in cg.cores] == ["c1[0]", "c1[1]", "c2[0]", "c2[1]", "c3"]
    act = 8 * 6 * 6 * 8  # 8 channels, 6x6, 8-bit
    psum = 8 * 6 * 6 * 32
    got = {(f.src, f.dst): (f.bits_per_image, f.kind) for f in cg.flows}
    assert got == {(0, 1): (psum, "reduce"), (1, 2): (act, "forward"), (1, 3): (act + act, "forward"),
                   (2, 3): (psum, "reduce"), (3, 4): (act, "forward")}
    assert cg.bits_per_clock(cg.flows[0]) == psum / 36


def test_zoo_compare_runs_and_5pp_not_worse():
    for name in ("resnet20", "vgg8"):
        rows = {r["kind"]: r for r in compare(comm_graph(name))}
        assert rows["kpp"]["one_hop"] and rows["bus"]["one_hop"]
        assert rows["kpp"]["max_bw"] == rows["bus"]["max_bw"]
        assert all(rows["kpp"]["max_bw"] <= rows[k]["max_bw"] for k in ("mesh", "torus", "ring"))


# --- time-division slots of the routed chip fabric (hw.interconnect.SlottedFabric) ------------
def _beats(p, f, slot):
    """Where a beat of flow ``f`` leaving its injection queue on clock ``slot`` is, clock by
    clock, walked router by router with the routers' own tables (``Topology.direction``):
    the source's injection, each router output it takes, the destination's ejection."""
    topo, v, dst = p.topo, p.node_of[f.src], p.node_of[f.dst]
    out, t = [(("inject", v), slot)], slot + 1
    while v != dst:
        w = topo.neighbour(v, topo.direction(v, dst))
        out.append(((v, w), t))
        v, t = w, t + 1
    return out + [(("eject", v), t)]


@pytest.mark.parametrize("kind, n, seed", [("mesh", 9, 1), ("mesh", 12, 2), ("torus", 16, 3), ("torus", 12, 4),
                                           ("mesh", 16, 7), ("torus", 25, 8)])
def test_slot_tables_never_put_two_beats_on_one_router_port(kind, n, seed):
    cg = _random_graph(n, 2 * n, seed)
    p = place(cg, build(kind, n))
    tab = slot_table(p)
    held, uses = {}, Counter()
    for f in cg.flows:
        for res, t in _beats(p, f, tab.slots[f.id]):
            assert (res, t % tab.period) not in held, (res, f.id, held.get((res, t % tab.period)))
            held[(res, t % tab.period)] = f.id
            uses[res] += 1
    assert max(uses.values()) <= tab.period


def test_slot_tables_by_hand():
    # a chain on a snake shares nothing: every clock is every flow's slot
    assert slot_table(place(chain(6), build("mesh", 6))).period == 1
    # a residual block on a 2x2 mesh, snake order: core 0 on (0,0), 1 on (1,0), 2 on (1,1).
    # Core 0 injects two flows, so the period is at least 2: 0 -> 1 in slot 0, the skip
    # 0 -> 2 in slot 1 (it takes the channel 0 -> 1 on clock 2, then 1 -> 2 on clock 3).
    # The chain flow 1 -> 2 takes that channel a clock after its slot, so slot 0 would meet
    # the skip there (1 = 3 mod 2): slot 1.
    cg = CommGraph("blk", [Core(i, f"l{i}") for i in range(3)],
                   [Flow(0, 1, 8, "forward", 0), Flow(0, 2, 8, "skip", 1), Flow(1, 2, 8, "forward", 2)])
    tab = slot_table(place(cg, build("mesh", 3)))
    assert (tab.period, tab.slots) == (2, (0, 1, 1))


def test_slot_departure_by_hand():
    # slots t % 4 == 1: a 3-word burst visible from clock 10 leaves on 13, 17, 21
    assert slot_departure(10, 3, 4, 1) == 21
    assert slot_departure(13, 3, 4, 1) == 21
    assert slot_departure(14, 3, 4, 1) == 25
    assert slot_departure(7, 2, 1, 0) == 8      # period 1: a word a clock
