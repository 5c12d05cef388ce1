"""The bit-plane (BLAS) crossbar-exact golden model is bit-identical to the previous
element-by-element int64 implementation, kept verbatim as the reference in
bench/golden_old.py (from sim/golden.py at commit b68346b; the speed benchmark compares with it too), on random configurations: cell_bits 1/2/4, dac_bits
1/2/4, lossless and lossy ADCs (adc_bits, adc_shift), cols_per_adc, row counts that do not
divide the crossbar's, both mappings through plan_layer_acc/run_plan, duplication, and the
float64 path (column sums beyond 2**24)."""
import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from gen.cells import cell_levels
from gen.config import ChipConfig, CrossbarConfig
from gen.intops import im2col, unroll_weights
from gen.mapping import map_network
from gen.network import Conv2d, Linear, Network, zoo
from gen.params import Requant, WeightParams
from gen.quantize import random_weights
from sim import golden


# --- the reference: the previous implementation, kept once in bench/golden_old.py -----------
def _load_reference():
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parents[1] / "bench" / "golden_old.py"
    spec = importlib.util.spec_from_file_location("golden_old", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


_OLD = _load_reference()
ref_adc, ref_crossbar_mvm, ref_matmul_crossbar = _OLD.adc, _OLD.crossbar_mvm, _OLD.matmul_crossbar
ref_plan_layer_acc = _OLD.plan_layer_acc


def ref_run_plan(plan, params, x, monkeypatch):
    """The current network walk with the reference plan walk swapped in."""
    return _OLD.run_plan(plan, params, x, return_all=True)


# --- random configurations ----------------------------------------------------------------
@st.composite
def crossbar_cfgs(draw, max_rows=40):
    cell = draw(st.sampled_from([1, 2, 4]))
    dac = draw(st.sampled_from([1, 2, 4]))
    rows = draw(st.integers(2, max_rows))
    cols = draw(st.integers(8 // cell + 1, 40))
    cpa = draw(st.integers(1, cols))
    base = CrossbarConfig(rows=rows, cols=cols, cell_bits=cell, dac_bits=dac, cols_per_adc=cpa)
    lossless = base.lossless_adc_bits
    adc_bits = draw(st.one_of(st.none(), st.integers(1, lossless + 1)))
    shift = draw(st.sampled_from([0, 0, 1, 2, 3]))
    return dataclasses.replace(base, adc_bits=adc_bits, adc_shift=shift)


@settings(max_examples=150, deadline=None)
@given(cfg=crossbar_cfgs(), data=st.data())
def test_crossbar_mvm_bit_identical(cfg, data):
    n_rows = data.draw(st.integers(1, cfg.rows))
    n_out = data.draw(st.integers(1, cfg.outputs))
    lead = data.draw(st.sampled_from([(), (1,), (7,), (3, 5)]))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    hi = data.draw(st.sampled_from([256, 2, 16]))                 # dense, sparse bits, small values
    x = rng.integers(0, hi, lead + (n_rows,))
    w = rng.integers(-128, 128, (n_rows, n_out))
    np.testing.assert_array_equal(golden.crossbar_mvm(x, w, cfg), ref_crossbar_mvm(x, w, cfg))


@settings(max_examples=60, deadline=None)
@given(cfg=crossbar_cfgs(max_rows=24), data=st.data())
def test_matmul_and_conv2d_crossbar_bit_identical(cfg, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    r, n = data.draw(st.integers(1, 3 * cfg.rows + 1)), data.draw(st.integers(1, 3 * cfg.outputs + 1))
    x = rng.integers(0, 256, (5, r))
    wmat = rng.integers(-128, 128, (r, n))
    np.testing.assert_array_equal(golden.matmul_crossbar(x, wmat, cfg), ref_matmul_crossbar(x, wmat, cfg))
    cin, cout, k = data.draw(st.integers(1, 6)), data.draw(st.integers(1, 7)), data.draw(st.integers(1, 3))
    stride, pad = data.draw(st.integers(1, 2)), data.draw(st.integers(0, k - 1))
    xi = rng.integers(0, 256, (cin, k + 3, k + 4))
    wk = rng.integers(-128, 128, (cout, cin, k, k))
    want = ref_matmul_crossbar(im2col(xi, k, stride, pad), unroll_weights(wk), cfg).transpose(2, 0, 1)
    np.testing.assert_array_equal(golden.conv2d_crossbar(xi, wk, stride=stride, pad=pad, cfg=cfg), want)


@pytest.mark.parametrize("cfg", [
    # column sums beyond 2**24: the float64 path (16-bit inputs applied whole, 4-bit cells)
    CrossbarConfig(rows=64, cols=9, cell_bits=4, w_bits=8, a_bits=16, dac_bits=16, adc_bits=None),
    CrossbarConfig(rows=64, cols=9, cell_bits=4, w_bits=8, a_bits=16, dac_bits=16, adc_bits=20, adc_shift=3),
    CrossbarConfig(rows=512, cols=17, cell_bits=4, w_bits=16, a_bits=16, dac_bits=8, adc_bits=None),
    CrossbarConfig(rows=512, cols=17, cell_bits=4, w_bits=16, a_bits=16, dac_bits=8, adc_bits=17),
])
def test_wide_sums_bit_identical(cfg):
    rng = np.random.default_rng(cfg.rows)
    top = 1 << cfg.a_bits
    x = np.concatenate([rng.integers(0, top, (20, cfg.rows)), np.full((2, cfg.rows), top - 1)])
    wl = 1 << (cfg.w_bits - 1)
    w = np.concatenate([rng.integers(-wl, wl, (cfg.rows, cfg.outputs - 1)), np.full((cfg.rows, 1), wl - 1)], axis=1)
    np.testing.assert_array_equal(golden.crossbar_mvm(x, w, cfg), ref_crossbar_mvm(x, w, cfg))


@settings(max_examples=60, deadline=None)
@given(k=st.integers(1, 4), stride=st.integers(1, 2), pad=st.integers(0, 2), cin=st.integers(1, 21),
       cout=st.integers(1, 13), h=st.integers(1, 9), w=st.integers(1, 9), rows=st.sampled_from([4, 7, 16]),
       cols=st.sampled_from([9, 14, 21]), cell=st.sampled_from([1, 2, 4]), dac=st.sampled_from([1, 2]),
       adc_cut=st.integers(0, 3), shift=st.integers(0, 2), spp=st.integers(1, 3), dup=st.integers(1, 4),
       mapping=st.sampled_from(["conventional", "novel"]), fc=st.booleans(), seed=st.integers(0, 2**16))
def test_plan_layer_acc_bit_identical(k, stride, pad, cin, cout, h, w, rows, cols, cell, dac, adc_cut, shift,
                                      spp, dup, mapping, fc, seed):
    pad = min(pad, k - 1)
    h, w = max(h, k - 2 * pad), max(w, k - 2 * pad)
    base = CrossbarConfig(rows=rows, cols=max(cols, 8 // cell + 1), cell_bits=cell, dac_bits=dac)
    xcfg = dataclasses.replace(base, adc_bits=max(1, base.lossless_adc_bits - adc_cut), adc_shift=shift)
    layers = [Conv2d(name="c", cin=cin, cout=cout, k=k, stride=stride, pad=pad)]
    if fc:
        layers.append(Linear(name="f", in_features=cout * ((h + 2 * pad - k) // stride + 1)
                             * ((w + 2 * pad - k) // stride + 1), out_features=5, inputs=["c"]))
    net = Network("one", (cin, h, w), layers)
    chip = ChipConfig(crossbar=xcfg, subarrays_per_pe=spp, pes_per_tile=25)
    plan = map_network(net, chip, mapping=mapping, duplication=dup)
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(cin, h, w))
    for lp in plan.layers:
        if not lp.placements:
            continue
        layer = lp.layer
        shape = (layer.out_features, layer.in_features) if isinstance(layer, Linear) else (cout, cin, k, k)
        p = WeightParams(rng.integers(-128, 128, size=shape), None, Requant(1, 0))
        xin = x if lp.name == "c" else rng.integers(0, 256, size=lp.in_shape)
        np.testing.assert_array_equal(golden.plan_layer_acc(lp, p, xin, xcfg), ref_plan_layer_acc(lp, p, xin, xcfg))


def _lossy_paper(adc_bits=5):
    chip = ChipConfig.preset("paper")
    return dataclasses.replace(chip, crossbar=dataclasses.replace(chip.crossbar, adc_bits=adc_bits))


SMALL_LOSSY = ChipConfig(crossbar=CrossbarConfig(rows=16, cols=21, cell_bits=2, adc_bits=4, adc_shift=1),
                         subarrays_per_pe=2, pes_per_tile=9)


@pytest.mark.parametrize("mapping", ["conventional", "novel"])
@pytest.mark.parametrize("chip", [_lossy_paper(), SMALL_LOSSY], ids=["paper-adc5", "small-lossy"])
@pytest.mark.parametrize("dup", [None, 3])
def test_run_plan_digits_bit_identical(mapping, chip, dup, monkeypatch):
    net = zoo("digits")
    params = random_weights(net, seed=11)
    plan = map_network(net, chip, mapping=mapping, duplication=dup)
    rng = np.random.default_rng(12)
    for _ in range(2):
        x = rng.integers(0, 256, size=net.input_shape)
        got, want = golden.run_plan(plan, params, x, return_all=True), ref_run_plan(plan, params, x, monkeypatch)
        for name in want:
            np.testing.assert_array_equal(got[name], want[name], err_msg=name)


@pytest.mark.parametrize("mapping", ["conventional", "novel"])
def test_run_plan_resnet20_lossy_bit_identical(mapping, monkeypatch):
    net = zoo("resnet20")
    params = random_weights(net, seed=13)
    plan = map_network(net, _lossy_paper(), mapping=mapping, pipeline=True)
    x = np.random.default_rng(14).integers(0, 256, size=net.input_shape)
    got, want = golden.run_plan(plan, params, x, return_all=True), ref_run_plan(plan, params, x, monkeypatch)
    for name in want:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)


def test_block_slices_equal_params_block():
    """plan_layer_acc slices one unrolled matrix per layer; it is what WeightParams.block gives."""
    net = zoo("resnet20")
    params = random_weights(net, seed=1)
    for mapping in ("conventional", "novel"):
        plan = map_network(net, ChipConfig(), mapping=mapping, duplication=2)
        for lp in plan.layers:
            if not lp.placements:
                continue
            p = params[lp.name]
            wmat = unroll_weights(p.kernel)
            cin, k = (0, 1) if isinstance(lp.layer, Linear) else (lp.layer.cin, lp.layer.k)
            for pl in lp.placements:
                r0, r1 = pl.matrix_rows(cin, k)
                np.testing.assert_array_equal(wmat[r0:r1, pl.cols[0]:pl.cols[1]], p.block(pl))


# --- non-ideal conductances -----------------------------------------------------------------
def _ideal_conductances(w, cfg):
    """The physical cells of a crossbar holding ``w`` (DESIGN.md §3), ``[rows, cols]``."""
    g = np.zeros((cfg.rows, cfg.cols), dtype=np.int64)
    n, n_out = w.shape
    g[:n, :n_out * cfg.slices] = cell_levels(w, cfg).reshape(n, -1)
    g[:, cfg.ref_col] = 1
    return g


def _scalar_with_conductances(xv, g, n_out, cfg):
    """A loop-by-loop reading of §3 with conductances (F = 0)."""
    out = []
    pc = [0] * cfg.cols
    for t in range(cfg.input_cycles):
        xt = [(int(v) >> (t * cfg.dac_bits)) & cfg.max_dac for v in xv]
        for c in range(cfg.cols):
            s = sum(xt[r] * int(g[r][c]) for r in range(len(xt)))
            q = min(s >> cfg.adc_shift, cfg.adc_max_code) << cfg.adc_shift
            pc[c] += q << (t * cfg.dac_bits)
    for o in range(n_out):
        dot = sum(pc[o * cfg.slices + k] << (k * cfg.cell_bits) for k in range(cfg.slices))
        out.append(dot - cfg.weight_offset * pc[cfg.ref_col])
    return out


@pytest.mark.parametrize("cfg", [CrossbarConfig(rows=12, cols=13, cell_bits=2, adc_bits=4),
                                 CrossbarConfig(rows=9, cols=11, cell_bits=4, dac_bits=2, adc_shift=1)])
def test_conductances(cfg):
    rng = np.random.default_rng(3)
    n = cfg.rows - 2
    w = rng.integers(-128, 128, (n, cfg.outputs))
    x = rng.integers(0, 256, (6, n))
    g = _ideal_conductances(w, cfg)
    np.testing.assert_array_equal(golden.crossbar_mvm(x, w, cfg, conductances=g), golden.crossbar_mvm(x, w, cfg))
    g = rng.integers(0, 1 << cfg.cell_bits, g.shape)                         # any cells, reference included
    want = np.array([_scalar_with_conductances(v, g[:n], cfg.outputs, cfg) for v in x])
    np.testing.assert_array_equal(golden.crossbar_mvm(x, w, cfg, conductances=g), want)
    with pytest.raises(ValueError, match="conductances"):
        golden.crossbar_mvm(x, w, cfg, conductances=g[:, :-1])
    with pytest.raises(ValueError, match="conductances"):
        golden.crossbar_mvm(x, w, cfg, conductances=g + (1 << cfg.cell_bits))


def test_run_plan_conductances_ideal_and_faulty():
    net = zoo("digits")
    params = random_weights(net, seed=2)
    plan = map_network(net, SMALL_LOSSY, mapping="novel", duplication=2)
    cfg = SMALL_LOSSY.crossbar
    x = np.random.default_rng(5).integers(0, 256, size=net.input_shape)
    ideal = {p: _ideal_conductances(params[lp.name].block(p), cfg) for lp in plan.layers for p in lp.placements}
    base = golden.run_plan(plan, params, x, return_all=True)
    same = golden.run_plan(plan, params, x, return_all=True, conductances=ideal)
    for name in base:
        np.testing.assert_array_equal(same[name], base[name], err_msg=name)
    # one stuck-at-0 column on one crossbar of the first layer changes exactly its outputs' pixels
    lp = plan.layers[0]
    p = lp.placements[0]
    faulty = dict(ideal)
    faulty[p] = ideal[p].copy()
    faulty[p][:, 0] = 0
    got = golden.plan_layer_acc(lp, params[lp.name], x, cfg, conductances=faulty)
    want = golden.plan_layer_acc(lp, params[lp.name], x, cfg)
    y0, y1, x0, x1 = lp.regions[p.replica]
    diff = got != want
    assert diff.any() and not diff[:, :y0].any() and not diff[:, y1:].any()
    assert not np.delete(diff, np.arange(*p.cols)[:1], axis=0).any()
