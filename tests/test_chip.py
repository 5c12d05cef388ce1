"""The whole chip (hw.chip.Chip) under cocotb: real and random images streamed back to back,
every logit and every stage's words bit-exact vs sim.golden.run_plan, every image's
latency and interval == gen.perf.chip_timing; plus the chip plan in gen.

Fast set: a tiny conv -> pool -> conv -> linear chip, both mappings (novel on 5PP, conventional
on a mesh; one Verilator build each; all its checks run on that build), and a tiny residual
chip (identity and projection shortcuts, a skip that arrives after the main path, global
average pool), both mappings on 5PP and on a mesh and a torus (flows in time slots, also
duplicated), the tiny chip with duplicated layers, both mappings, and
duplication into regions of unequal size, both mappings, and novel replicas of unequal
width (widened to their neighbours', with non-ideal cells).
Slow set: the trained digits chip, both mappings on both fabrics, with and without
back-pressure, duplicated (balanced, into regions of unequal size, into novel columns of
unequal width), and a reduced CIFAR ResNet-20 (both mappings on 5PP, novel on a mesh).
"""
import dataclasses

import numpy as np
import pytest

from gen.chipplan import ChipError, lower_for_chip, plan_chip
from gen.config import ChipConfig
from gen.network import Add, AvgPool, Concat, Conv2d, GlobalAvgPool, Linear, MaxPool, Network, zoo
from gen.params import NetworkParams
from gen.quantize import random_weights
from sim.golden import run_network, run_plan
from flow.chip_check import ChipDesign, design_from_network, golden, run_chip_check

SMALL = ChipConfig.preset("small")


def tiny() -> Network:
    return Network("tiny", (2, 6, 6), [
        Conv2d(name="c1", cin=2, cout=8, k=3, pad=1),
        MaxPool(name="p1", k=2),
        Conv2d(name="c2", cin=8, cout=6, k=3, pad=1),
        Linear(name="fc", in_features=6 * 3 * 3, out_features=5),
    ])


def tiny_params(seed=3) -> NetworkParams:
    """Random weights, with input zero points on both padded convolutions (their padding
    pixels then carry z_in, DESIGN.md §3) and an output zero point on the first (its ReLU
    then clamps at z_out)."""
    p = random_weights(tiny(), seed)
    z_in = {"c1": 3, "c2": 9}
    out = {n: dataclasses.replace(p[n], z_in=z_in[n]) if n in z_in else p[n] for n in p}
    out["c1"] = dataclasses.replace(out["c1"], requant=dataclasses.replace(out["c1"].requant, z_out=5))
    return NetworkParams(out)


def tiny_design(mapping: str, chip=SMALL, seed=3, topology="5pp") -> ChipDesign:
    return ChipDesign(tiny(), tiny_params(seed), chip, mapping, topology=topology)


def pools() -> Network:
    """An overlapping, padded max-pool (ResNet's stem pool, 3x3 stride 2 pad 1) and a 2x2 average pool."""
    return Network("pools", (2, 8, 8), [
        Conv2d(name="c1", cin=2, cout=4, k=3, pad=1), MaxPool(name="p1", k=3, stride=2, pad=1),
        Conv2d(name="c2", cin=4, cout=6, k=3, pad=1), AvgPool(name="p2", k=2),
        Linear(name="fc", in_features=6 * 2 * 2, out_features=5)])


def dropping_pools() -> Network:
    """Max-pools whose last pixels fall in no window: 2x2 over 7x7 drops the last row and
    column, 2x2 over 3x3 keeps only the top-left window (its output waits for pixel (2, 2))."""
    return Network("droppools", (2, 7, 7), [
        Conv2d(name="c1", cin=2, cout=4, k=3, pad=1), MaxPool(name="p1", k=2),
        Conv2d(name="c2", cin=4, cout=6, k=3, pad=1), MaxPool(name="p2", k=2),
        Linear(name="fc", in_features=6, out_features=5)])


def tiny_residual() -> Network:
    """Two residual blocks: an identity shortcut, then a stride-2 block whose 3x3 projection
    shortcut is slower than its 1x1 main path (so the join waits on its skip FIFO), then
    a global average pool and the classifier."""
    return Network("tinyres", (2, 8, 8), [
        Conv2d(name="c0", cin=2, cout=8, k=3, pad=1),
        Conv2d(name="b1.c1", cin=8, cout=8, k=3, pad=1),
        Conv2d(name="b1.c2", cin=8, cout=8, k=3, pad=1),
        Add(name="b1.add", inputs=("b1.c2", "c0")),
        Conv2d(name="b2.c1", cin=8, cout=16, k=1, stride=2),
        Conv2d(name="b2.c2", cin=16, cout=16, k=3, pad=1),
        Conv2d(name="b2.ds", inputs=("b1.add",), cin=8, cout=16, k=3, stride=2, pad=1),
        Add(name="b2.add", inputs=("b2.c2", "b2.ds")),
        GlobalAvgPool(name="gap"),
        Linear(name="fc", in_features=16, out_features=5),
    ])


# --- gen: the chip plan ----------------------------------------------------------------------
def test_lowering_keeps_the_network():
    """A linear layer on a map becomes the equivalent convolution: same logits."""
    net = tiny()
    p = random_weights(net, 1)
    low, lp = lower_for_chip(net, p)
    assert isinstance(low.layers[-1], Conv2d) and low.layers[-1].k == 3
    x = np.random.default_rng(0).integers(0, 256, net.input_shape)
    assert np.array_equal(run_network(net, p, x), run_network(low, lp, x))
    cp = plan_chip(net, p, SMALL, "novel")
    assert np.array_equal(run_plan(cp.plan, cp.params, x), run_network(net, p, x))   # lossless ADC


@pytest.mark.parametrize("mapping", ["novel", "conventional"])
def test_padding_with_the_input_zero_point(mapping):
    """The crossbar walk pads with z_in as the integer reference (gen.intops) does; with 0
    padding the two would differ at the border."""
    net, p = tiny(), tiny_params()
    x = np.random.default_rng(2).integers(0, 256, net.input_shape)
    cp = plan_chip(net, p, SMALL, mapping)
    got = run_plan(cp.plan, cp.params, x, return_all=True)
    assert np.array_equal(got["fc"], run_network(net, p, x))
    zero = NetworkParams({n: dataclasses.replace(p[n], z_in=0) if n in ("c1", "c2") else p[n] for n in p})
    assert not np.array_equal(run_plan(cp.plan, plan_chip(net, zero, SMALL, mapping).params, x, return_all=True)["c1"],
                              got["c1"])


def test_chip_plan_stages_and_programming():
    cp = tiny_design("novel").cp
    assert [s.name for s in cp.stages] == ["c1", "c2", "fc"]
    assert [(ln.producer, ln.pool) for ln in cp.links] == [(0, 2), (1, None)]
    assert cp.stages[1].mapping == "novel" and cp.stages[-1].raw
    beats = cp.programming()
    # every weight row of every placed block, once
    assert len(beats) == sum(p.rows[1] - p.rows[0] for p in cp.plan.placements)
    assert {b[0] for b in beats} == set(range(cp.n_xbars))


@pytest.mark.parametrize("mapping", ["novel", "conventional"])
def test_chip_verilog_has_one_module_per_pe_kind(mapping):
    """Programmed PEs depend on neither their weights nor their place: one module body per
    kind (crossbar count, input width, the rows each crossbar reads), one instance per PE."""
    import re
    d = tiny_design(mapping)
    v = d.verilog
    pes = [(lp.name, key, tuple(p.rows for p in pls)) for lp in d.cp.plan.layers for key, pls in lp.per_pe().items()]
    bodies = re.findall(r"^module (pimgen_pe_[0-9a-f]{10})\(", v, re.M)
    instances = re.findall(r"^  (pimgen_pe_[0-9a-f]{10}) ", v, re.M)
    assert len(bodies) == len(set(bodies))
    assert len(instances) == len(pes) and set(instances) == set(bodies)
    # PEs of one layer that read the same rows share a body (novel: the K x K PEs of a layer)
    assert len({rows for _, _, rows in pes}) <= len(bodies) <= len({(name, rows) for name, _, rows in pes})
    if mapping == "novel":
        assert len(bodies) < len(pes)


@pytest.mark.parametrize("mapping", ["novel", "conventional"])
def test_chip_verilog_has_one_datapath_per_layer_shape(mapping):
    """An engine's datapath depends on neither its layer's name, weights, requantization or
    input zero point nor where its tiles sit: the residual block's two same-shaped convolutions
    (other requantization, here another zero point too) share one module body, and layers of
    other shapes get bodies of their own."""
    import re
    net = tiny_residual()
    p = random_weights(net, 0)
    p = NetworkParams({n: dataclasses.replace(p[n], z_in=3) if n == "b1.c2" else p[n] for n in p})
    d = ChipDesign(net, p, SMALL, mapping)
    shapes = {lp.name: lp.shape_only() for lp in d.cp.plan.layers if lp.placements}
    assert shapes["b1.c1"] == shapes["b1.c2"] and shapes["b1.c1"] != shapes["c0"]
    assert d.cp.params["b1.c1"].requant != d.cp.params["b1.c2"].requant
    v = d.verilog
    bodies = re.findall(r"^module (pimgen_engine_[0-9a-f]{10})\(", v, re.M)
    instances = re.findall(r"^  (pimgen_engine_[0-9a-f]{10}) ", v, re.M)
    # seven weight layers, of which only the block's two 8 -> 8 3x3 convolutions are alike
    assert len(d.cp.stages) == 7 and len(bodies) == len(set(bodies)) == 6
    assert len(instances) == len(d.cp.stages) and set(instances) == set(bodies)
    # every output channel's post arithmetic is an instance (8+8+8 + 16+16+16 + 5), of one
    # body per layer at most
    posts = re.findall(r"^module (pimgen_post_[0-9a-f]{10})\(", v, re.M)
    assert len(re.findall(r"^  pimgen_post_", v, re.M)) == 77 and 1 <= len(posts) <= 7
    # ... inside each layer's tail (hw.layer.EngineTail: its constants), one body and one
    # instance per layer, so the top level holds no channel's wiring; every output FIFO is
    # an instance of one module
    tails = re.findall(r"^module (pimgen_tail_[0-9a-f]{10})\(", v, re.M)
    assert len(set(tails)) == len(tails) == 7 and sorted(re.findall(r"^  (pimgen_tail_\w+) ", v, re.M)) == sorted(tails)
    top = [body for body in re.split(r"\n(?=module )", v) if re.match(r"module \\?chip[.(]", body)]
    assert len(top) > len(d.cp.stages) and not any("pimgen_post_" in body for body in top)
    assert len(re.findall(r"^module pimgen_stream_fifo_", v, re.M)) == 1
    # the joins' channels: one add-lane body per join parameters (the two joins' are equal
    # here), one instance per channel (8 + 16)
    lanes = re.findall(r"^module (pimgen_add_lane_[0-9a-f]{10})\(", v, re.M)
    assert d.cp.params["b1.add"] == d.cp.params["b2.add"]
    assert len(lanes) == 1 and len(re.findall(r"^  pimgen_add_lane_", v, re.M)) == 24


def alike_tiles() -> Network:
    """A convolution over two alike tiles (SMALL: 15 outputs per crossbar, 4 crossbars per
    PE, one PE per kernel position): c2's 120 outputs are 8 column blocks, 4 in each tile."""
    return Network("alike", (2, 4, 4), [Conv2d(name="c1", cin=2, cout=8, k=3, pad=1), MaxPool(name="p1", k=2),
                                        Conv2d(name="c2", cin=8, cout=120, k=3, pad=1),
                                        Linear(name="fc", in_features=120 * 2 * 2, out_features=10)])


def test_alike_tiles_share_one_module(sim_cache):
    """A novel layer's tiles that differ only in the channels their weights give them are one
    module (hw.layer.EngineTile), each instance programmed with its own crossbars' cells:
    bit-exact and clock-exact on three images."""
    import re
    d = ChipDesign(alike_tiles(), random_weights(alike_tiles(), 0), SMALL, "novel")
    assert [len(s.tiles) for s in d.cp.stages][:2] == [1, 2]
    v = d.verilog
    bodies = re.findall(r"^module (pimgen_tile_[0-9a-f]{10})\(", v, re.M)
    instances = re.findall(r"^  (pimgen_tile_[0-9a-f]{10}) ", v, re.M)
    # c1's one tile and c2's two alike tiles (the classifier is not a novel layer)
    assert len(bodies) == len(set(bodies)) == 2 and len(instances) == 3 and set(instances) == set(bodies)
    x = np.random.default_rng(7).integers(0, 256, (3, 2, 4, 4))
    _check(run_chip_check(d, x, seed=1, cache_dir=sim_cache), 3)


def test_chip_fabric_latency_per_topology():
    """Each link crosses the fabric: one link FIFO on 5PP; on a mesh or torus the snake
    placement makes every flow one hop, which passes the flow's injection queue and two
    router input FIFOs, and a chain shares nothing (one slot a clock: period 1)."""
    for topo, queue, fifo_clocks, period in [("5pp", 0, 1, 0), ("mesh", 1, 2, 1), ("torus", 1, 2, 1)]:
        cp = tiny_design("novel", topology=topo).cp
        assert cp.to_dict()["topology"]["hops"] == [1, 1]
        assert [ln.fabric_clocks for ln in cp.links] == [fifo_clocks] * 2
        assert [ln.period for ln in cp.links] == [period] * 2
        # the pool link adds its own clocks: assemble, register, then out.wpp words
        assert cp.links[0].delay == 2 + cp.links[0].out.wpp + queue + fifo_clocks
        assert cp.links[0].arrival(100) == 100 + cp.links[0].delay + 1
    with pytest.raises(ChipError, match="topology 'ring' is not allowed: choose one of 5pp, mesh, torus"):
        tiny_design("novel", topology="ring")


@pytest.mark.parametrize("name", ["resnet20", "resnet34", "vgg8"])
def test_zoo_networks_plan_as_chips(name):
    """Every layer over as many tiles as the plan gives it, residual joins, pools: the zoo's
    networks all plan; their big layers join several tiles' outputs."""
    net = zoo(name)
    cp = plan_chip(net, random_weights(net, 0, calibrate=False), ChipConfig.preset("paper"), "novel")
    assert len(cp.stages) == len(net.weight_layers) and any(cp.merged(n) for n in range(len(cp.stages)))
    assert cp.chip.crossbar.rows == 128 and cp.n_xbars == len(cp.plan.placements)


def wide() -> Network:
    """A chain whose last two layers span several tiles (SMALL: 16 outputs per crossbar, 4 per
    PE): conv 8->72 (two tiles, joined) and a classifier of 70 raw logits (several tiles,
    partial sums across them, joined logits)."""
    return Network("wide", (2, 4, 4), [Conv2d(name="c1", cin=2, cout=8, k=3, pad=1), MaxPool(name="p1", k=2),
                                       Conv2d(name="c2", cin=8, cout=72, k=3, pad=1),
                                       Linear(name="fc", in_features=72 * 2 * 2, out_features=70)])


def test_wide_chip_plan():
    cp = plan_chip(wide(), random_weights(wide(), 0), SMALL, "novel")
    assert [len(s.tiles) for s in cp.stages] == [1, 2, 4] and [cp.merged(n) for n in range(3)] == [False, True, True]
    # the join assembles the pixel from the tiles' words (1 clock), then sends its words
    assert cp.links[1].merged and cp.links[1].delay == 1 + cp.links[1].out.wpp + 1
    assert cp.out_delay == 1 + cp.logit_layout.wpp and cp.logit_layout.wpp == -(-70 * 32 // 64)


def test_residual_chip_plan():
    """Stages in topological order (the projection before the join it feeds), each join and
    pool in the tail of the engine before it, forks as several links, skip FIFOs sized from
    the join's main path (2 engines after the fork -> 2*2+1 images), all one hop on 5PP."""
    cp = plan_chip(tiny_residual(), random_weights(tiny_residual(), 0), SMALL, "novel")
    assert [s.name for s in cp.stages] == ["c0", "b1.c1", "b1.c2", "b2.c1", "b2.ds", "b2.c2", "fc"]
    assert [[(op.kind, op.layer, op.skip) for op in cp.tail(n)] for n in range(7)] == [
        [], [], [("add", "b1.add", 0)], [], [], [("add", "b2.add", 4), ("gap", "gap", None)], []]
    assert [(ln.producer, ln.consumer, ln.port, ln.slots) for ln in cp.links] == [
        (0, 1, "in", 2), (0, 2, "skip", 5), (1, 2, "in", 2), (2, 3, "in", 2), (2, 4, "in", 2), (3, 5, "in", 2),
        (4, 5, "skip", 5), (5, 6, "in", 2)]
    assert cp.to_dict()["topology"]["hops"] == [1] * 8
    # through a tail: assemble, one clock per unit, the pixel's words; then the link FIFO
    gap_link = cp.links[-1]
    assert gap_link.out.h == gap_link.out.w == 1 and gap_link.delay == 1 + 2 + gap_link.out.wpp + 1


def test_residual_chip_model_waits_for_the_skip():
    """The hand-checked recurrence: the second join starts once its skip tensor is in,
    which (3x3 projection vs 1x1 main path) is after its main input."""
    from gen.perf import chip_timing
    cp = plan_chip(tiny_residual(), random_weights(tiny_residual(), 0), SMALL, "novel")
    t = chip_timing(cp, 3)
    done = lambda n, s: t.starts[n][s] + cp.stages[s].clocks   # noqa: E731
    for n in range(3):
        main = done(n, 3) + cp.links[5].delay + 1
        skip = done(n, 4) + cp.links[6].delay + 1
        assert skip > main and t.starts[n][5] == max(skip, done(n - 1, 5) + 1 if n else 0)
    # once full the intervals alternate (credits and the join's wait; the RTL test checks them)
    tail = chip_timing(cp, 80).interval[-2:]
    assert tail[0] != tail[1]


@pytest.mark.parametrize("net, topology, match", [
    (Network("wideres", (2, 2, 2), [Conv2d(name="a", cin=2, cout=288, k=1), Conv2d(name="b", cin=288, cout=8, k=1),
                                    Conv2d(name="c", cin=8, cout=288, k=1), Add(name="add", inputs=("c", "a")),
                                    Linear(name="fc", in_features=288 * 4, out_features=2)]),
     "mesh", "'a': on mesh its flows share the routers in 2 time slots, so a pixel of 36 words takes 72 clocks to "
             "leave, more than the 69 clocks between its pixels: use --topology 5pp"),
    (Network("cat", (2, 4, 4), [Conv2d(name="a", cin=2, cout=4, k=1), Conv2d(name="b", inputs=("a",), cin=4, cout=4, k=1),
                                Conv2d(name="c", inputs=("a",), cin=4, cout=4, k=1),
                                Concat(name="cat", inputs=("a", "b", "c")),
                                Linear(name="fc", in_features=192, out_features=2)]),
     "5pp", "'cat' \\(Concat\\): the chip joins two operands, got 3"),
    (Network("mp1", (2, 6, 6), [Conv2d(name="a", cin=2, cout=4, k=1), MaxPool(name="p", k=3, stride=1, pad=1),
                                Linear(name="fc", in_features=144, out_features=2)]),
     "5pp", "'p' \\(MaxPool 3x3, stride 1, pad 1\\) on its 6x6 input: .* two windows end on pixel 5"),
    (Network("gapend", (2, 4, 4), [Conv2d(name="a", cin=2, cout=4, k=1), GlobalAvgPool(name="g")]),
     "5pp", "ends in 'g' \\(gap\\)"),
])
def test_chip_refuses_what_it_cannot_build(net, topology, match):
    from gen.params import NoParams, PoolParams, Requant, WeightParams
    shapes = {ly.name: (ly.weight_cols, ly.weight_rows) for ly in net.layers if ly.has_weights}
    params = NetworkParams({ly.name: WeightParams(np.ones(shapes[ly.name], dtype=np.int64).reshape(
        (ly.cout, ly.cin, ly.k, ly.k) if isinstance(ly, Conv2d) else shapes[ly.name]), None, Requant(1, 4))
        if ly.has_weights else PoolParams(Requant(1, 2)) if ly.kind in ("avgpool", "gap") else NoParams()
        for ly in net.layers})
    with pytest.raises(ChipError, match=match):
        plan_chip(net, params, SMALL, "novel", topology=topology)


#: duplication of the tiny chip's convolutions: c1's 6x6 output as a 2x2 grid of 3x3
#: regions, c2's 3x3 output as three one-row bands
TINY_DUP = {"c1": 4, "c2": 3}


def test_duplicated_chip_plan():
    """A duplicated layer's pixels are read back in raster order: pixel (y, x) of c1 lies in
    region (y // 3) * 2 + x // 3 of the 2x2 grid, at step (y % 3) * 3 + x % 3 of its region;
    the reorder adds REORDER_LATENCY + (pixels - 1) * pace clocks to the link (pace: one word
    per pixel behind it)."""
    cp = plan_chip(tiny(), tiny_params(), SMALL, "conventional", duplication=TINY_DUP)
    assert [len(s.replicas) for s in cp.stages] == [4, 3, 1]
    assert [r.region for r in cp.stages[0].replicas] == [(0, 3, 0, 3), (0, 3, 3, 6), (3, 6, 0, 3), (3, 6, 3, 6)]
    assert cp.raster_order(0) == tuple(((y // 3) * 2 + x // 3, (y % 3) * 3 + x % 3) for y in range(6) for x in range(6))
    assert cp.raster_order(1) == tuple((y, x) for y in range(3) for x in range(3))
    assert not cp.reordered(2) and cp.reorder_clocks(2) == 0
    assert [cp.reorder_pace(n) for n in range(3)] == [1, 1, 0]
    c1_c2, c2_fc = cp.links
    # after c1: assemble, reorder (3 + 35), the max-pool, one word per pixel; then the fabric
    assert c1_c2.delay == 1 + (3 + 35 * 1) + 1 + 1 + c1_c2.fabric_clocks
    assert c2_fc.delay == 1 + (3 + 8 * 1) + 1 + c2_fc.fabric_clocks
    assert cp.tap(0) == (8 * 8, 36)     # the tap sees raster pixels: 8 channels of 8 bits


def test_unequal_duplication_chip_plan():
    """Regions of unequal size: 4 replicas of a 7x7 output are bands of 2, 2, 2 and 1 rows
    (``replica_grid``), so pixel (y, x) is replica y // 2's step (y % 2) * 7 + x, and the
    engine takes the largest band's 14 steps; the novel c2's 3x3 output in two bands (2 and
    1 rows) leaves from two tiles, the second writing only its 3 steps."""
    net = dropping_pools()
    cp = plan_chip(net, random_weights(net, 0), SMALL, "conventional", duplication={"c1": 4})
    assert [r.region for r in cp.stages[0].replicas] == [(0, 2, 0, 7), (2, 4, 0, 7), (4, 6, 0, 7), (6, 7, 0, 7)]
    assert cp.stages[0].out_steps == 14
    assert cp.raster_order(0) == tuple((y // 2, (y % 2) * 7 + x) for y in range(7) for x in range(7))
    cp = plan_chip(net, random_weights(net, 0), SMALL, "novel", duplication={"c2": 2})
    assert cp.stages[1].novel and cp.merged(1) and cp.reordered(1)
    assert [t.written_steps for t in cp.stages[1].tiles] == [6, 3]
    assert cp.raster_order(1) == ((0, 0), (0, 1), (0, 2), (0, 3), (0, 4), (0, 5), (1, 0), (1, 1), (1, 2))


def test_unequal_width_novel_replicas_plan():
    """6 replicas of the novel c2's 3x3 output: a 3x2 grid (``replica_grid``) whose columns
    are 2 and 1 wide. The novel replicas share one step schedule, so the 1-wide ones compute
    2 columns, columns 1 and 2 (``computed_regions``); they own only column 2, and the raster
    reorder reads pixel (y, 2) as their step 1 and (y, 1) from the left replica, by hand.
    The conventional c1 keeps its rectangles (4 and 3 wide)."""
    net = dropping_pools()
    cp = plan_chip(net, random_weights(net, 4), SMALL, "novel", duplication={"c1": 6, "c2": 6})
    c1, c2 = cp.stages[0], cp.stages[1]
    assert not c1.novel and [r.region for r in c1.replicas] == [r.owned for r in c1.replicas] == \
        [(0, 3, 0, 4), (0, 3, 4, 7), (3, 6, 0, 4), (3, 6, 4, 7), (6, 7, 0, 4), (6, 7, 4, 7)]
    assert c2.novel
    assert [r.owned for r in c2.replicas] == [(y, y + 1, x0, x1) for y in range(3) for x0, x1 in ((0, 2), (2, 3))]
    assert [r.region for r in c2.replicas] == [(y, y + 1, x0, x1) for y in range(3) for x0, x1 in ((0, 2), (1, 3))]
    assert c2.out_steps == 2 and [t.written_steps for t in c2.tiles] == [2] * 6
    # a 3x3 window with padding 1 over the 3x3 input: columns -1..2 (left) and 0..3 (right), real 0..2
    assert [r.in_cols for r in c2.replicas] == [(0, 3)] * 6
    assert cp.raster_order(1) == ((0, 0), (0, 1), (1, 1), (2, 0), (2, 1), (3, 1), (4, 0), (4, 1), (5, 1))
    # the layer check reads each pixel once: the right replicas' step 0 is the left one's pixel
    assert [c2.step_outputs(t, 0) for t in (0, 1)] == [[(0, 0, 0)], [None]]
    assert [c2.step_outputs(t, 1) for t in (0, 1)] == [[(0, 0, 1)], [(1, 0, 2)]]


def test_chip_refuses_duplication_it_cannot_build():
    # 16 replicas of a 1x1 layer finish sooner than its 64 pixels of 8 words can leave in order
    net = Network("wide1x1", (2, 8, 8), [Conv2d(name="a", cin=2, cout=64, k=1), Conv2d(name="b", cin=64, cout=4, k=1),
                                         Linear(name="fc", in_features=256, out_features=2)])
    with pytest.raises(ChipError, match="'a': its 16 replicas finish an image in 328 clocks, less than the 64 x 8 "
                                        "\\+ 3 clocks"):
        plan_chip(net, random_weights(net, 0), SMALL, "novel", duplication={"a": 16})
    with pytest.raises(ChipError, match="duplication=0 is not allowed"):
        plan_chip(net, random_weights(net, 0), SMALL, "novel", duplication=0)


# --- RTL ------------------------------------------------------------------------------------------
def _check(rep, n):
    assert rep["mismatches"] == 0 and rep["diverged"] is None, rep
    if rep["timing_checked"]:
        assert rep["measured_latency"] == rep["predicted_latency"], rep
        assert rep["measured_interval"] == rep["predicted_interval"], rep
        assert len(rep["measured_latency"]) == n
    assert rep["passed"], rep


def test_tiny_chip_novel(sim_cache):
    d = tiny_design("novel")
    x = np.random.default_rng(5).integers(0, 256, (4, 2, 6, 6))
    _check(run_chip_check(d, x, seed=1, cache_dir=sim_cache), 4)
    # random input gaps and output back-pressure: nothing lost, duplicated or reordered
    _check(run_chip_check(d, x, seed=2, ready_prob=0.3, gap_prob=0.4, cache_dir=sim_cache), 4)

    # a wrong weight in one layer is caught, and the traces name that layer
    def corrupt(args):
        base = d.cp.xbar_base(1)
        lay = __import__("hw.pe", fromlist=["prog_layout"]).prog_layout(d.chip.crossbar, d.cp.n_xbars)
        for k, v in enumerate(args["prog"]):
            if (v >> lay["xbar"].offset) & ((1 << lay["xbar"].shape.width) - 1) == base:
                args["prog"][k] = v ^ (0x7F << lay["cells"].offset)     # change the first cells of a row
                break
        return args

    rep = run_chip_check(d, x[:2], seed=3, cache_dir=sim_cache, args_hook=corrupt)
    assert not rep["passed"] and rep["diverged"]["layer"] == "c2", rep


@pytest.mark.parametrize("mapping", ["novel", pytest.param("conventional", marks=pytest.mark.slow)])
def test_pooling_chip(mapping, sim_cache):
    """General max-pool (overlap, padding) and k x k average pool in the stage tails: every logit
    and stage word vs sim.golden, clocks == gen.perf; with back-pressure nothing is lost."""
    net = pools()
    d = ChipDesign(net, random_weights(net, 4), SMALL, mapping)
    assert [op.kind for n in range(len(d.cp.stages)) for op in d.cp.tail(n)] == ["maxpool", "avgpool"]
    x = np.random.default_rng(8).integers(0, 256, (3, 2, 8, 8))
    _check(run_chip_check(d, x, seed=1, cache_dir=sim_cache), 3)
    _check(run_chip_check(d, x, seed=2, ready_prob=0.4, gap_prob=0.3, cache_dir=sim_cache), 3)


@pytest.mark.parametrize("mapping", ["novel", pytest.param("conventional", marks=pytest.mark.slow)])
def test_dropping_pool_chip(mapping, sim_cache):
    """Max-pools that drop their maps' last rows and columns: every logit and stage word vs
    sim.golden, and clocks == gen.perf, which counts each image's last pooled output on the
    map's last pixel; with back-pressure and input gaps nothing is lost."""
    net = dropping_pools()
    d = ChipDesign(net, random_weights(net, 6), SMALL, mapping)
    assert [(op.kind, op.k) for n in range(len(d.cp.stages)) for op in d.cp.tail(n)] == [("maxpool", 2)] * 2
    x = np.random.default_rng(9).integers(0, 256, (3, 2, 7, 7))
    _check(run_chip_check(d, x, seed=1, cache_dir=sim_cache), 3)
    _check(run_chip_check(d, x, seed=2, ready_prob=0.4, gap_prob=0.3, cache_dir=sim_cache), 3)


def test_tiny_chip_conventional_mesh(sim_cache):
    d = tiny_design("conventional", topology="mesh")
    assert {s.mapping for s in d.cp.stages} == {"conventional"}
    x = np.random.default_rng(6).integers(0, 256, (3, 2, 6, 6))
    _check(run_chip_check(d, x, seed=4, cache_dir=sim_cache), 3)


def test_tiny_chip_faulty_cells(sim_cache):
    """Non-ideal cells on a chip: the cells of a device model (stuck-at, variation, F = 2)
    go in through the programming port, and the chip's logits are the golden model's under
    the same conductance maps, bit for bit, clocks unchanged. The same chip programmed with
    ideal cells gives the ideal network's logits (F > 0 alone changes nothing)."""
    from gen.devices import DeviceModel
    chip = dataclasses.replace(SMALL, crossbar=dataclasses.replace(SMALL.crossbar, g_frac_bits=2))
    faulty = tiny_design("novel", chip=chip).with_device(
        DeviceModel(stuck_at_0=0.03, stuck_at_1=0.02, variation=0.4, seed=4))
    x = np.random.default_rng(8).integers(0, 256, (2, 2, 6, 6))
    ideal = [run_network(faulty.network, faulty.params, xi) for xi in x]
    gold = [run_plan(faulty.cp.plan, faulty.cp.params, xi, conductances=faulty.conductances) for xi in x]
    assert not all(np.array_equal(a.reshape(-1), b.reshape(-1)) for a, b in zip(ideal, gold))   # the faults show
    # what the chip check compares the chip's logits with: the faulty golden model
    assert all(np.array_equal(g["fc"].reshape(-1), f.reshape(-1)) for g, f in zip(golden(faulty, x), gold))
    _check(run_chip_check(faulty, x, seed=1, cache_dir=sim_cache), 2)
    # programmed around the stuck cells (gen.fault_aware): other cells, still predicted exactly
    aware = faulty.with_device(faulty.device, fault_aware=True)
    assert aware.program_words() != faulty.program_words()
    _check(run_chip_check(aware, x, seed=1, cache_dir=sim_cache), 2)
    ideal_chip = faulty.with_device(None)
    assert all(np.array_equal(g["fc"].reshape(-1), i.reshape(-1)) for g, i in zip(golden(ideal_chip, x), ideal))
    _check(run_chip_check(ideal_chip, x, seed=1, cache_dir=sim_cache), 2)


@pytest.mark.parametrize("mapping", ["novel", "conventional"])
def test_tiny_residual_chip(mapping, sim_cache):
    """Forks, skip FIFOs, joins and the global pool on 5PP: bit-exact and clock-exact, then
    under random back-pressure and input gaps nothing lost, duplicated or reordered."""
    net = tiny_residual()
    d = ChipDesign(net, random_weights(net, 0), SMALL, mapping)
    x = np.random.default_rng(7).integers(0, 256, (3, 2, 8, 8))
    _check(run_chip_check(d, x, seed=1, cache_dir=sim_cache), 3)
    _check(run_chip_check(d, x, seed=2, ready_prob=0.3, gap_prob=0.3, cache_dir=sim_cache), 3)


@pytest.mark.parametrize("mapping, topology", [("novel", "mesh"), ("conventional", "torus")])
def test_tiny_residual_chip_routed(mapping, topology, sim_cache):
    """Forks, skips and joins on a routed fabric, whose flows share channels and ejection
    ports in time slots (period 2: the fork cores inject two flows): bit-exact, and every
    latency and interval == gen.perf, which counts each image's wait for its flows' slots;
    then under back-pressure and input gaps nothing lost, duplicated or reordered."""
    net = tiny_residual()
    d = ChipDesign(net, random_weights(net, 0), SMALL, mapping, topology=topology)
    assert {ln.period for ln in d.cp.links} == {2}
    assert max(d.cp.placement.hops(f) for f in d.cp.placement.cg.flows) == 2     # through-traffic
    x = np.random.default_rng(7).integers(0, 256, (3, 2, 8, 8))
    _check(run_chip_check(d, x, seed=1, cache_dir=sim_cache), 3)
    _check(run_chip_check(d, x, seed=2, ready_prob=0.3, gap_prob=0.3, cache_dir=sim_cache), 3)


def test_tiny_residual_chip_on_small_ram_macros(monkeypatch, sim_cache):
    """The chip's deep memories as tiles of one shared RAM macro (hw.sram), the macro made
    small here so that every feature-map buffer and skip FIFO of the residual chip is tiled
    (by rows and by columns): bit-exact and clock-exact, under back-pressure too."""
    import hw.sram
    monkeypatch.setattr(hw.sram, "MACRO_DEPTH", 16)
    monkeypatch.setattr(hw.sram, "MACRO_WIDTH", 8)
    net = tiny_residual()
    d = ChipDesign(net, random_weights(net, 0), SMALL, "novel")
    text = d.verilog
    assert text.count("module pimgen_ram_16x8_r1(") == 1 and "module pimgen_image_fifo_" in text
    assert "reg [7:0] storage" not in text       # no memory but the macro's (Amaranth's FIFO names it so)
    x = np.random.default_rng(7).integers(0, 256, (3, 2, 8, 8))
    _check(run_chip_check(d, x, seed=2, ready_prob=0.3, gap_prob=0.3, cache_dir=sim_cache), 3)


@pytest.mark.parametrize("mapping", ["novel", pytest.param("conventional", marks=pytest.mark.slow)])
def test_wide_chip(mapping, sim_cache):
    """Layers over several tiles on the chip: the tiles' outputs joined into pixels (and into
    the logits), partial sums across tiles; bit-exact and clock-exact."""
    d = ChipDesign(wide(), random_weights(wide(), 0), SMALL, mapping)
    x = np.random.default_rng(5).integers(0, 256, (3, 2, 4, 4))
    _check(run_chip_check(d, x, seed=1, cache_dir=sim_cache), 3)


def test_rows_over_tiles_chip(sim_cache):
    """A layer whose rows span two tiles, all its sums leaving from the second (130 input
    channels: 37 row-blocks on SMALL): the chip takes that tile's stream."""
    net = Network("deep", (2, 4, 4), [Conv2d(name="c1", cin=2, cout=130, k=1),
                                      Conv2d(name="c2", cin=130, cout=10, k=3, pad=1),
                                      Linear(name="fc", in_features=160, out_features=5)])
    d = ChipDesign(net, random_weights(net, 0), SMALL, "novel")
    assert len(d.cp.stages[1].tiles) == 2 and d.cp.out_tiles(1) == [1] and not d.cp.merged(1)
    x = np.random.default_rng(3).integers(0, 256, (2, 2, 4, 4))
    _check(run_chip_check(d, x, seed=1, cache_dir=sim_cache), 2)


@pytest.mark.parametrize("mapping", ["conventional", "novel"])
def test_tiny_chip_duplicated(mapping, sim_cache):
    """Duplicated layers (c1 as a 2x2 grid, c2 as three bands): their pixels back in raster
    order, bit-exact, clocks exact; then under random back-pressure, nothing lost or reordered."""
    d = ChipDesign(tiny(), tiny_params(), SMALL, mapping, duplication=TINY_DUP)
    x = np.random.default_rng(8).integers(0, 256, (3, 2, 6, 6))
    _check(run_chip_check(d, x, seed=1, cache_dir=sim_cache), 3)
    _check(run_chip_check(d, x, seed=2, ready_prob=0.3, cache_dir=sim_cache), 3)


@pytest.mark.parametrize("mapping", ["conventional", pytest.param("novel", marks=pytest.mark.slow)])
def test_tiny_residual_chip_duplicated(mapping, sim_cache):
    """Duplicated stages on both sides of the joins: c0 (forked into a skip FIFO), b1.c2 (its
    add takes c0's skip pixels back to back), b2.ds (a skip of two words per pixel) and b2.c2
    (add, then the global pool): bit-exact, clocks exact, then under back-pressure."""
    net = tiny_residual()
    d = ChipDesign(net, random_weights(net, 0), SMALL, mapping, duplication={"c0": 2, "b1.c2": 4, "b2.ds": 2, "b2.c2": 2})
    assert [d.cp.reorder_pace(n) for n in range(len(d.cp.stages))] == [1, 0, 1, 0, 2, 2, 0]
    x = np.random.default_rng(3).integers(0, 256, (3, 2, 8, 8))
    _check(run_chip_check(d, x, seed=1, cache_dir=sim_cache), 3)
    _check(run_chip_check(d, x, seed=2, ready_prob=0.3, gap_prob=0.3, cache_dir=sim_cache), 3)


def test_tiny_residual_chip_duplicated_on_a_torus(sim_cache):
    """Duplicated stages on a routed fabric: each raster reorder sends its pixels at the pace
    the flows' time slots take them (period 2: twice the 5PP pace where the stage sends on
    the fabric), so no engine waits on the fabric and the clocks stay exact."""
    net = tiny_residual()
    d = ChipDesign(net, random_weights(net, 0), SMALL, "conventional", topology="torus",
                   duplication={"c0": 2, "b1.c2": 4, "b2.ds": 2, "b2.c2": 2})
    assert [d.cp.reorder_pace(n) for n in range(len(d.cp.stages))] == [2, 0, 2, 0, 4, 4, 0]
    x = np.random.default_rng(3).integers(0, 256, (3, 2, 8, 8))
    _check(run_chip_check(d, x, seed=1, cache_dir=sim_cache), 3)
    _check(run_chip_check(d, x, seed=2, ready_prob=0.3, gap_prob=0.3, cache_dir=sim_cache), 3)


@pytest.mark.parametrize("mapping, dup", [("conventional", {"c1": 4, "c2": 2}), ("novel", {"c1": 2, "c2": 2})])
def test_unequal_duplication_chip(mapping, dup, sim_cache):
    """Duplication whose regions differ in size (``test_unequal_duplication_chip_plan``):
    bands of 2, 2, 2, 1 rows (conventional, one tile) or 4 and 3 rows, and c2's bands of 2
    and 1 rows (novel: from two tiles, the second done after 3 steps), ahead of the dropping
    max-pools: bit-exact, clocks exact, then under back-pressure and input gaps."""
    net = dropping_pools()
    d = ChipDesign(net, random_weights(net, 4), SMALL, mapping, duplication=dup)
    assert len({(y1 - y0) * (x1 - x0) for y0, y1, x0, x1 in (r.region for r in d.cp.stages[1].replicas)}) == 2
    x = np.random.default_rng(11).integers(0, 256, (3, 2, 7, 7))
    _check(run_chip_check(d, x, seed=1, cache_dir=sim_cache), 3)
    _check(run_chip_check(d, x, seed=2, ready_prob=0.3, gap_prob=0.3, cache_dir=sim_cache), 3)


def test_unequal_width_duplication_chip(sim_cache):
    """Novel replicas of unequal width (``test_unequal_width_novel_replicas_plan``): c2's
    1-wide replicas recompute their neighbour's column; behind the conventional c1's 3x2 grid
    of 3x4 and 3x3 rectangles: bit-exact, clocks exact, then under back-pressure and gaps.
    The cells vary (a device model), so each replica computes its own values and a pixel
    read from the replica that does not own it would differ from the golden model's."""
    from gen.devices import DeviceModel
    net = dropping_pools()
    chip = dataclasses.replace(SMALL, crossbar=dataclasses.replace(SMALL.crossbar, g_frac_bits=2))
    d = ChipDesign(net, random_weights(net, 4), chip, "novel", duplication={"c1": 6, "c2": 6}).with_device(
        DeviceModel(variation=0.5, seed=5))
    assert d.cp.stages[1].novel and len({r.region[3] - r.region[2] for r in d.cp.stages[1].replicas}) == 1
    x = np.random.default_rng(12).integers(0, 256, (3, 2, 7, 7))
    _check(run_chip_check(d, x, seed=1, cache_dir=sim_cache), 3)
    _check(run_chip_check(d, x, seed=2, ready_prob=0.3, gap_prob=0.3, cache_dir=sim_cache), 3)


# --- slow set: the trained digits chip ---------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("mapping, topology", [("novel", "5pp"), ("conventional", "5pp"), ("novel", "mesh")])
def test_digits_chip(mapping, topology, sim_cache):
    from gen.models import digits_dataset
    d = design_from_network("digits", SMALL, mapping, topology=topology)
    assert d.source == "trained"
    x, labels = digits_dataset("test")
    rep = run_chip_check(d, x[:6], labels=labels[:6], seed=1, cache_dir=sim_cache)
    _check(rep, 6)
    assert rep["accuracy"] >= 5 / 6
    rep = run_chip_check(d, x[6:10], labels=labels[6:10], seed=2, ready_prob=0.4, cache_dir=sim_cache)
    _check(rep, 4)


@pytest.mark.slow
@pytest.mark.parametrize("mapping", ["novel", "conventional"])
def test_digits_chip_balanced_duplication(mapping, sim_cache):
    """The digits chip with duplication in proportion to each layer's clocks (8, 8, 2, 1
    replicas): over five times the throughput, every logit and clock as the models say."""
    from gen.models import digits_dataset
    d = design_from_network("digits", SMALL, mapping, duplication="balance")
    assert [len(s.replicas) for s in d.cp.stages] == [8, 8, 2, 1]
    single = design_from_network("digits", SMALL, mapping)
    assert d.timing(4).steady_interval * 5 < single.timing(4).steady_interval
    x, labels = digits_dataset("test")
    _check(run_chip_check(d, x[:4], labels=labels[:4], seed=3, cache_dir=sim_cache), 4)


def _check_digits_free_then_pressed(d, sim_cache, seed):
    """4 held-out digits free-running (at least 3 right), then 3 more under back-pressure
    and input gaps: every logit, stage word and clock as the models say."""
    from gen.models import digits_dataset
    x, labels = digits_dataset("test")
    rep = run_chip_check(d, x[:4], labels=labels[:4], seed=seed, cache_dir=sim_cache)
    _check(rep, 4)
    assert rep["accuracy"] >= 3 / 4
    _check(run_chip_check(d, x[4:7], seed=seed + 1, ready_prob=0.4, gap_prob=0.2, cache_dir=sim_cache), 3)


@pytest.mark.slow
@pytest.mark.parametrize("mapping", ["novel", "conventional"])
def test_digits_chip_unequal_duplication(mapping, sim_cache):
    """The digits chip with 3 replicas per layer: conv1 and conv2 as bands of 3, 3 and 2 rows
    of their 8x8 outputs (regions of 24, 24 and 16 pixels), conv3 as two bands of its 4x4:
    every logit, stage word and clock as the models say, also under back-pressure."""
    d = design_from_network("digits", SMALL, mapping, duplication=3)
    assert [r.region for r in d.cp.stages[1].replicas] == [(0, 3, 0, 8), (3, 6, 0, 8), (6, 8, 0, 8)]
    _check_digits_free_then_pressed(d, sim_cache, seed=4)


@pytest.mark.slow
def test_digits_chip_unequal_width_duplication(sim_cache):
    """The digits chip with 12 replicas of conv2 (as in `--duplication 12`, which also
    duplicates the other layers; the bench row): its 8x8 output as a 4x3 grid of columns 3, 3
    and 2 wide, whose 2-wide replicas compute columns 5-7: every logit, stage word and clock
    as the models say, also under back-pressure."""
    d = design_from_network("digits", SMALL, "novel", duplication={"conv2": 12})
    c2 = d.cp.stages[1]
    assert len(c2.replicas) == 12
    assert c2.novel and [r.owned[2:] for r in c2.replicas[:3]] == [(0, 3), (3, 6), (6, 8)]
    assert [r.region[2:] for r in c2.replicas[:3]] == [(0, 3), (3, 6), (5, 8)]
    _check_digits_free_then_pressed(d, sim_cache, seed=6)


@pytest.mark.slow
def test_digits_chip_lossy_adc(sim_cache):
    """A lossy ADC: the chip follows the crossbar-exact model, not the plain convolution."""
    chip = dataclasses.replace(SMALL, crossbar=dataclasses.replace(SMALL.crossbar, adc_bits=6, adc_shift=1))
    d = design_from_network("digits", chip, "novel")
    x = np.random.default_rng(9).integers(0, 256, (3, 1, 8, 8))
    gold = run_plan(d.cp.plan, d.cp.params, x[0])
    assert not np.array_equal(gold, run_network(d.network, d.params, x[0]))
    _check(run_chip_check(d, x, seed=5, cache_dir=sim_cache), 3)


@pytest.mark.slow
def test_faulty_digits_chip_through_the_cli(tmp_path):
    """`pimgen build --g-frac-bits 2 --stuck-at ... --fault-aware` then `pimgen simulate`: the
    faulty trained chip on real digits is bit-exact vs the faulty golden model, clocks exact;
    `simulate --stuck-at` re-programs the same build under another draw."""
    import json
    import subprocess
    import sys
    pimgen = [sys.executable, "-m", "flow.cli"]
    out = tmp_path / "faulty"
    r = subprocess.run(pimgen + ["build", "digits", "-o", str(out), "--g-frac-bits", "2", "--stuck-at", "0.02",
                                 "--variation", "0.1", "--seed", "3", "--fault-aware"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    for extra in ([], ["--stuck-at-1", "0.01", "--seed", "5"]):
        r = subprocess.run(pimgen + ["simulate", str(out), "--images", "6", "--json", *extra],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr + r.stdout
        rep = json.loads(r.stdout)
        assert rep["passed"] and rep["mismatches"] == 0 and rep["timing_checked"]
        assert rep["measured_latency"] == rep["predicted_latency"]


@pytest.mark.slow
def test_onnx_imported_digits_chip(sim_cache):
    """The front end's path into the chip: the float digits ONNX model quantized on the fly
    (gen.onnx_import + gen.quantize) runs on the chip bit-exact, clocks exact; its classes
    are the int8 golden model's."""
    from pathlib import Path
    from gen.models import digits_dataset
    from gen.onnx_import import load_onnx
    from gen.quantize import quantize
    fm = load_onnx(Path(__file__).resolve().parents[1] / "gen" / "models" / "digits.onnx")
    xf, _ = digits_dataset("train", codes=False)
    qm = quantize(fm, xf[:200])
    xt, yt = digits_dataset("test", codes=False)
    codes = np.stack([qm.quantize_input(x) for x in xt[:4]])
    d = ChipDesign(qm.net, qm.params, SMALL, "novel", source="digits.onnx")
    rep = run_chip_check(d, codes, labels=yt[:4], seed=7, cache_dir=sim_cache)
    _check(rep, 4)
    want = [int(np.argmax(run_network(qm.net, qm.params, c))) for c in codes]
    assert rep["predictions"] == want


@pytest.mark.slow
def test_digits_chip_chaos(sim_cache):
    """Random input idles and random output back-pressure over many images: every logit
    delivered once, in order, bit-exact (no clock check: the stalls are random)."""
    from gen.models import digits_dataset
    d = design_from_network("digits", SMALL, "novel")
    x, labels = digits_dataset("test")
    rep = run_chip_check(d, x[:16], labels=labels[:16], seed=11, ready_prob=0.2, gap_prob=0.6, cache_dir=sim_cache)
    _check(rep, 16)
    assert rep["images"] == 16 and not rep["timing_checked"]


@pytest.mark.slow
@pytest.mark.parametrize("mapping, topology", [("novel", "5pp"), ("conventional", "5pp"), ("novel", "mesh")])
def test_resnet20_mini_chip(mapping, topology, sim_cache):
    """A whole residual CIFAR network (ResNet-20, 8/16/32 channels on 16x16: 22 engines, 9
    joins, two projection shortcuts, global average pool) on 5PP, and on a mesh whose skips
    share its channels in time slots, three images back to back: every logit and every
    stage's words bit-exact, every latency and interval exact."""
    net = zoo("resnet20-mini")
    d = ChipDesign(net, random_weights(net, 1), SMALL, mapping, topology=topology)
    assert len(d.cp.stages) == 22 and sum(ln.port == "skip" for ln in d.cp.links) == 9
    x = np.random.default_rng(8).integers(0, 256, (3, 3, 16, 16))
    _check(run_chip_check(d, x, seed=1, cache_dir=sim_cache), 3)
