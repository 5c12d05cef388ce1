"""Interconnect RTL: link FIFO and arbiter (Amaranth simulator), generated fabrics driven by
cocotb on Verilator (every beat exactly once, in order, at the right core; link counts
and zero-load latency vs the model), and the formal check of the link FIFO."""
from __future__ import annotations

import importlib.util
import random
from pathlib import Path

import pytest

from gen.commgraph import CommGraph, Core, Flow, comm_graph, resnet_like
from gen.topology import fabric_kind, mesh, place, prism, ring, torus
from hw.interconnect import StreamArbiter, StreamFIFO, build_fabric

ROOT = Path(__file__).resolve().parents[1]


# --- link FIFO and arbiter in the Amaranth simulator ----------------------------------------
@pytest.mark.parametrize("depth", [1, 2, 3])
def test_fifo_random_traffic_in_order(depth, amaranth_sim):
    dut = StreamFIFO(8, depth)
    rnd = random.Random(depth)
    sent, got = [], []

    async def bench(ctx):
        nxt = 0
        for _ in range(400):
            v = rnd.random() < 0.6
            r = rnd.random() < 0.5
            ctx.set(dut.i.valid, v)
            ctx.set(dut.i.payload, nxt & 0xFF)
            ctx.set(dut.o.ready, r)
            assert ctx.get(dut.level) <= depth
            if v and ctx.get(dut.i.ready):
                sent.append(nxt & 0xFF)
                nxt += 1
            if r and ctx.get(dut.o.valid):
                got.append(ctx.get(dut.o.payload))
            await ctx.tick()
    amaranth_sim(dut, bench, timeout_clocks=1000)
    assert len(sent) > 100
    assert got == sent[:len(got)] and len(sent) - len(got) <= depth


def test_fifo_latency_one_and_full_throughput(amaranth_sim):
    dut = StreamFIFO(8, 2)
    trace = []

    async def bench(ctx):
        ctx.set(dut.o.ready, 1)
        for k in range(6):
            ctx.set(dut.i.valid, 1)
            ctx.set(dut.i.payload, k)
            trace.append((ctx.get(dut.i.ready), ctx.get(dut.o.valid), ctx.get(dut.o.payload)))
            await ctx.tick()
    amaranth_sim(dut, bench, timeout_clocks=1000)
    # beat k written on edge k is offered from cycle k+1: one per clock, latency 1
    assert [t[0] for t in trace] == [1] * 6
    assert [(t[1], t[2]) for t in trace[1:]] == [(1, k) for k in range(5)]


def test_arbiter_round_robin_and_hold(amaranth_sim):
    dut = StreamArbiter(4, 3)
    grants = []

    async def bench(ctx):
        for k in range(3):
            ctx.set(dut.i[k].valid, 1)
            ctx.set(dut.i[k].payload, k)
        ctx.set(dut.o.ready, 1)
        for _ in range(6):
            grants.append(ctx.get(dut.o.payload))
            await ctx.tick()
        # stall: the offered beat must stay while ready is low, even if priorities change
        ctx.set(dut.o.ready, 0)
        held = ctx.get(dut.o.payload)
        for _ in range(3):
            await ctx.tick()
            assert ctx.get(dut.o.valid) and ctx.get(dut.o.payload) == held
    amaranth_sim(dut, bench, timeout_clocks=1000)
    # priority starts after input 0, then moves past each winner: 1, 2, 0, 1, 2, 0
    assert grants == [1, 2, 0, 1, 2, 0]


def test_fabric_kind_needs_one_hop_off_the_grid():
    cores = [Core(i, f"l{i}") for i in range(4)]
    cg = CommGraph("t", cores, [Flow(0, 3, 8, id=0), Flow(0, 1, 8, id=1), Flow(1, 2, 8, id=2), Flow(2, 3, 8, id=3)])
    p = place(cg, mesh(4, (2, 2)))  # snake: 0 (0,0) 1 (1,0) 2 (1,1) 3 (0,1): every flow one hop, still routed
    assert fabric_kind(p) == "routed"
    assert fabric_kind(place(cg, prism(4, 5))) == "point-to-point"
    cg2 = CommGraph("t2", cores, [Flow(0, 2, 8, id=0), Flow(1, 3, 8, id=1)])
    with pytest.raises(ValueError, match="not one-hop .*0 -> 2 takes 2 hops"):
        fabric_kind(place(cg2, ring(4)))
    with pytest.raises(ValueError, match="not one-hop"):
        build_fabric(place(cg2, ring(4)))


# --- generated fabrics on Verilator -----------------------------------------------------------
def _check(report, placement):
    assert report["passed"], report["errors"] or report["log"]
    assert report["delivered"] == report["sent"] and not report["errors"]
    # per-link load: exactly the model's (deterministic routing), in beats
    assert report["link_beats"] == report["model_link_beats"]
    # zero-load latency: exactly the model's, per flow
    assert report["probe_latency"] == report["model_latency"]
    # under load no beat is faster than the zero-load model
    for fid, (lo, _, _) in report["latency"].items():
        assert lo >= report["model_latency"][fid]


def _run(placement, **kw):
    from flow.interconnect_check import run_interconnect_check
    return run_interconnect_check(placement, **kw)


def test_p2p_fabric_small_resnet_on_5pp():
    cg = resnet_like(2, (1, 2), bits=64, psum_bits=256)  # 7 cores, skips span 3
    p = place(cg, prism(cg.n, 5))
    rep = _run(p, total_beats=150, gap_prob=0.3, ready_prob=0.5, seed=1)
    _check(rep, p)
    assert rep["fabric"] == "PointToPointFabric" and set(rep["model_latency"].values()) == {1}


@pytest.mark.parametrize("kind", ["mesh", "torus"])
def test_routed_fabric_small_mesh(kind):
    rnd = random.Random(5)
    pairs = rnd.sample([(a, b) for a in range(6) for b in range(6) if a != b], 10)
    cg = CommGraph("rand6", [Core(i, f"c{i}") for i in range(6)],
                   [Flow(a, b, rnd.randint(8, 64), id=i) for i, (a, b) in enumerate(pairs)])
    # 2x3: on the torus the 3-long rows wrap, the 2-long columns do not
    p = place(cg, (mesh if kind == "mesh" else torus)(6, (2, 3)))
    rep = _run(p, total_beats=150, gap_prob=0.3, ready_prob=0.5, seed=2)
    _check(rep, p)
    assert any(v > 2 for v in rep["model_latency"].values())  # some flows take several hops


@pytest.mark.slow
def test_resnet20_on_5pp_rtl():
    cg = comm_graph("resnet20")
    p = place(cg, prism(cg.n, 5))
    rep = _run(p, total_beats=1500, gap_prob=0.2, ready_prob=0.6, seed=3)
    _check(rep, p)


@pytest.mark.slow
def test_resnet20_on_4x4_mesh_rtl():
    cg = comm_graph("resnet20").head(16)  # a 4x4 mesh holds the first 16 of its cores
    p = place(cg, mesh(16))
    rep = _run(p, total_beats=1500, gap_prob=0.2, ready_prob=0.6, seed=4)
    _check(rep, p)
    assert max(rep["model_latency"].values()) >= 3


@pytest.mark.slow
def test_resnet20_on_4x4_torus_rtl():
    cg = comm_graph("resnet20").head(16)
    p = place(cg, torus(16))
    rep = _run(p, total_beats=800, gap_prob=0.2, ready_prob=0.6, seed=5)
    _check(rep, p)


# --- formal: the link FIFO --------------------------------------------------------------------
def _formal():
    spec = importlib.util.spec_from_file_location("link_fifo", ROOT / "formal" / "link_fifo.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("bug, broken", [("drop", False), ("dup", False), (None, True)])
def test_formal_fails_on_broken_fifo_or_property(bug, broken, tmp_path):
    ok, log = _formal().run(width=3, depth=2, bug=bug, broken=broken, bmc_depth=12, workdir=tmp_path)
    assert not ok and "failed assertion" in log, log[-2000:]


def test_formal_link_fifo_passes_short(tmp_path):
    ok, log = _formal().run(width=3, depth=2, bmc_depth=10, workdir=tmp_path)
    assert ok, log[-2000:]


@pytest.mark.slow
@pytest.mark.parametrize("depth", [1, 2])
def test_formal_link_fifo_passes_bmc24(depth, tmp_path):
    ok, log = _formal().run(width=3, depth=depth, bmc_depth=24, workdir=tmp_path)
    assert ok, log[-2000:]


# --- lint (DESIGN.md §6): the verilator_lint fixture of tests/conftest.py ---------------------
@pytest.mark.parametrize("kind", ["5pp", "mesh", "torus"])
def test_fabric_lint(kind, verilator_lint):
    from flow.emit import to_verilog
    cg = resnet_like(2, (1, 2))
    topo = {"5pp": prism(cg.n, 5), "mesh": mesh(cg.n), "torus": torus(9)}[kind]
    # CASEINCOMPLETE: the flow-id and coordinate decoders name only the graph's flows and nodes
    verilator_lint.clean(to_verilog(build_fabric(place(cg, topo)), "fabric"), "fabric", allow=("CASEINCOMPLETE",))


@pytest.mark.parametrize("kind", ["mesh", "torus"])
def test_slotted_fabric_lint(kind, verilator_lint):
    """The chip's mesh and torus (hw.interconnect.SlottedFabric): injection queues and slot
    gates around the routed fabric, on a residual graph that needs more than one slot."""
    from flow.emit import to_verilog
    from gen.topology import slot_table
    from hw.interconnect import SlottedFabric
    cg = resnet_like(2, (1, 2))
    p = place(cg, {"mesh": mesh(cg.n), "torus": torus(9)}[kind])
    tab = slot_table(p)
    assert tab.period > 1
    fab = SlottedFabric(p, 8, tab.period, tab.slots, [2] * len(cg.flows))
    verilator_lint.clean(to_verilog(fab, "fabric"), "fabric", allow=("CASEINCOMPLETE",))
