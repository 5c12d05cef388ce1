"""Crossbar RTL under cocotb: bit-exact vs the golden model, clocks == gen.timing.crossbar_latency."""
from pathlib import Path

import numpy as np
import pytest

from conftest import drive_mvm, requires_icarus, run_amaranth
import gen.timing
from gen.cells import CellArray, cell_levels
from gen.config import CrossbarConfig
from gen.timing import crossbar_latency
from hw.crossbar import MIN_PIPELINE_CLOCKS, PARTIAL_ROWS, Crossbar
from flow.crossbar_check import CrossbarCheck, run_crossbar_check
from sim.golden import crossbar_mvm

CONFIGS = {
    "16x16-cb1": CrossbarConfig(rows=16, cols=16, cell_bits=1),
    "32x32-cb2": CrossbarConfig(rows=32, cols=32, cell_bits=2),
    "32x16-cb4-lossy": CrossbarConfig(rows=32, cols=16, cell_bits=4, adc_bits=5, adc_shift=1, cols_per_adc=4),
}


#: One small crossbar per group of corners (each run a few seconds), every corner covered
#: (see test_corners_cover_every_corner): one ADC per column, one ADC for all columns,
#: dac_bits > 1, a lossy coarse ADC, rows not a multiple of PARTIAL_ROWS, every cell_bits.
CORNERS = {
    # cols_per_adc = 1 (9 ADCs: no column multiplexer), 11 rows = 8 + 3, 2-bit DAC, 1-bit cells
    "cpa1-rows11-dac2-cb1": CrossbarConfig(rows=11, cols=9, cell_bits=1, dac_bits=2, cols_per_adc=1),
    # cols_per_adc = cols (one ADC), 4-bit DAC, 4-bit cells, lossy ADC (7 bits, step 4: saturates)
    "oneadc-dac4-cb4-lossy": CrossbarConfig(rows=6, cols=5, cell_bits=4, dac_bits=4, adc_bits=7, adc_shift=2,
                                            cols_per_adc=5),
    # 2-bit cells, 9 rows = 8 + 1, 3 columns per ADC with a short last group, coarse step 2
    "cb2-rows9-cpa3-shift1": CrossbarConfig(rows=9, cols=10, cell_bits=2, adc_shift=1, cols_per_adc=3),
}


def _allowed_cell_bits():
    """Every cell_bits gen.config accepts (probing it, so a newly allowed width is covered)."""
    def ok(b):
        try:
            CrossbarConfig(rows=2, cols=64, cell_bits=b, cols_per_adc=1)
            return True
        except ValueError:
            return False
    return {b for b in (1, 2, 3, 4, 8) if ok(b)}


def test_corners_cover_every_corner():
    cfgs = list(CORNERS.values())
    assert any(c.cols_per_adc == 1 for c in cfgs)
    assert any(c.cols_per_adc == c.cols for c in cfgs)
    assert {2, 4} <= {c.dac_bits for c in cfgs}
    assert any(c.adc_shift > 0 and c.adc_resolution < c.lossless_adc_bits for c in cfgs)
    assert any(c.rows % PARTIAL_ROWS for c in cfgs)
    assert {c.cell_bits for c in cfgs} == _allowed_cell_bits()


def _assert_pass(rep, timing=True):
    assert rep["mismatches"] == 0, rep
    assert rep["delivered"] == rep["vectors"], rep
    if timing:
        assert rep["latencies"] == [rep["predicted_clocks"]], rep
    assert rep["passed"], rep


@pytest.mark.parametrize("name", list(CONFIGS))
def test_crossbar_verilator(name, sim_cache):
    rep = run_crossbar_check(CrossbarCheck(CONFIGS[name], vectors=12, seed=1, reprogram_rows=3), cache_dir=sim_cache)
    _assert_pass(rep)


@pytest.mark.parametrize("name", list(CORNERS))
def test_crossbar_corner(name, sim_cache):
    """Bit-exact vs the golden model and clocks == crossbar_latency, write port included."""
    rep = run_crossbar_check(CrossbarCheck(CORNERS[name], vectors=8, seed=9, reprogram_rows=2), cache_dir=sim_cache)
    _assert_pass(rep)


def test_crossbar_backpressure_verilator(sim_cache):
    rep = run_crossbar_check(CrossbarCheck(CONFIGS["32x32-cb2"], vectors=16, seed=2, ready_prob=0.3, gap_prob=0.4),
                             cache_dir=sim_cache)
    _assert_pass(rep, timing=False)
    assert max(rep["latencies"]) > rep["predicted_clocks"], "back-pressure was never applied"


def test_crossbar_gaps_keep_exact_latency(sim_cache):
    rep = run_crossbar_check(CrossbarCheck(CONFIGS["16x16-cb1"], vectors=10, seed=5, gap_prob=0.5), cache_dir=sim_cache)
    _assert_pass(rep)


@requires_icarus
@pytest.mark.parametrize("cfg", [CONFIGS["32x16-cb4-lossy"], CORNERS["cpa1-rows11-dac2-cb1"]], ids=["cb4-lossy", "cpa1"])
def test_crossbar_icarus(cfg, sim_cache):
    rep = run_crossbar_check(CrossbarCheck(cfg, vectors=8, seed=3, sim="icarus", reprogram_rows=2), cache_dir=sim_cache)
    _assert_pass(rep)


@pytest.mark.slow
@pytest.mark.parametrize("cfg", [
    CrossbarConfig(rows=64, cols=64, cell_bits=2),
    CrossbarConfig(rows=20, cols=19, cell_bits=2, dac_bits=2, cols_per_adc=3),
    CrossbarConfig(rows=8, cols=9, cell_bits=1, cols_per_adc=1, adc_bits=2),
    CrossbarConfig(rows=16, cols=24, cell_bits=4, dac_bits=4, adc_bits=6, adc_shift=2, cols_per_adc=24),
])
def test_crossbar_more_configs(cfg, sim_cache):
    _assert_pass(run_crossbar_check(CrossbarCheck(cfg, vectors=10, seed=9, reprogram_rows=2), cache_dir=sim_cache))


def test_testbench_detects_wrong_weights(sim_cache, monkeypatch):
    """The check must be able to fail: build the RTL from weights that differ in one cell."""
    import hw.crossbar as hwx
    import flow.crossbar_check as chk

    from gen.cells import CellArray

    class OffByOne(hwx.Crossbar):
        """One cell of row 0 one level off (the lowest slice of its first weight)."""
        def __init__(self, cfg, cells):
            g = np.array(cells.conductances())
            step = 1 << cfg.g_frac_bits
            g[0, 0] = g[0, 0] + step if g[0, 0] + step <= cfg.g_max else g[0, 0] - step
            super().__init__(cfg, CellArray.from_conductances(g, cfg))

    monkeypatch.setattr(chk, "Crossbar", OffByOne)
    rep = run_crossbar_check(CrossbarCheck(CONFIGS["16x16-cb1"], vectors=6, seed=4), cache_dir=sim_cache)
    assert not rep["passed"] and rep["mismatches"] > 0


def _amaranth_mvm(cfg, weights, x):
    """Drive one vector through the Amaranth simulator (no cocotb) and return (result, clocks)."""
    dut = Crossbar(cfg, weights)
    out = {}

    async def tb(ctx):
        out["y"], out["clocks"] = await drive_mvm(ctx, dut, x)

    run_amaranth(dut, tb)
    return out["y"], out["clocks"]


@pytest.mark.parametrize("cfg", [CrossbarConfig(rows=4, cols=9, cell_bits=2, cols_per_adc=3),
                                 CrossbarConfig(rows=6, cols=5, cell_bits=4, adc_bits=2, cols_per_adc=2)])
def test_crossbar_amaranth_sim(cfg):
    rng = np.random.default_rng(0)
    w = rng.integers(-128, 128, (cfg.rows, cfg.outputs))
    x = rng.integers(0, 256, cfg.rows)
    y, clocks = _amaranth_mvm(cfg, w, x)
    assert y == crossbar_mvm(x, w, cfg).tolist()
    assert clocks == crossbar_latency(cfg)


def test_programmed_cells_survive_a_reset():
    """Cells are programmed through `w` and, like RRAM, keep them through a reset: a crossbar
    built with no weights, programmed row by row, reset, then multiplies by what was written."""
    from amaranth.hdl import ResetInserter, Signal
    from amaranth.utils import ceil_log2

    cfg = CrossbarConfig(rows=9, cols=10, cell_bits=2, cols_per_adc=3)
    rng = np.random.default_rng(3)
    w = rng.integers(-128, 128, (cfg.rows, cfg.outputs))
    x = rng.integers(0, 256, cfg.rows)
    rows = CellArray.from_weights(w, cfg).rows
    rst = Signal()
    xb = Crossbar(cfg)                      # all cells zero until programmed
    row_bits = max(1, ceil_log2(cfg.rows))
    out = {}

    async def tb(ctx):
        for r, cells in enumerate(rows):
            ctx.set(xb.w.payload.as_value(), r | (cells << row_bits))
            ctx.set(xb.w.valid, 1)
            await ctx.tick()
        ctx.set(xb.w.valid, 0)
        ctx.set(rst, 1)
        await ctx.tick().repeat(2)
        ctx.set(rst, 0)
        out["y"], _ = await drive_mvm(ctx, xb, x)

    run_amaranth(ResetInserter(rst)(xb), tb)
    assert out["y"] == crossbar_mvm(x, w, cfg).tolist()
    assert any(out["y"])


# --- the pipeline is built from gen.timing.CROSSBAR_PIPELINE_CLOCKS ----------------------
@pytest.mark.parametrize("depth", [MIN_PIPELINE_CLOCKS, MIN_PIPELINE_CLOCKS + 1, MIN_PIPELINE_CLOCKS + 2])
def test_pipeline_depth_follows_the_constant(depth, monkeypatch):
    """Changing the timing constant changes the RTL: measured clocks == crossbar_latency (patched)."""
    monkeypatch.setattr(gen.timing, "CROSSBAR_PIPELINE_CLOCKS", depth)
    cfg = CrossbarConfig(rows=9, cols=9, cell_bits=1, dac_bits=2, cols_per_adc=3)
    rng = np.random.default_rng(depth)
    w = rng.integers(-128, 128, (cfg.rows, cfg.outputs))
    x = rng.integers(0, 256, cfg.rows)
    y, clocks = _amaranth_mvm(cfg, w, x)
    assert y == crossbar_mvm(x, w, cfg).tolist()
    assert clocks == crossbar_latency(cfg) == cfg.conversion_clocks + depth


def test_pipeline_depth_follows_the_constant_verilator(sim_cache, monkeypatch):
    """The same through Verilog and cocotb, back to back: the testbench's prediction is the patched one."""
    monkeypatch.setattr(gen.timing, "CROSSBAR_PIPELINE_CLOCKS", MIN_PIPELINE_CLOCKS + 2)
    cfg = CORNERS["cpa1-rows11-dac2-cb1"]
    rep = run_crossbar_check(CrossbarCheck(cfg, vectors=6, seed=7), cache_dir=sim_cache)
    _assert_pass(rep)
    assert rep["measured_clocks"] == cfg.conversion_clocks + MIN_PIPELINE_CLOCKS + 2


def test_pipeline_shorter_than_the_structure_is_refused(monkeypatch):
    from amaranth.hdl import Fragment
    monkeypatch.setattr(gen.timing, "CROSSBAR_PIPELINE_CLOCKS", MIN_PIPELINE_CLOCKS - 1)
    with pytest.raises(ValueError, match="CROSSBAR_PIPELINE_CLOCKS=4 is below"):
        Fragment.get(Crossbar(CrossbarConfig(rows=4, cols=9, cell_bits=1)), None)


# --- cell encoding: gen.cells, read by the RTL and the golden model alike ----------------------
def test_encode_row_by_hand():
    """8-bit weights in 1-bit cells: u = w + 128 one bit per column, LSB first; column 8 is the reference."""
    from hw.crossbar import encode_row     # re-exported from gen.cells
    cfg = CrossbarConfig(rows=2, cols=9, cell_bits=1, cols_per_adc=1)
    assert encode_row([1], cfg) == 0b1_1000_0001       # u = 129
    assert encode_row([-2], cfg) == 0b1_0111_1110      # u = 126
    assert encode_row([], cfg) == 0b1_1000_0000        # missing output: w = 0, u = 128
    cfg2 = CrossbarConfig(rows=2, cols=7, cell_bits=2, cols_per_adc=1)   # 1 output, columns 4, 5 unused
    assert encode_row([-128], cfg2) == 0b01_00_00_00_00_00_00        # u = 0; reference (column 6) level 1
    assert cell_levels(np.array([[-1]]), cfg2).tolist() == [[[3, 3, 3, 1]]]   # u = 127


def test_bad_initial_weights_are_refused_in_gen():
    cfg = CrossbarConfig(rows=4, cols=9, cell_bits=1)
    with pytest.raises(ValueError, match="does not fit a crossbar of 4 rows x 1 outputs"):
        CellArray.from_weights(np.zeros((5, 1), int), cfg)
    with pytest.raises(ValueError, match=r"\[-128, 127\]"):
        CellArray.from_weights(np.full((4, 1), 300), cfg)
    with pytest.raises(ValueError, match="integer"):
        CellArray.from_weights(np.full((4, 1), 0.5), cfg)


def test_crossbar_takes_a_cell_array():
    cfg = CrossbarConfig(rows=4, cols=9, cell_bits=1, cols_per_adc=1)
    w = np.array([[5], [-7], [100], [-128]])
    x = np.array([3, 200, 17, 255])
    y, _ = _amaranth_mvm(cfg, CellArray.from_weights(w, cfg), x)
    assert y == crossbar_mvm(x, w, cfg).tolist()


def test_waves_land_next_to_the_design_as_fst_where_lz4_is(tmp_path, sim_cache):
    """`--waves`: FST from Verilator where the lz4 headers are (`make tools` installs them),
    VCD otherwise; moved out of the cache into the folder asked for. FST is a gzip/lz4 block
    file with a 0x00 header block; a VCD is text naming the design's signals."""
    from sim.tools import have_fst
    cfg = CrossbarConfig(rows=8, cols=8, cell_bits=2)
    rep = run_crossbar_check(CrossbarCheck(cfg, vectors=3, seed=4, waves=True), cache_dir=sim_cache,
                             waves_dir=tmp_path)
    _assert_pass(rep)
    wave = Path(rep["waves"])
    assert wave.parent == tmp_path and wave.stat().st_size > 0
    if have_fst():
        assert wave.suffix == ".fst" and wave.read_bytes()[0] == 0
    else:
        assert wave.suffix == ".vcd" and "$var" in wave.read_text() and "busy" in wave.read_text()
