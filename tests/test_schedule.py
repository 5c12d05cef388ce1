"""gen.schedule: the one schedule of a layer, checked against independent counts.

The feature-map read counts are recounted here by brute force over the data flow DESIGN.md
§4 describes (conventional: every real pixel of every window; novel: every input pixel a
replica's windows cover, once), over stride / padding / odd sizes / duplication; the RTL's
read counter is checked against the same schedule in tests/test_layer_rtl.py.
"""
import dataclasses

import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st

from gen import timing
from gen.config import ChipConfig, CrossbarConfig
from gen.layerspec import LayerSpec, layer_plan
from gen.perf import layer_timing
from gen.schedule import schedule_layer

XB = CrossbarConfig(rows=16, cols=16, cell_bits=4, cols_per_adc=4)


def chip(bus: int, ppt: int = 25) -> ChipConfig:
    return ChipConfig(crossbar=XB, subarrays_per_pe=4, pes_per_tile=ppt, global_bus_bits=bus, tile_bus_bits=64,
                      pe_bus_bits=32)


def brute_reads(mapping, cin, k, h, w, s, pad, regions, bus, a=8):
    wpp = -(-cin * a // min(bus, cin * a))
    total = 0
    for (y0, y1, x0, x1) in regions:
        if mapping == "conventional":
            total += wpp * sum(1 for y in range(y0, y1) for x in range(x0, x1) for i in range(k) for j in range(k)
                               if 0 <= y * s + i - pad < h and 0 <= x * s + j - pad < w)
        else:
            pix = {(y * s + i - pad, x * s + j - pad) for y in range(y0, y1) for x in range(x0, x1)
                   for i in range(k) for j in range(k)}
            total += wpp * sum(1 for (yy, xx) in pix if 0 <= yy < h and 0 <= xx < w)
    return total


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cin=st.integers(1, 20), cout=st.integers(1, 9), k=st.integers(1, 5), h=st.integers(1, 12),
       w=st.integers(1, 12), stride=st.sampled_from([1, 2]), pad=st.integers(0, 2),
       mapping=st.sampled_from(["conventional", "novel"]), dup=st.integers(1, 4),
       bus=st.sampled_from([16, 32, 64]))
def test_fm_reads_equal_an_independent_count(cin, cout, k, h, w, stride, pad, mapping, dup, bus):
    if k > h + 2 * pad or k > w + 2 * pad or pad >= k:
        return
    spec = LayerSpec("conv", cin, cout, k, h, w, stride, pad)
    _, lp = layer_plan(spec, chip(bus), mapping, dup)
    sc = schedule_layer(lp, chip(bus))
    regions = lp.regions
    if lp.mapping == "novel":     # novel replicas all compute the widest region's width, ending where theirs ends
        wide = max(x1 - x0 for *_, x0, x1 in regions)
        regions = [(y0, y1, x1 - wide, x1) for y0, y1, _, x1 in regions]
    brute = brute_reads(lp.mapping, cin, k, h, w, stride, pad, regions, bus)
    if all(sum(r.index in t.replicas for t in sc.tiles) == 1 for r in sc.replicas):
        assert sc.fm_reads == brute           # one tile per replica: what the engines build
    else:
        # a replica over several tiles: each tile fetches the window rows it holds itself,
        # so words holding rows of two tiles are read by both
        assert sc.fm_reads >= brute
    # the traffic the reports print is what the fetch stages move
    lt = layer_timing(lp, chip(bus))
    assert lt.traffic["global_in"] == sc.fm_reads * min(bus, cin * 8)
    assert sc.steps == max(r.steps for r in sc.replicas)
    if lp.mapping == "novel":
        # every output row: the window's first columns enter in warm-up steps of s columns
        assert sc.warmup * stride >= k - stride > (sc.warmup - 1) * stride


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(k=st.integers(1, 3), h=st.integers(1, 9), w=st.integers(1, 9), mapping=st.sampled_from(["conventional", "novel"]),
       dup=st.integers(1, 12))
# grids whose columns differ in width: 1x2 over 5 columns, 3x2 over 3x5, 4x3 over 8x8, 3x2 over 7x7
@example(k=3, h=1, w=5, mapping="novel", dup=2)
@example(k=3, h=3, w=5, mapping="novel", dup=6)
@example(k=3, h=8, w=8, mapping="novel", dup=12)
@example(k=3, h=7, w=7, mapping="conventional", dup=6)
def test_replicas_own_every_output_pixel_once(k, h, w, mapping, dup):
    """Whatever the grid: the owned rectangles partition the output; each replica computes a
    rectangle holding its own, on its rows and ending at its right edge, of one common width
    for the novel mapping (its replicas share one step schedule); and over the output steps
    the layer check reads (``step_outputs``) every output pixel comes exactly once, from
    its owner, at the step that computes it."""
    spec = LayerSpec("conv", 4, 4, k, h, w, 1, k // 2)
    _, lp = layer_plan(spec, chip(32), mapping, dup)
    sc = schedule_layer(lp, chip(32))
    _, ho, wo = sc.out_shape
    owned = [r.owned for r in sc.replicas]
    assert sorted((y, x) for y0, y1, x0, x1 in owned for y in range(y0, y1) for x in range(x0, x1)) == \
        [(y, x) for y in range(ho) for x in range(wo)]
    for r in sc.replicas:
        (y0, y1, x0, x1), (oy0, oy1, ox0, ox1) = r.region, r.owned
        assert (y0, y1, x1) == (oy0, oy1, ox1) and 0 <= x0 <= ox0
    if lp.mapping == "novel":
        assert len({r.region[3] - r.region[2] for r in sc.replicas}) == 1
    for t, tile in enumerate(sc.tiles):
        if not tile.written_steps:
            continue
        seen = []
        for j in range(tile.written_steps):
            for px in sc.step_outputs(t, j):
                if px is not None:
                    rep, y, x = px
                    y0, _, x0, x1 = sc.replicas[rep].region
                    assert j == (y - y0) * (x1 - x0) + (x - x0)
                    seen.append((rep, y, x))
        assert sorted(seen) == sorted((r, y, x) for r in tile.replicas for y0, y1, x0, x1 in [owned[r]]
                                      for y in range(y0, y1) for x in range(x0, x1))


def test_issue_shape_novel_stride2_odd_height():
    """conv Cin=3 Cout=9 K=3 H=9 W=8 stride=2 pad=0: the last input column (7) is in no
    window; the prologue used to read it (64 reads where 63 are needed)."""
    spec = LayerSpec("conv", 3, 9, 3, 9, 8, 2, 0)
    _, lp = layer_plan(spec, chip(64, 9), "novel")
    sc = schedule_layer(lp, chip(64, 9))
    assert lp.mapping == "novel"
    assert sc.replicas[0].in_cols == (0, 7) and sc.replicas[0].in_rows == (0, 9)
    assert sc.fm_reads == 9 * 7 == 63           # 9 rows x 7 columns, one 24-bit word per pixel


def test_issue_traffic_figures():
    """conv Cin=4 Cout=4 K=3 H=5 W=5 pad=1, 64-bit bus: the reads the RTL counts (169 words
    of 32 bits conventional, 25 novel) are the reported feature-map traffic."""
    c = chip(64, 9)
    spec = LayerSpec("conv", 4, 4, 3, 5, 5, 1, 1)
    for mapping, reads in (("conventional", 169), ("novel", 25)):
        _, lp = layer_plan(spec, c, mapping)
        lt = layer_timing(lp, c)
        assert lt.schedule.fm_reads == reads and lt.traffic["global_in"] == reads * 32


def test_timing_constants_reach_the_schedule(monkeypatch):
    c = chip(64, 9)
    _, lp = layer_plan(LayerSpec("conv", 4, 4, 3, 5, 5, 1, 1), c, "novel")
    base = schedule_layer(lp, c)
    monkeypatch.setattr(timing, "POST_CLOCKS", timing.POST_CLOCKS + 2)
    monkeypatch.setattr(timing, "FM_READ_LATENCY", timing.FM_READ_LATENCY + 1)
    monkeypatch.setattr(timing, "CROSSBAR_PIPELINE_CLOCKS", timing.CROSSBAR_PIPELINE_CLOCKS + 1)
    sc = schedule_layer(lp, c)
    assert sc.stages["post"] == base.stages["post"] + 2
    assert sc.stages["gbus_in"] == base.stages["gbus_in"] + 1
    assert sc.stages["mvm"] == base.stages["mvm"] + 1
    assert sc.prologue == base.prologue + 1


def test_engine_refusals_come_from_the_schedule():
    c = dataclasses.replace(chip(64, 9), crossbar=dataclasses.replace(XB, rows=8))
    _, lp = layer_plan(LayerSpec("conv", 40, 4, 3, 5, 5, 1, 1), c, "novel")
    sc = schedule_layer(lp, c)
    assert lp.n_tiles > 1 and sc.engine_refusal() is None      # a replica over several tiles is built
    # each tile reads the words of its channels only, and the column blocks leave from one tile each
    assert any(t.pixel_words < sc.fm.wpp for t in sc.tiles) and all(t.pixel_words <= sc.fm.wpp for t in sc.tiles)
    assert sorted(c for t in sc.tiles for _, c0, c1 in t.out_cols for c in range(c0, c1)) == list(range(4))
    _, lp = layer_plan(LayerSpec("conv", 4, 4, 3, 5, 5, 1, 1), chip(64, 9), "novel", 2)
    assert schedule_layer(lp, chip(64, 9)).engine_refusal() is None


def test_schedule_rejects_weightless_layers():
    from gen.mapping import map_network
    from gen.network import zoo
    plan = map_network(zoo("resnet20"), chip(64, 9))
    pool = next(lp for lp in plan.layers if not lp.has_weights)
    with pytest.raises(ValueError, match="no weights"):
        schedule_layer(pool, chip(64, 9))
