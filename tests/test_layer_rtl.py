"""Layer engines (hw.layer.ConvLayerEngine) under cocotb, both mappings: outputs bit-exact vs
sim.golden, measured clocks == gen.perf (engine_clocks = load + layer clocks), feature-map
reads counted (novel: each input pixel once; conventional: up to K*K times)."""
import dataclasses

import numpy as np
import pytest

from conftest import requires_icarus
from gen.config import ChipConfig, CrossbarConfig
from gen.layerspec import parse_layer_spec
from gen.perf import layer_timing
from flow.layer_check import LayerDesign, random_images, run_layer_check, tb_arguments

# 16x16 crossbars, 4-bit cells: 2 columns per weight -> 7 outputs per crossbar; 4 columns per
# ADC -> 8 input cycles * 4 + 2 = 34 clocks per MVM. Small buses so the mappings differ.
XB = CrossbarConfig(rows=16, cols=16, cell_bits=4, cols_per_adc=4)
CHIP = ChipConfig(crossbar=XB, subarrays_per_pe=4, pes_per_tile=9, global_bus_bits=64, tile_bus_bits=64,
                  pe_bus_bits=32)
SMALL = "conv Cin=4 Cout=4 K=3 H=5 W=5 stride=1 pad=1"


def design(spec, mapping, chip=CHIP, dup=1, raw=False, seed=0):
    return LayerDesign(parse_layer_spec(spec), chip, mapping, dup, raw, seed)


def check(d, sim_cache, **kw):
    rep = run_layer_check(d, cache_dir=sim_cache, **kw)
    assert rep["mismatches"] == 0, rep
    # every output pixel, once per tile its channels leave from (from the replica that owns it:
    # a novel replica widened to its neighbours' width also computes some of theirs)
    per_img = sum((y1 - y0) * (x1 - x0) for t in d.sched.tiles for r in {r for r, _, _ in t.out_cols}
                  for y0, y1, x0, x1 in [d.sched.replicas[r].owned])
    assert per_img >= int(np.prod(d.lp.out_shape[1:]))
    assert rep["pixels_checked"] == kw.get("images", 1) * per_img, rep
    if rep["timing_checked"]:
        assert rep["measured_per_image"] and set(rep["measured_per_image"]) == {rep["predicted_clocks"]}, rep
    assert rep["fm_reads"] == rep["expected_fm_reads"], rep
    assert rep["passed"], rep
    # the schedule's count (checked above against the RTL counter) against an independent count
    sc = d.sched
    per_img = rep["fm_reads"] // rep["images"]
    assert per_img == sc.fm_reads
    # the feature-map traffic every report prints is what the fetch stages moved
    assert layer_timing(d.lp, d.chip).traffic["global_in"] == per_img * sc.fm.word_bits
    c, h, w = sc.in_shape
    _, ho, wo = sc.out_shape
    s, k, pad = sc.stride, sc.k, sc.pad
    wpp = -(-c * 8 // min(sc.bus_bits, c * 8))
    if d.lp.mapping == "novel" and d.lp.duplication == 1:
        # every input pixel the layer uses is read exactly once (by each tile: the words of
        # its channels)
        used_r = {y * s + i - pad for y in range(ho) for i in range(k)} & set(range(h))
        used_c = {x * s + j - pad for x in range(wo) for j in range(k)} & set(range(w))
        assert per_img == len(used_r) * len(used_c) * (wpp if len(sc.tiles) == 1 else
                                                       sum(t.pixel_words for t in sc.tiles))
    elif d.lp.mapping == "conventional" and len(sc.tiles) == 1:
        # every real pixel of every window, once per window
        real = sum(1 for y in range(ho) for x in range(wo) for i in range(k) for j in range(k)
                   if 0 <= y * s + i - pad < h and 0 <= x * s + j - pad < w)
        assert per_img == real * wpp
    elif d.lp.mapping == "conventional":
        # each tile reads, for each real pixel of a window, the words of its rows' channels there
        real = [sum(1 for y in range(ho) for x in range(wo)
                    if 0 <= y * s + kp // k - pad < h and 0 <= x * s + kp % k - pad < w) for kp in range(k * k)]
        assert per_img == sum(real[kp] * len(wl) for t in sc.tiles for _, kp, wl in t.reads)
    return rep


# --- fast set ------------------------------------------------------------------------------
# One Verilator build per mapping (the runner caches builds but does not lock them, so two
# xdist workers must not build the same design at once): each test runs all its checks on it.

def test_layer_3x3_conventional_verilator(sim_cache, monkeypatch):
    d = design(SMALL, "conventional")
    assert d.lp.mapping == "conventional"
    check(d, sim_cache, images=2, seed=3)
    # the check must be able to fail: a predicted clock count off by one, and a golden
    # model whose requantization scale differs from the hardware's
    import flow.layer_check as lc
    real = lc.tb_arguments

    def off_by_one(*a, **k):
        args = real(*a, **k)
        args["predicted_clocks"] += 1
        return args

    monkeypatch.setattr(lc, "tb_arguments", off_by_one)
    rep = run_layer_check(d, cache_dir=sim_cache, seed=5)
    assert not rep["passed"] and rep["mismatches"] == 0 and rep["measured_clocks"] == rep["predicted_clocks"] - 1

    def wrong_scale(*a, **k):
        args = real(*a, **k)
        args["params"]["requant"]["m"] //= 2
        return args

    monkeypatch.setattr(lc, "tb_arguments", wrong_scale)
    rep = run_layer_check(d, cache_dir=sim_cache, seed=5)
    assert not rep["passed"] and rep["mismatches"] > 0


def test_layer_3x3_novel_verilator(sim_cache):
    d = design(SMALL, "novel")
    assert d.lp.mapping == "novel"
    check(d, sim_cache, images=2, seed=3)
    # back-pressure: random ready on the output, random gaps on the input
    rep = check(d, sim_cache, images=2, seed=4, ready_prob=0.3, gap_prob=0.4)
    assert not rep["timing_checked"]
    assert max(rep["measured_per_image"]) > rep["predicted_clocks"], "back-pressure never slowed the engine"


def test_layer_novel_stride2_odd_size_verilator(sim_cache):
    """Stride 2, pad 0, input wider and taller than the windows reach (the issue's shape,
    reduced): the unused last column and row are never read (reads == schedule == brute
    force, in check())."""
    d = design("conv Cin=2 Cout=3 K=3 H=5 W=4 stride=2 pad=0", "novel")
    assert d.lp.mapping == "novel" and d.sched.replicas[0].in_cols == (0, 3)
    check(d, sim_cache, images=2, seed=2)


def test_timing_constants_build_the_engine(sim_cache, monkeypatch):
    """The post depth and the feature-map read latency are gen.timing's: patched, the RTL
    grows by exactly what the schedule predicts (measured == predicted, bit-exact)."""
    from gen import timing
    base = design(SMALL, "conventional")
    monkeypatch.setattr(timing, "POST_CLOCKS", timing.POST_CLOCKS + 1)
    monkeypatch.setattr(timing, "FM_READ_LATENCY", timing.FM_READ_LATENCY + 1)
    d = design(SMALL, "conventional")
    # the MVM (37 clocks) sets the step interval, not the window fetch (10) or the post (3):
    # each adds one clock to the fill only
    assert d.sched.interval == base.sched.interval == d.sched.stages["mvm"]
    assert d.predicted_clocks == base.predicted_clocks + 2
    rep = check(d, sim_cache, seed=7)
    assert rep["measured_clocks"] == d.predicted_clocks


@requires_icarus
@pytest.mark.parametrize("mapping", ["conventional", "novel"])
def test_layer_icarus(mapping, sim_cache):
    check(design(SMALL, mapping), sim_cache, sim="icarus", seed=6)


def test_tb_arguments_describe_the_stream():
    d = design(SMALL, "novel")
    args = tb_arguments(d, random_images(d, 1, 0))
    assert len(args["in_words"][0]) == d.sched.load_words == 25          # 32-bit pixels, one word each
    assert sum(len(t["steps"]) for t in args["tiles"]) == 25            # one written step per output pixel
    assert args["predicted_clocks"] == d.sched.load_words + d.sched.clocks


# --- slow set: every case, both mappings ----------------------------------------------------
CHIP25 = dataclasses.replace(CHIP, pes_per_tile=25)
LOSSY = dataclasses.replace(CHIP, crossbar=dataclasses.replace(XB, adc_bits=4, adc_shift=1))
CASES = {
    "3x3-s2": ("conv Cin=4 Cout=6 K=3 H=7 W=7 stride=2 pad=1", CHIP, 1, False),
    "1x1": ("conv Cin=12 Cout=6 K=1 H=4 W=4", CHIP, 1, False),
    "2x2-s2": ("conv Cin=8 Cout=4 K=2 H=6 W=6 stride=2", CHIP, 1, False),
    "5x5": ("conv Cin=2 Cout=3 K=5 H=6 W=6 pad=2", CHIP25, 1, False),
    "odd-channels": ("conv Cin=5 Cout=9 K=3 H=5 W=5 pad=1", CHIP, 1, False),
    "row-blocks": ("conv Cin=20 Cout=4 K=3 H=4 W=4 pad=1", CHIP, 1, False),
    "dup2": ("conv Cin=4 Cout=4 K=3 H=6 W=5 pad=1", CHIP, 2, False),
    # a 2x2 grid over 2x5: columns 3 and 2 wide (the novel 2-wide replicas compute 3 columns)
    "dup4-widths": ("conv Cin=4 Cout=4 K=3 H=2 W=5 pad=1", CHIP, 4, False),
    "lossy-adc": (SMALL, LOSSY, 1, False),
    "raw-output": ("conv Cin=4 Cout=5 K=3 H=4 W=6 pad=0", CHIP, 1, True),
    "s2-odd-issue": ("conv Cin=3 Cout=9 K=3 H=9 W=8 stride=2 pad=0", CHIP, 1, False),
}


@pytest.mark.slow
@pytest.mark.parametrize("mapping", ["conventional", "novel"])
@pytest.mark.parametrize("case", list(CASES))
def test_layer_cases_verilator(case, mapping, sim_cache):
    spec, chip, dup, raw = CASES[case]
    d = design(spec, mapping, chip, dup, raw, seed=len(case))
    if case == "1x1":
        assert d.lp.mapping == "conventional"
        if mapping == "novel":
            assert "1x1" in d.lp.reason
            # the fallback is the conventional engine, Verilog for Verilog (simulated by the
            # conventional case; two workers must not build one design at once)
            assert d.verilog == design(spec, "conventional", chip, dup, raw, seed=len(case)).verilog
            return
    else:
        assert d.lp.mapping == mapping
    if case == "row-blocks":
        assert len({p.rows for p in d.lp.placements}) > 1
    if case == "dup2":
        assert d.lp.duplication == 2
    if case == "dup4-widths":
        assert d.lp.grid == (2, 2) and {x1 - x0 for *_, x0, x1 in d.lp.regions} == {3, 2}
    if case == "lossy-adc":
        assert not chip.crossbar.is_lossless
    check(d, sim_cache, images=1, seed=len(case))


@pytest.mark.slow
def test_layer_fc_verilator(sim_cache):
    d = design("fc in=40 out=9", "novel", raw=True)
    assert d.lp.mapping == "conventional"
    check(d, sim_cache, images=3, seed=8)


@pytest.mark.slow
def test_layer_dup2_backpressure_verilator(sim_cache):
    d = design(CASES["dup2"][0], "novel", dup=2)
    assert len(d.sched.tiles) == 2
    check(d, sim_cache, images=2, seed=9, ready_prob=0.4, gap_prob=0.3)


# --- a replica over several tiles (fast: the RTL corner the chip's big layers use) ----------
MULTI_TILE = {
    # novel: 3 row-blocks x 2 column blocks per kernel position, 18 PEs over 2 tiles; the
    # second reads only the words of its channels (2..4 of 5), the partial sums of one
    # output meet in the adder tree across the tiles, each column block leaves from one
    "novel": ("conv Cin=40 Cout=9 K=3 H=5 W=5 pad=1", CHIP),
    # conventional: 12 row-blocks of the unrolled matrix over 6 one-PE tiles, each reading only
    # the words that hold its rows' channels; the two column blocks leave from two tiles
    "conventional": ("conv Cin=20 Cout=9 K=3 H=5 W=5 pad=1", dataclasses.replace(CHIP, pes_per_tile=1)),
}


@pytest.mark.parametrize("mapping", list(MULTI_TILE))
def test_layer_replica_over_tiles_verilator(mapping, sim_cache):
    spec, chip = MULTI_TILE[mapping]
    d = design(spec, mapping, chip, seed=4)
    sc = d.sched
    assert d.lp.mapping == mapping and len(sc.replicas) == 1 and len(sc.tiles) >= 2
    assert sc.engine_refusal() is None
    full = sc.fm.wpp * (1 if sc.novel else 9)
    assert any(t.pixel_words < full for t in sc.tiles)        # a tile reads part of a pixel
    assert sum(1 for t in sc.tiles if t.out_words) == 2
    check(d, sim_cache, images=2, seed=5)
