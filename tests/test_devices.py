"""Non-ideal cells (DESIGN.md §3): g_frac_bits, the device model's pinned draws, the golden model
with conductance maps, the crossbar RTL holding a faulty map (Amaranth sim here, Verilator below).

Expected values come from hand calculations or from loop-by-loop readings of §3 written here,
never from the code under test.
"""
from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
from conftest import drive_mvm, requires_icarus, run_amaranth

from gen.cells import CellArray, cell_levels, encode_row, ideal_conductances
from gen.config import ChipConfig, CrossbarConfig
from gen.devices import DeviceModel, conductance_map, crossbar_conductances, plan_conductances
from gen.mapping import map_network
from sim import golden


# --- oracles ------------------------------------------------------------------------------
def _levels_by_hand(w, cfg):
    """Ideal cell levels ``[rows, cols]`` of weight block ``w``, offset binary sliced by hand."""
    lv = [[0] * cfg.cols for _ in range(cfg.rows)]
    for r in range(cfg.rows):
        for o in range(cfg.outputs):
            u = (int(w[r][o]) if r < len(w) and o < len(w[0]) else 0) + 2 ** (cfg.w_bits - 1)
            for k in range(cfg.slices):
                lv[r][o * cfg.slices + k] = (u // 2 ** (k * cfg.cell_bits)) % 2 ** cfg.cell_bits
        lv[r][cfg.cols - 1] = 1
    return lv


def _mvm_by_hand(xv, g, n_out, cfg):
    """§3 with conductances, loop by loop: S = Σ x_t·g, q = min(S >> (F+shift), max) << shift."""
    F = cfg.g_frac_bits
    pc = [0] * cfg.cols
    for t in range(cfg.a_bits // cfg.dac_bits):
        xt = [(int(v) // 2 ** (t * cfg.dac_bits)) % 2 ** cfg.dac_bits for v in xv]
        for c in range(cfg.cols):
            s = sum(xt[r] * int(g[r][c]) for r in range(len(xt)))
            pc[c] += (min(s // 2 ** (F + cfg.adc_shift), 2 ** cfg.adc_resolution - 1) * 2 ** cfg.adc_shift) \
                * 2 ** (t * cfg.dac_bits)
    return [sum(pc[o * cfg.slices + k] * 2 ** (k * cfg.cell_bits) for k in range(cfg.slices))
            - 2 ** (cfg.w_bits - 1) * pc[cfg.cols - 1] for o in range(n_out)]


def _map_by_hand(levels, cfg, m: DeviceModel, index):
    """The pinned draws of §3, cell by cell: u then n, row-major, from default_rng([seed, index])."""
    rng = np.random.default_rng([m.seed, index])
    u = rng.random((cfg.rows, cfg.cols)).tolist()
    n = rng.standard_normal((cfg.rows, cfg.cols)).tolist()
    F, top = cfg.g_frac_bits, 2 ** (cfg.cell_bits + cfg.g_frac_bits) - 1
    g = [[0] * cfg.cols for _ in range(cfg.rows)]
    for r in range(cfg.rows):
        for c in range(cfg.cols):
            if u[r][c] < m.stuck_at_0:
                g[r][c] = 0
            elif u[r][c] < m.stuck_at_0 + m.stuck_at_1:
                g[r][c] = (2 ** cfg.cell_bits - 1) * 2 ** F
            else:
                v = (levels[r][c] + m.variation * n[r][c]) * (m.time ** -m.drift_nu)
                g[r][c] = max(0, min(top, round(v * 2 ** F)))      # Python's round: half to even
    return g


# --- config -------------------------------------------------------------------------------
def test_g_frac_bits_config():
    assert CrossbarConfig().g_frac_bits == 0
    cfg = CrossbarConfig(rows=32, cols=32, cell_bits=2, g_frac_bits=3)
    assert (cfg.g_bits, cfg.g_max) == (5, 31)
    # §3: bit length of (rows·(2**(cell_bits+F) − 1)·(2**dac_bits − 1)) >> F = 32·31 >> 3 = 124 -> 7
    assert cfg.lossless_adc_bits == 7 and cfg.is_lossless
    assert CrossbarConfig(rows=32, cols=32, cell_bits=2).lossless_adc_bits == 7        # 96 -> 7
    assert CrossbarConfig(rows=4, cols=5, cell_bits=4, g_frac_bits=2, cols_per_adc=1).lossless_adc_bits == 6   # 4·63 >> 2 = 63
    assert CrossbarConfig.from_dict({"g_frac_bits": 2}).g_frac_bits == 2
    for bad in (-1, 9, 1.5, True, "2"):
        with pytest.raises(ValueError, match=r"^g_frac_bits=.* is not allowed: g_frac_bits must be"):
            CrossbarConfig(g_frac_bits=bad)


def test_g_frac_bits_toml(tmp_path):
    p = tmp_path / "x.toml"
    p.write_text("[crossbar]\nrows = 8\ncols = 9\ng_frac_bits = 4\n")
    assert CrossbarConfig.from_toml(p).g_frac_bits == 4


def test_widths_hold_any_conductances():
    """dot_bits holds the extremes a device model can produce: every data cell and every
    reference cell at g_max (reference stuck at 1 is the most negative result)."""
    for cfg in (CrossbarConfig(rows=6, cols=5, cell_bits=4, g_frac_bits=2, cols_per_adc=1),
                CrossbarConfig(rows=8, cols=9, cell_bits=2), CrossbarConfig(rows=5, cols=9, cell_bits=1, dac_bits=2)):
        x = np.full((1, cfg.rows), 2 ** cfg.a_bits - 1)
        hi, lo = np.full((cfg.rows, cfg.cols), cfg.g_max), np.zeros((cfg.rows, cfg.cols), dtype=np.int64)
        lo[:, -1] = cfg.g_max
        hi[:, -1] = 0
        w = np.zeros((cfg.rows, cfg.outputs), dtype=np.int64)
        top = golden.crossbar_mvm(x, w, cfg, conductances=hi).max()
        bottom = golden.crossbar_mvm(x, w, cfg, conductances=lo).min()
        assert -(1 << (cfg.dot_bits - 1)) <= bottom and top < (1 << (cfg.dot_bits - 1))
        assert (top, bottom) == (cfg.dot_max, cfg.dot_min)


# --- cells --------------------------------------------------------------------------------
def test_cells_with_fraction_bits_by_hand():
    cfg = CrossbarConfig(rows=2, cols=5, cell_bits=2, g_frac_bits=3, cols_per_adc=1)    # 4 slices + reference
    # w = 1: u = 129 = 0b10_00_00_01 -> levels 1, 0, 0, 2; reference 1; each << 3, 5 bits a cell
    assert encode_row([1], cfg) == (1 << 3) | (2 << 3) << 15 | (1 << 3) << 20
    ca = CellArray.from_weights([[1], [-128]], cfg)
    np.testing.assert_array_equal(ca.conductances(), [[8, 0, 0, 16, 8], [0, 0, 0, 0, 8]])
    g = np.array([[31, 0, 7, 16, 8], [1, 2, 3, 4, 5]])
    np.testing.assert_array_equal(CellArray.from_conductances(g, cfg).conductances(), g)
    with pytest.raises(ValueError, match="conductances"):
        CellArray.from_conductances(g + 1, cfg)               # 32 does not fit 5 bits
    with pytest.raises(ValueError, match="conductances"):
        CellArray.from_conductances(g[:, :4], cfg)


# --- device model -------------------------------------------------------------------------
@pytest.mark.parametrize("kw, field", [
    ({"stuck_at_0": -0.1}, "stuck_at_0"), ({"stuck_at_1": 1.5}, "stuck_at_1"),
    ({"stuck_at_0": 0.6, "stuck_at_1": 0.6}, "stuck_at_0"), ({"variation": -1}, "variation"),
    ({"variation": float("nan")}, "variation"), ({"drift_nu": -0.1}, "drift_nu"), ({"time": 0}, "time"),
    ({"time": float("inf")}, "time"), ({"seed": -1}, "seed"), ({"seed": 1.5}, "seed"),
    ({"ref_column": 1}, "ref_column"), ({"variation": "0.1"}, "variation")])
def test_device_model_refuses_bad_values(kw, field):
    with pytest.raises(ValueError, match=rf"^{field}=.* is not allowed: .*") as e:
        DeviceModel(**kw)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("F", [0, 3])
@pytest.mark.parametrize("m", [
    DeviceModel(stuck_at_0=0.1, stuck_at_1=0.05, variation=0.3, seed=7),
    DeviceModel(variation=0.2, drift_nu=0.06, time=1e4, seed=1),
    DeviceModel(stuck_at_0=0.02, variation=0.1, drift_nu=0.1, time=3.0, ref_column=False, seed=11)])
def test_maps_follow_the_pinned_draws(m, F):
    cfg = CrossbarConfig(rows=7, cols=9, cell_bits=2, g_frac_bits=F)
    w = np.random.default_rng(0).integers(-128, 128, (6, cfg.outputs))
    want = _map_by_hand(_levels_by_hand(w, cfg), cfg, m, index=4)
    if not m.ref_column:
        for row in want:
            row[-1] = 1 << F
    np.testing.assert_array_equal(crossbar_conductances(w, cfg, m, 4), want)


def test_stuck_and_drift_by_hand():
    cfg = CrossbarConfig(rows=3, cols=5, cell_bits=2, g_frac_bits=2, cols_per_adc=5)
    lv = np.array([[0, 1, 2, 3, 1]] * 3)
    assert (conductance_map(lv, cfg, DeviceModel(stuck_at_0=1.0)) == 0).all()
    assert (conductance_map(lv, cfg, DeviceModel(stuck_at_1=1.0)) == 12).all()      # 3 << 2
    # drift only: t = 10 s, nu = 0.1: factor 10**-0.1 = 0.794; g = rint(level · 0.794 · 4)
    g = conductance_map(lv, cfg, DeviceModel(drift_nu=0.1, time=10.0))
    assert g[0].tolist() == [0, 3, 6, 10, 3]           # 0, 3.18, 6.35, 9.53, 3.18
    assert math.isclose(DeviceModel(drift_nu=0.1, time=10.0).drift_factor, 10 ** -0.1)


def test_seeds_indices_and_rates():
    cfg = CrossbarConfig(rows=16, cols=17, cell_bits=2, g_frac_bits=2)
    w = np.random.default_rng(1).integers(-128, 128, (16, cfg.outputs))
    a = crossbar_conductances(w, cfg, DeviceModel(stuck_at_0=0.05, variation=0.2, seed=3), 0)
    np.testing.assert_array_equal(a, crossbar_conductances(w, cfg, DeviceModel(stuck_at_0=0.05, variation=0.2,
                                                                                   seed=3), 0))
    assert (a != crossbar_conductances(w, cfg, DeviceModel(stuck_at_0=0.05, variation=0.2, seed=4), 0)).any()
    assert (a != crossbar_conductances(w, cfg, DeviceModel(stuck_at_0=0.05, variation=0.2, seed=3), 1)).any()
    # raising a rate only adds faults: every cell stuck at 1 % is stuck at 5 %
    s1 = crossbar_conductances(w, cfg, DeviceModel(stuck_at_0=0.01, seed=3), 0) == 0
    s5 = crossbar_conductances(w, cfg, DeviceModel(stuck_at_0=0.05, seed=3), 0) == 0
    assert (s5 | ~s1).all() and s5.sum() > s1.sum()


@pytest.mark.parametrize("F", [0, 4])
def test_ideal_model_is_the_ideal_map(F):
    cfg = CrossbarConfig(rows=9, cols=11, cell_bits=2, g_frac_bits=F)
    w = np.random.default_rng(2).integers(-128, 128, (7, cfg.outputs))
    g = crossbar_conductances(w, cfg, DeviceModel(seed=5), 3)
    assert DeviceModel(seed=5).is_ideal
    np.testing.assert_array_equal(g, np.array(_levels_by_hand(w, cfg)) << F)
    np.testing.assert_array_equal(g, ideal_conductances(w, cfg))
    # sigma so small that rounding at F = 0 erases it: still the ideal map
    if F == 0:
        np.testing.assert_array_equal(crossbar_conductances(w, cfg, DeviceModel(variation=0.01, seed=5), 3), g)


# --- golden model -------------------------------------------------------------------------
CFGS = [CrossbarConfig(rows=12, cols=13, cell_bits=2, adc_bits=4, g_frac_bits=2),
        CrossbarConfig(rows=9, cols=11, cell_bits=4, dac_bits=2, adc_shift=1, g_frac_bits=3),
        CrossbarConfig(rows=10, cols=9, cell_bits=1, g_frac_bits=5),
        CrossbarConfig(rows=8, cols=5, cell_bits=2, adc_bits=3, adc_shift=2, cols_per_adc=5)]


@pytest.mark.parametrize("cfg", CFGS)
def test_golden_with_maps_matches_hand_reading(cfg):
    rng = np.random.default_rng(3)
    n = cfg.rows - 2
    w = rng.integers(-128, 128, (n, cfg.outputs))
    x = rng.integers(0, 256, (5, n))
    m = DeviceModel(stuck_at_0=0.05, stuck_at_1=0.05, variation=0.3, drift_nu=0.02, time=50.0, seed=2)
    g = crossbar_conductances(w, cfg, m, 0)
    want = np.array([_mvm_by_hand(v, g[:n], cfg.outputs, cfg) for v in x])
    np.testing.assert_array_equal(golden.crossbar_mvm(x, w, cfg, conductances=g), want)
    # ideal cells at F > 0: the same integers as F = 0 (level << F, then >> F in the ADC)
    f0 = dataclasses.replace(cfg, g_frac_bits=0)
    np.testing.assert_array_equal(golden.crossbar_mvm(x, w, cfg), golden.crossbar_mvm(x, w, f0))
    np.testing.assert_array_equal(golden.crossbar_mvm(x, w, cfg, conductances=ideal_conductances(w, cfg)),
                                  golden.crossbar_mvm(x, w, f0))


def _digits_plan(F, adc_bits=None):
    from gen.models import digits_model
    qm = digits_model()
    xb = dataclasses.replace(ChipConfig().crossbar, cell_bits=2, g_frac_bits=F, adc_bits=adc_bits)
    return qm, map_network(qm.net, dataclasses.replace(ChipConfig(), crossbar=xb), "novel")


@pytest.mark.parametrize("F", [0, 3])
def test_plan_with_no_faults_is_ideal_bit_for_bit(F):
    """With no faults the plan walk with the device model's maps is the ideal one (F = 0: also
    run_network, the lossless direct model), for every layer."""
    from gen.models import digits_dataset
    qm, plan = _digits_plan(F)
    g = plan_conductances(plan, qm.params, DeviceModel(seed=9))
    assert len(g) == len(plan.placements)
    for c in digits_dataset("test", codes=True)[0][:3]:
        ideal = golden.run_plan(plan, qm.params, c, return_all=True)
        mapped = golden.run_plan(plan, qm.params, c, return_all=True, conductances=g)
        direct = golden.run_network(qm.net, qm.params, c, return_all=True)
        for name in ideal:
            np.testing.assert_array_equal(mapped[name], ideal[name])
            np.testing.assert_array_equal(mapped[name], direct[name])


def test_plan_with_faults_matches_per_crossbar_model():
    """One faulty layer by hand: the plan walk equals the sum over its placements of
    crossbar_mvm with each placement's map (the walk's own grouping is not trusted)."""
    from gen.intops import im2col, unroll_weights
    from gen.models import digits_dataset
    from gen.network import Linear
    qm, plan = _digits_plan(2, adc_bits=5)
    cfg = plan.chip.crossbar
    maps = plan_conductances(plan, qm.params, DeviceModel(stuck_at_0=0.02, stuck_at_1=0.01, variation=0.2, seed=4))
    lp = plan.weight_layers[0]
    p = qm.params[lp.name]
    x = digits_dataset("test", codes=True)[0][0]
    got = golden.plan_layer_acc(lp, p, x, cfg, maps)
    cout, ho, wo = lp.out_shape
    assert not isinstance(lp.layer, Linear)
    cols = im2col(x, lp.layer.k, lp.layer.stride, lp.layer.pad).reshape(ho * wo, -1)
    want = np.zeros((ho * wo, cout), dtype=np.int64)
    for pl in lp.placements:
        y0, y1, x0, x1 = lp.regions[pl.replica]
        pix = (np.arange(y0, y1)[:, None] * wo + np.arange(x0, x1)[None, :]).ravel()
        r0, r1 = pl.matrix_rows(lp.layer.cin, lp.layer.k)
        want[np.ix_(pix, np.arange(*pl.cols))] += golden.crossbar_mvm(cols[pix, r0:r1], p.block(pl), cfg,
                                                                      conductances=maps[pl])
    np.testing.assert_array_equal(got, want.T.reshape(cout, ho, wo))
    assert (got != golden.plan_layer_acc(lp, p, x, cfg)).any()      # the faults show


# --- RTL: Amaranth simulator (fast) --------------------------------------------------------
def _amaranth_run(cfg, cells, vectors):
    from hw.crossbar import Crossbar
    dut, got = Crossbar(cfg, cells), []

    async def tb(ctx):
        for v in vectors:
            got.append((await drive_mvm(ctx, dut, v[:cfg.rows]))[0])
            await ctx.tick()

    run_amaranth(dut, tb)
    return np.array(got)


@pytest.mark.parametrize("cfg", [CrossbarConfig(rows=5, cols=9, cell_bits=2, cols_per_adc=3, g_frac_bits=3),
                                 CrossbarConfig(rows=4, cols=5, cell_bits=4, adc_bits=5, adc_shift=1,
                                                cols_per_adc=2, g_frac_bits=2)])
def test_rtl_faulty_cells_amaranth(cfg):
    rng = np.random.default_rng(8)
    w = rng.integers(-128, 128, (cfg.rows, cfg.outputs))
    x = rng.integers(0, 256, (3, cfg.rows))
    g = crossbar_conductances(w, cfg, DeviceModel(stuck_at_0=0.1, stuck_at_1=0.1, variation=0.4, seed=1), 0)
    want = np.array([_mvm_by_hand(v, g, cfg.outputs, cfg) for v in x])
    assert (want != golden.crossbar_mvm(x, w, cfg)).any()          # the faults matter for these vectors
    np.testing.assert_array_equal(_amaranth_run(cfg, CellArray.from_conductances(g, cfg), x), want)


def test_rtl_fraction_bits_lint_clean(verilator_lint):
    from flow.emit import to_verilog
    from hw.crossbar import Crossbar
    cfg = CrossbarConfig(rows=8, cols=12, cell_bits=4, dac_bits=2, adc_bits=5, adc_shift=1, cols_per_adc=3,
                         g_frac_bits=3)
    w = np.random.default_rng(1).integers(-128, 128, (cfg.rows, cfg.outputs))
    g = crossbar_conductances(w, cfg, DeviceModel(stuck_at_1=0.1, variation=0.3, seed=2), 0)
    verilator_lint.clean(to_verilog(Crossbar(cfg, CellArray.from_conductances(g, cfg)), "crossbar"), "crossbar")


# --- RTL: Verilator through the CLI (the representative check) ------------------------------
def test_cli_faulty_crossbar_verilator(capsys, sim_cache, monkeypatch):
    """`pimgen crossbar --g-frac-bits 3 --variation 0.3 --stuck-at 0.05 --stuck-at-1 0.05 --drift ...`:
    bit-exact against the golden model, clocks exact, write port re-programming included."""
    from flow.cli import main
    monkeypatch.setenv("PIMGEN_SIM_CACHE", str(sim_cache))
    rc = main(["crossbar", "--rows", "8", "--cols", "9", "--cell-bits", "2", "--cols-per-adc", "3",
               "--g-frac-bits", "3", "--variation", "0.3", "--stuck-at", "0.05", "--stuck-at-1", "0.05",
               "--drift", "0.05", "--time", "100", "--seed", "2", "--vectors", "10", "--reprogram", "2", "--json"])
    rep = json.loads(capsys.readouterr().out)
    assert rc == 0 and rep["passed"] and rep["mismatches"] == 0
    assert rep["cells_off_ideal"] > 0 and rep["device"]["variation"] == 0.3
    assert rep["latencies"] == [rep["predicted_clocks"]] == [8 * 3 + 5]


# --- RTL: broader (slow) --------------------------------------------------------------------
SLOW = {
    "32x32-cb2-F4-var": (CrossbarConfig(rows=32, cols=32, cell_bits=2, g_frac_bits=4),
                         DeviceModel(variation=0.2, stuck_at_0=0.02, stuck_at_1=0.01, seed=5)),
    "16x16-cb1-F0-stuck": (CrossbarConfig(rows=16, cols=16, cell_bits=1),
                           DeviceModel(stuck_at_0=0.05, stuck_at_1=0.05, seed=6)),
    "cb4-lossy-F2-drift": (CrossbarConfig(rows=12, cols=11, cell_bits=4, dac_bits=2, adc_bits=6, adc_shift=1,
                                          cols_per_adc=2, g_frac_bits=2),
                           DeviceModel(variation=0.3, drift_nu=0.1, time=1e3, ref_column=False, seed=7)),
    "cpa1-F6-all": (CrossbarConfig(rows=9, cols=10, cell_bits=2, cols_per_adc=1, g_frac_bits=6),
                    DeviceModel(stuck_at_0=0.1, stuck_at_1=0.1, variation=0.5, drift_nu=0.05, time=10.0, seed=8)),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SLOW))
def test_faulty_crossbar_verilator_slow(name, sim_cache):
    from flow.crossbar_check import CrossbarCheck, run_crossbar_check
    cfg, dev = SLOW[name]
    rep = run_crossbar_check(CrossbarCheck(cfg, vectors=12, seed=3, reprogram_rows=2, device=dev),
                             cache_dir=sim_cache)
    assert rep["passed"] and rep["mismatches"] == 0, rep
    assert rep["latencies"] == [rep["predicted_clocks"]]


@pytest.mark.slow
def test_faulty_crossbar_backpressure_slow(sim_cache):
    from flow.crossbar_check import CrossbarCheck, run_crossbar_check
    cfg, dev = SLOW["32x32-cb2-F4-var"]
    rep = run_crossbar_check(CrossbarCheck(cfg, vectors=16, seed=4, ready_prob=0.3, gap_prob=0.4, device=dev),
                             cache_dir=sim_cache)
    assert rep["passed"] and rep["mismatches"] == 0, rep


@pytest.mark.slow
@requires_icarus
def test_faulty_crossbar_icarus_slow(sim_cache):
    from flow.crossbar_check import CrossbarCheck, run_crossbar_check
    cfg, dev = SLOW["cpa1-F6-all"]
    rep = run_crossbar_check(CrossbarCheck(cfg, vectors=6, seed=3, sim="icarus", device=dev), cache_dir=sim_cache)
    assert rep["passed"] and rep["mismatches"] == 0, rep
