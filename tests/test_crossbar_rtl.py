"""Crossbar RTL under cocotb: bit-exact vs the golden model, clocks == gen.timing.crossbar_latency."""
import numpy as np
import pytest
from amaranth.sim import Simulator

from conftest import requires_icarus
from gen.config import CrossbarConfig
from gen.timing import crossbar_latency
from hw.crossbar import Crossbar
from flow.crossbar_check import CrossbarCheck, run_crossbar_check
from sim.golden import crossbar_mvm

CONFIGS = {
    "16x16-cb1": CrossbarConfig(rows=16, cols=16, cell_bits=1),
    "32x32-cb2": CrossbarConfig(rows=32, cols=32, cell_bits=2),
    "32x16-cb4-lossy": CrossbarConfig(rows=32, cols=16, cell_bits=4, adc_bits=5, adc_shift=1, cols_per_adc=4),
}


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


def test_crossbar_backpressure_verilator(sim_cache):
    rep = run_crossbar_check(CrossbarCheck(CONFIGS["32x32-cb2"], vectors=16, seed=2, ready_prob=0.3, gap_prob=0.4),
                             cache_dir=sim_cache)
    _assert_pass(rep, timing=False)
    assert max(rep["latencies"]) > rep["predicted_clocks"], "back-pressure was never applied"


def test_crossbar_gaps_keep_exact_latency(sim_cache):
    rep = run_crossbar_check(CrossbarCheck(CONFIGS["16x16-cb1"], vectors=10, seed=5, gap_prob=0.5), cache_dir=sim_cache)
    _assert_pass(rep)


@requires_icarus
def test_crossbar_icarus(sim_cache):
    rep = run_crossbar_check(CrossbarCheck(CONFIGS["32x16-cb4-lossy"], vectors=8, seed=3, sim="icarus",
                                           reprogram_rows=2), cache_dir=sim_cache)
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

    class OffByOne(hwx.Crossbar):
        def __init__(self, cfg, weights):
            weights = np.array(weights)
            weights[0, 0] = weights[0, 0] + 1 if weights[0, 0] < 127 else weights[0, 0] - 1
            super().__init__(cfg, weights)

    monkeypatch.setattr(chk, "Crossbar", OffByOne)
    rep = run_crossbar_check(CrossbarCheck(CONFIGS["16x16-cb1"], vectors=6, seed=4), cache_dir=sim_cache)
    assert not rep["passed"] and rep["mismatches"] > 0


def _amaranth_mvm(cfg, weights, x):
    """Drive one vector through the Amaranth simulator (no cocotb) and return (result, clocks)."""
    dut = Crossbar(cfg, weights)
    out = {}

    async def tb(ctx):
        ctx.set(dut.o.ready, 1)
        for r in range(cfg.rows):
            ctx.set(dut.i.payload[r], int(x[r]))
        ctx.set(dut.i.valid, 1)
        await ctx.tick()          # accepted on this edge (idle, ready)
        ctx.set(dut.i.valid, 0)
        n = 1
        while not ctx.get(dut.o.valid):
            await ctx.tick()
            n += 1
        out["y"] = [ctx.get(dut.o.payload[o]) for o in range(cfg.outputs)]
        out["clocks"] = n          # edges since acceptance, counting the one that takes the result

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
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


def test_bad_initial_weights():
    with pytest.raises(ValueError, match="do not fit"):
        Crossbar(CrossbarConfig(rows=4, cols=9, cell_bits=1), np.zeros((5, 1), int))
    with pytest.raises(ValueError, match="w_bits"):
        Crossbar(CrossbarConfig(rows=4, cols=9, cell_bits=1), np.full((4, 1), 300))
