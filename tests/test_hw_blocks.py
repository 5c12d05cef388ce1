"""Layer-engine building blocks in the Amaranth simulator: post-processing units (bit-exact
vs sim.golden, under back-pressure), the PE, the adder tree, stage timers and the controller,
and the chip's raster reorder of duplicated layers."""
import random
from types import SimpleNamespace

import numpy as np
import pytest
from amaranth.hdl import Module, Signal, signed

from gen.config import CrossbarConfig
from gen.params import AddParams, Requant
from gen.timing import adder_tree_clocks as adder_levels, crossbar_latency
from hw.controller import LayerController, StageTimer
from hw.links import RasterReorder
from hw.pe import PE, PEBlock
from hw.post import AvgPoolUnit, GlobalAvgPoolUnit, MaxPoolUnit, Requantize, ResidualAddUnit
from sim.golden import crossbar_mvm, global_avgpool, maxpool2d, requantize, residual_add
from sim.stream import pack, unpack

from conftest import run_amaranth


def _stream_through(dut, inputs: dict, out_name: str, n_out: int, ready_prob=1.0, gap_prob=0.0, seed=0,
                    max_clocks=20000):
    """Drive every input stream (``{port name: [payloads]}``, beats taken when valid&ready),
    collect ``n_out`` payloads from ``out_name`` with random ready. Returns the payloads."""
    rng = random.Random(seed)
    got = []

    async def bench(ctx):
        queues = {k: list(v) for k, v in inputs.items()}
        o = getattr(dut, out_name)
        for _ in range(max_clocks):
            for k, q in queues.items():
                port = getattr(dut, k)
                if q and not (gap_prob and rng.random() < gap_prob):
                    ctx.set(port.valid, 1)
                    ctx.set(port.payload, q[0])
                else:
                    ctx.set(port.valid, 0)
            ctx.set(o.ready, int(rng.random() < ready_prob))
            taken = {k: ctx.get(getattr(dut, k).valid) and ctx.get(getattr(dut, k).ready) for k in queues}
            if ctx.get(o.valid) and ctx.get(o.ready):
                got.append(ctx.get(o.payload))
            await ctx.tick()
            for k, t in taken.items():
                if t:
                    queues[k].pop(0)
            if len(got) >= n_out and not any(queues.values()):
                for _ in range(5):
                    await ctx.tick()
                    if ctx.get(o.valid) and ctx.get(o.ready):
                        got.append(ctx.get(o.payload))
                return

    run_amaranth(dut, bench, timeout_clocks=max_clocks + 10)
    return got


@pytest.mark.parametrize("bp", [False, True])
def test_requantize_matches_golden(bp):
    rng = np.random.default_rng(1)
    n, acc_bits = 6, 24
    bias = rng.integers(-5000, 5000, n)
    m, s = 1234, 17
    accs = rng.integers(-(1 << 22), 1 << 22, (40, n))
    accs[0] = (1 << 23) - 1        # saturates high
    accs[1] = -(1 << 23)           # clamps to 0
    dut = Requantize(acc_bits, bias, Requant(m, s), a_bits=8)
    got = _stream_through(dut, {"i": [pack(a, acc_bits) for a in accs]}, "o", len(accs),
                          ready_prob=0.5 if bp else 1.0, gap_prob=0.3 if bp else 0.0)
    want = requantize(accs.T, m, s, bias, 8).T
    assert [unpack(p, 8, n) for p in got] == want.tolist()


def test_requantize_raw_and_s0():
    rng = np.random.default_rng(2)
    accs = rng.integers(-(1 << 20), 1 << 20, (10, 3))
    bias = [7, -9, 100]
    got = _stream_through(Requantize(22, bias), {"i": [pack(a, 22) for a in accs]}, "o", 10)
    assert [unpack(p, 32, 3, signed=True) for p in got] == (accs + np.array(bias)).tolist()
    got = _stream_through(Requantize(22, bias, Requant(3, 0)), {"i": [pack(a, 22) for a in accs]}, "o", 10)
    assert [unpack(p, 8, 3) for p in got] == requantize(accs.T, 3, 0, bias, 8).T.tolist()


@pytest.mark.parametrize("h,w,k,stride,pad,bp", [
    (4, 6, 2, None, 0, False), (5, 7, 2, None, 0, True), (6, 6, 3, None, 0, True),
    (7, 8, 3, 2, 1, True),          # ResNet's stem pool: overlapping windows, padding
    (6, 5, 3, 1, 0, False),         # stride 1: every pixel in up to nine windows
    (5, 6, 2, 1, 0, True), (8, 8, 3, 2, 0, False), (4, 4, 1, None, 0, False)])
def test_maxpool_unit(h, w, k, stride, pad, bp):
    rng = np.random.default_rng(h * w + k)
    c = 3
    imgs = rng.integers(0, 256, (2, c, h, w))
    beats = [pack(img[:, y, x], 8) for img in imgs for y in range(h) for x in range(w)]
    want_imgs = [maxpool2d(img, k, stride, pad) for img in imgs]
    _, ho, wo = want_imgs[0].shape
    got = _stream_through(MaxPoolUnit(c, h, w, k, stride=stride, pad=pad), {"i": beats}, "o", 2 * ho * wo,
                          ready_prob=0.4 if bp else 1.0, gap_prob=0.3 if bp else 0.0, seed=h)
    want = [t[:, y, x].tolist() for t in want_imgs for y in range(ho) for x in range(wo)]
    assert [unpack(p, 8, c) for p in got] == want


@pytest.mark.parametrize("h,w,k,stride,pad", [(4, 6, 2, None, 0), (5, 7, 2, None, 0), (7, 7, 3, 2, 0), (6, 5, 2, 3, 0)])
def test_maxpool_unit_last_output_leaves_on_last_pixel(h, w, k, stride, pad):
    """With or without trailing pixels in no window, an image's last output is valid on the
    clock after its last pixel is taken (what gen.perf counts), and not before."""
    c = 2
    img = np.random.default_rng(h + w).integers(0, 256, (c, h, w))
    beats = [pack(img[:, y, x], 8) for y in range(h) for x in range(w)]
    dut = MaxPoolUnit(c, h, w, k, stride=stride, pad=pad)
    n_out = maxpool2d(img, k, stride, pad)[0].size
    seen = {}

    async def bench(ctx):
        ctx.set(dut.o.ready, 1)
        outs = 0
        for t in range(len(beats) + 4):
            if t < len(beats):
                ctx.set(dut.i.valid, 1)
                ctx.set(dut.i.payload, beats[t])
            else:
                ctx.set(dut.i.valid, 0)
            if ctx.get(dut.o.valid):
                outs += 1
                if outs == n_out:
                    seen["last_out"] = t
            await ctx.tick()

    run_amaranth(dut, bench, timeout_clocks=len(beats) + 10)
    assert seen["last_out"] == len(beats)      # pixel len-1 taken on clock len-1, output on the next


def test_maxpool_unit_refuses_two_windows_ending_on_one_pixel():
    import gc
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")         # the refused component is never elaborated
        with pytest.raises(ValueError, match="along its rows: two windows end on pixel 5 "):
            MaxPoolUnit(2, 6, 5, 3, stride=1, pad=1)
        gc.collect()


@pytest.mark.parametrize("z_in, z_out, relu", [(0, 0, True), (37, 5, False), (12, 0, True)])
def test_avgpool_unit(z_in, z_out, relu):
    from gen.intops import avgpool2d
    rng = np.random.default_rng(z_in + 1)
    c, h, w, k, m, s = 3, 6, 4, 2, 21, 7
    imgs = rng.integers(0, 256, (2, c, h, w))
    beats = [pack(img[:, y, x], 8) for img in imgs for y in range(h) for x in range(w)]
    got = _stream_through(AvgPoolUnit(c, h, w, k, Requant(m, s, z_out, relu), z_in=z_in), {"i": beats}, "o",
                          2 * (h // k) * (w // k), ready_prob=0.5, gap_prob=0.2, seed=3)
    want_imgs = [avgpool2d(img, k, m, s, 8, z_in, z_out, relu) for img in imgs]
    assert [unpack(p, 8, c) for p in got] == [t[:, y, x].tolist() for t in want_imgs
                                              for y in range(h // k) for x in range(w // k)]


def test_pool_windows_follow_maxpool2d():
    """The unit's window geometry (gen.intops.pool_windows) picks the pixels maxpool2d's
    sliding windows do, and the streamed-pool rule refuses only what would double up."""
    from gen.intops import pool_windows, streamed_pool_refusal
    rng = np.random.default_rng(0)
    for n, k, st, p in [(7, 3, 2, 1), (112, 3, 2, 1), (6, 2, None, 0), (9, 3, 3, 1), (5, 3, 1, 2)]:
        row = rng.integers(0, 256, (1, 1, n))
        want = maxpool2d(np.repeat(row, k, axis=1), k, st, p)[0, 0] if p < k else None
        got = [row[0, 0, a:b + 1].max() for a, b in pool_windows(n, k, st, p)]
        assert want is None or got == want.tolist(), (n, k, st, p)
    assert streamed_pool_refusal(112, 3, 2, 1) is None
    assert streamed_pool_refusal(7, 2) is None          # the trailing pixel is dropped
    assert streamed_pool_refusal(5, 3, 1, 2) == "two windows end on pixel 4 (clipped by the padding)"


def test_global_avgpool_unit():
    rng = np.random.default_rng(3)
    c, h, w = 4, 3, 5
    imgs = rng.integers(0, 256, (3, c, h, w))
    m, s = 4369, 16    # ~ 1/15
    beats = [pack(img[:, y, x], 8) for img in imgs for y in range(h) for x in range(w)]
    got = _stream_through(GlobalAvgPoolUnit(c, h, w, Requant(m, s)), {"i": beats}, "o", 3, ready_prob=0.5, gap_prob=0.2)
    assert [unpack(p, 8, c) for p in got] == [global_avgpool(img, m, s).tolist() for img in imgs]


@pytest.mark.parametrize("bp", [False, True])
def test_residual_add_unit(bp):
    rng = np.random.default_rng(4)
    c = 5
    a = rng.integers(0, 256, (30, c))
    b = rng.integers(0, 256, (30, c))
    ma, mb, s = 3, 5, 3
    got = _stream_through(ResidualAddUnit(c, AddParams(ma, mb, s)), {"a": [pack(v, 8) for v in a], "b": [pack(v, 8) for v in b]},
                          "o", 30, ready_prob=0.5 if bp else 1.0, gap_prob=0.4 if bp else 0.0, seed=9)
    assert [unpack(p, 8, c) for p in got] == residual_add(a, b, ma, mb, s).tolist()


def test_pe_matches_crossbar_golden(amaranth_sim):
    """Two row-blocks and a second column block on one PE: every block's dot products."""
    cfg = CrossbarConfig(rows=4, cols=9, cell_bits=2, cols_per_adc=3)
    rng = np.random.default_rng(5)
    n_in = 7
    blocks = [PEBlock(0, rng.integers(-128, 128, (4, 2))), PEBlock(4, rng.integers(-128, 128, (3, 2))),
              PEBlock(2, rng.integers(-128, 128, (4, 1)))]
    dut = PE(cfg, n_in, blocks)
    x = rng.integers(0, 256, n_in)
    out = {}

    async def bench(ctx):
        ctx.set(dut.o.ready, 1)
        ctx.set(dut.i.payload, pack(x, 8))
        ctx.set(dut.i.valid, 1)
        assert ctx.get(dut.i.ready)
        await ctx.tick()
        ctx.set(dut.i.valid, 0)
        n = 1
        while not ctx.get(dut.o.valid):
            await ctx.tick()
            n += 1
        out["y"] = unpack(ctx.get(dut.o.payload), cfg.dot_bits, len(blocks) * cfg.outputs, signed=True)
        out["n"] = n

    amaranth_sim(dut, bench, timeout_clocks=200)
    assert out["n"] == crossbar_latency(cfg)
    for b, blk in enumerate(blocks):
        want = crossbar_mvm(x[blk.r0:blk.r1], blk.weights, cfg).tolist()
        assert out["y"][b * cfg.outputs:b * cfg.outputs + blk.n_out] == want


@pytest.mark.parametrize("n, levels", [(1, 0), (2, 1), (3, 2), (5, 3), (9, 4)])  # by hand: ceil(log2 n)
def test_accumulate_timing(n, levels, amaranth_sim):
    """The accumulate stage: the partial sums are taken on ``take`` (and may change right
    after), their sum reaches ``acc`` exactly ``levels`` clocks after the stage starts (the
    clocks a tree of registered levels takes, ``adder_levels``), and stays until the next."""
    from hw.layer import Accumulate
    assert adder_levels(n) == levels
    sched = SimpleNamespace(stages={"accumulate": levels}, cout=1, replicas=[0])
    ins = [Signal(signed(12), name=f"in{i}") for i in range(n)]
    acc = Accumulate(sched, {(0, (0, 1)): [[x] for x in ins]}, 12)
    m = Module()
    m.submodules.acc = acc
    rounds = [[10 * i - 3 * n for i in range(n)], [-7 * i + 2 for i in range(n)]]
    seen = []

    async def bench(ctx):
        for vals in rounds:
            for i, v in zip(ins, vals):
                ctx.set(i, v)
            ctx.set(acc.take, 1)
            await ctx.tick()
            ctx.set(acc.take, 0)
            for i in ins:                        # the crossbars' outputs move on
                ctx.set(i, 1000)
            ctx.set(acc.go, 1)                   # the stage starts the clock after take
            for t in range(levels + 3):
                seen.append((t, ctx.get(acc.acc[0][0])))
                await ctx.tick()
                ctx.set(acc.go, 0)
            seen.append(("end", ctx.get(acc.acc[0][0])))

    amaranth_sim(m, bench, timeout_clocks=40)
    first, second = seen[:levels + 4], seen[levels + 4:]
    assert [v for t, v in first if t == "end" or t >= levels] == [sum(rounds[0])] * 4
    assert [v for t, v in second if t != "end" and t < levels] == [sum(rounds[0])] * levels   # held until then
    assert [v for t, v in second if t == "end" or t >= levels] == [sum(rounds[1])] * 4


def test_stage_timer_and_controller_schedule(amaranth_sim):
    """A controller with warm-up steps drives a 3-stage chain: step starts and completion
    times follow ``P + gaps``, ``sum(d)`` later."""
    m = Module()
    rows, cols, wu, ii, iwu, load = 2, 3, 2, 5, 2, 4
    # the fields of a gen.schedule.LayerSchedule the controller reads, set by hand
    sched = SimpleNamespace(load_words=load, row_steps=cols + wu, steps=rows * (cols + wu), out_steps=rows * cols,
                            warmup=wu, interval=ii, interval_warmup=iwu, prologue=0)
    m.submodules.ctrl = ctrl = LayerController(sched)
    s1 = StageTimer(m, ctrl.step_go, 2, "a")
    s2 = StageTimer(m, s1.done, 3, "b")
    m.d.comb += ctrl.last_done.eq(s2.done)
    events = {"go": [], "done": [], "fin": None}

    async def bench(ctx):
        t = 0
        for w in range(load):
            ctx.set(ctrl.load_beat, 1)
            await ctx.tick()
            t += 1
        ctx.set(ctrl.load_beat, 0)
        last_load = t   # the edge that took the last word
        for _ in range(200):
            if ctx.get(ctrl.step_go):
                events["go"].append(t)
            if ctx.get(s2.done):
                events["done"].append(t)
            if ctx.get(ctrl.done):
                events["fin"] = t
                break
            await ctx.tick()
            t += 1
        events["start"] = last_load

    amaranth_sim(m, bench, timeout_clocks=300)
    gaps = [b - a for a, b in zip(events["go"], events["go"][1:])]
    # by hand, per row: 2 warm-up steps 2 clocks apart, then 3 output steps 5 apart
    assert gaps == [2, 2, 5, 5, 5, 2, 2, 5, 5, 5][:-1]
    assert events["go"][0] == events["start"]
    assert len(events["done"]) == 6      # 2 rows x 3 output steps: warm-up steps do not count
    assert events["done"][-1] == events["go"][-1] + 2 + 3   # the two stages' durations


@pytest.mark.parametrize("lo", [0, 3])
def test_saturate_and_clamp_unsigned_every_value(lo, amaranth_sim):
    """The comparator-free clamps against numpy's, for every 8-bit signed value: ``saturate``
    to 5 signed bits, ``clamp_unsigned`` to 4 bits with a low bound of ``lo``."""
    from hw.post import clamp_unsigned, saturate
    m = Module()
    v = Signal(signed(8))
    sat, cl = Signal(signed(5)), Signal(4)
    m.d.comb += [sat.eq(saturate(v, 5)), cl.eq(clamp_unsigned(v, 4, lo))]
    m.d.sync += Signal(name="keep_sync").eq(1)
    got = {}

    async def bench(ctx):
        for x in range(-128, 128):
            ctx.set(v, x)
            got[x] = (ctx.get(sat), ctx.get(cl))

    amaranth_sim(m, bench, timeout_clocks=10)
    xs = np.arange(-128, 128)
    assert [got[x][0] for x in xs] == np.clip(xs, -16, 15).tolist()
    assert [got[x][1] for x in xs] == np.clip(xs, lo, 15).tolist()


def _reorder_case():
    """A 4x6 image cut into a 2x2 grid of 2x3 regions (replica r = (y // 2) * 2 + x // 3, its
    step (y % 2) * 3 + x % 3), two images: the steps the replicas hand on (lane r = replica
    r's pixel of that step) and the pixels in raster order (pixel p of image n: 37 * n + p)."""
    order = [((y // 2) * 2 + x // 3, (y % 2) * 3 + x % 3) for y in range(4) for x in range(6)]
    at = {rs: p for p, rs in enumerate(order)}
    steps = [sum(((37 * n + at[(r, j)]) % 256) << (8 * r) for r in range(4)) for n in range(2) for j in range(6)]
    raster = [(37 * n + p) % 256 for n in range(2) for p in range(24)]
    return order, steps, raster


@pytest.mark.parametrize("latency", [3, 5])
@pytest.mark.parametrize("pace", [1, 3])
def test_raster_reorder_order_and_timing(latency, pace, monkeypatch, amaranth_sim):
    """Pixels leave in raster order, the first image's last one REORDER_LATENCY + 23 * pace
    clocks after the edge its last step was written (gen.timing.reorder_clocks), the
    constant's extra clocks as output registers."""
    from gen import timing
    monkeypatch.setattr(timing, "REORDER_LATENCY", latency)
    order, steps, raster = _reorder_case()
    dut = RasterReorder(8, 4, 6, order, pace)
    got, step_edges, pixel_edges = [], [], []

    async def bench(ctx):
        q = list(steps)
        ctx.set(dut.o.ready, 1)
        for edge in range(1, 400):
            ctx.set(dut.i.valid, int(bool(q)))
            ctx.set(dut.i.payload, q[0] if q else 0)
            if q and ctx.get(dut.i.ready):
                q.pop(0)
                step_edges.append(edge)
            if ctx.get(dut.o.valid):
                got.append(ctx.get(dut.o.payload))
                pixel_edges.append(edge)
            await ctx.tick()
        return

    amaranth_sim(dut, bench, timeout_clocks=500)
    assert got == raster
    assert pixel_edges[23] - step_edges[5] == timing.reorder_clocks(24, pace) == latency + 23 * pace
    assert all(b - a == pace for a, b in zip(pixel_edges[:23], pixel_edges[1:24]))


def test_raster_reorder_under_back_pressure():
    """Random input gaps and output back-pressure: every pixel once, in raster order."""
    order, steps, raster = _reorder_case()
    dut = RasterReorder(8, 4, 6, order, 1)
    assert _stream_through(dut, {"i": steps}, "o", len(raster), ready_prob=0.4, gap_prob=0.3, seed=5) == raster
