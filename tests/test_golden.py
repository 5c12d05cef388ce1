"""Golden model vs independent oracles (onnxruntime, scipy, a scalar re-reading of §3)."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from gen.config import CrossbarConfig
from oracles import crossbar_mvm_scalar, onnx_conv_integer, scipy_conv
from sim import golden
from sim.golden import conv2d_crossbar, conv2d_int, crossbar_mvm

conv_case = st.tuples(
    st.integers(1, 5),      # Cin
    st.integers(1, 6),      # Cout
    st.integers(1, 5),      # K
    st.integers(1, 2),      # stride
    st.integers(0, 2),      # pad
    st.integers(0, 6),      # extra H beyond K
    st.integers(0, 6),      # extra W beyond K
    st.integers(0, 2**31 - 1),
)


def _conv_data(case):
    cin, cout, k, stride, pad, eh, ew, seed = case
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (cin, k + eh, k + ew))
    w = rng.integers(-128, 128, (cout, cin, k, k))
    return x, w, stride, pad


@settings(max_examples=40, deadline=None)
@given(conv_case)
def test_conv2d_int_matches_onnxruntime(case):
    x, w, stride, pad = _conv_data(case)
    np.testing.assert_array_equal(conv2d_int(x, w, stride=stride, pad=pad), onnx_conv_integer(x, w, stride, pad))


@settings(max_examples=20, deadline=None)
@given(conv_case)
def test_conv2d_int_matches_scipy(case):
    x, w, stride, pad = _conv_data(case)
    np.testing.assert_array_equal(conv2d_int(x, w, stride=stride, pad=pad), scipy_conv(x, w, stride, pad))


def test_conv2d_bias_and_output_shape():
    x = np.ones((2, 5, 5), dtype=np.int64)
    w = np.ones((3, 2, 3, 3), dtype=np.int64)
    y = conv2d_int(x, w, bias=[1, 2, 3], stride=2, pad=1)
    assert y.shape == (3, 3, 3)
    # corner window sees 2x2 real pixels in each of 2 channels: 8, plus bias
    assert y[0, 0, 0] == 9 and y[2, 1, 1] == 18 + 3


lossless_cfg = st.builds(
    lambda rows, cols, cell, dac, cpa: CrossbarConfig(rows=rows, cols=cols, cell_bits=cell, dac_bits=dac,
                                                       cols_per_adc=min(cpa, cols)),
    st.integers(2, 40), st.integers(9, 40), st.sampled_from([1, 2, 4]), st.sampled_from([1, 2, 4, 8]),
    st.integers(1, 8))


@settings(max_examples=40, deadline=None)
@given(lossless_cfg, conv_case)
def test_conv2d_crossbar_equals_int_when_lossless(cfg, case):
    x, w, stride, pad = _conv_data(case)
    assert cfg.is_lossless
    np.testing.assert_array_equal(conv2d_crossbar(x, w, stride=stride, pad=pad, cfg=cfg),
                                  conv2d_int(x, w, stride=stride, pad=pad))


@pytest.mark.parametrize("cfg", [
    CrossbarConfig(rows=16, cols=16, cell_bits=2, adc_bits=4),
    CrossbarConfig(rows=32, cols=16, cell_bits=4, adc_bits=5),
    CrossbarConfig(rows=32, cols=32, cell_bits=2, adc_shift=2),
    CrossbarConfig(rows=24, cols=17, cell_bits=1, dac_bits=2, adc_bits=3, adc_shift=1),
])
def test_lossy_adc_matches_scalar_reference_and_differs_from_exact(cfg):
    rng = np.random.default_rng(cfg.rows + cfg.cols)
    x = rng.integers(0, 256, (6, cfg.rows))
    w = rng.integers(-128, 128, (cfg.rows, cfg.outputs))
    got = crossbar_mvm(x, w, cfg)
    ref = np.array([crossbar_mvm_scalar(list(v), w.tolist(), cfg) for v in x])
    np.testing.assert_array_equal(got, ref)
    exact = x @ w
    assert (got != exact).any(), "a lossy ADC on dense random data must change results"


@settings(max_examples=30, deadline=None)
@given(lossless_cfg, st.integers(0, 2**31 - 1), st.integers(0, 3), st.integers(0, 2))
def test_crossbar_mvm_matches_scalar_reference_any_adc(cfg, seed, adc_cut, shift):
    cfg = CrossbarConfig(**{**cfg.to_dict(), "adc_bits": max(1, cfg.lossless_adc_bits - adc_cut), "adc_shift": shift})
    rng = np.random.default_rng(seed)
    n_rows = int(rng.integers(1, cfg.rows + 1))
    n_out = int(rng.integers(1, cfg.outputs + 1))
    x = rng.integers(0, 256, (3, n_rows))
    w = rng.integers(-128, 128, (n_rows, n_out))
    ref = np.array([crossbar_mvm_scalar(list(v), w.tolist(), cfg) for v in x])
    np.testing.assert_array_equal(crossbar_mvm(x, w, cfg), ref)


def test_crossbar_hand_example():
    # 2 rows, 1-bit cells, w = [[1], [-2]] -> u = 129 = 0b10000001, 126 = 0b01111110
    cfg = CrossbarConfig(rows=2, cols=9, cell_bits=1, cols_per_adc=1)
    assert crossbar_mvm(np.array([3, 5]), np.array([[1], [-2]]), cfg).tolist() == [3 * 1 + 5 * -2]
    # saturating 1-bit ADC: every column sum clips to 1
    sat = CrossbarConfig(rows=2, cols=9, cell_bits=1, cols_per_adc=1, adc_bits=1)
    # x=[1,1]: u-columns sums: bit0: 1+0=1, bits1..6: 0+1=1, bit7: 1+0=1 -> P=255; ref sum 2 -> q=1
    assert crossbar_mvm(np.array([1, 1]), np.array([[1], [-2]]), sat).tolist() == [255 - 128]


def test_crossbar_rejects_bad_shapes():
    cfg = CrossbarConfig(rows=4, cols=9, cell_bits=1)
    with pytest.raises(ValueError, match="rows"):
        crossbar_mvm(np.zeros(5, int), np.zeros((5, 1), int), cfg)
    with pytest.raises(ValueError, match="outputs"):
        crossbar_mvm(np.zeros(4, int), np.zeros((4, 2), int), cfg)
    with pytest.raises(ValueError, match=r"\[-128, 127\]"):
        crossbar_mvm(np.zeros(4, int), np.full((4, 1), 200), cfg)


def test_requantize_by_hand():
    acc = np.array([[[100, -50]], [[7, 1000]]])            # 2 channels, 1x2
    y = golden.requantize(acc, m=3, s=2, bias=[4, -7])
    # ch0: (104*3+2)>>2 = 78, (-46*3+2)>>2 = -34 -> 0; ch1: (0*3+2)>>2=0, (993*3+2)>>2=745 -> 255
    assert y.tolist() == [[[78, 0]], [[0, 255]]]
    assert golden.requantize(np.array([5]), m=1, s=0).tolist() == [5]      # no rounding term at s=0
    with pytest.raises(ValueError, match="m=70000"):
        golden.requantize(acc, m=70000, s=1)
    with pytest.raises(ValueError, match="s=32"):
        golden.requantize(acc, m=1, s=32)


def test_pooling_and_residual_by_hand():
    x = np.arange(2 * 4 * 5).reshape(2, 4, 5)
    assert golden.maxpool2d(x, 2).tolist() == [[[6, 8], [16, 18]], [[26, 28], [36, 38]]]
    # channel 0 sum = 0..19 = 190; (190*5 + 8) >> 4 = 59
    assert golden.global_avgpool(x, m=5, s=4).tolist()[0] == 59
    a, b = np.array([10, 200]), np.array([20, 250])
    # (10*3 + 20*5 + 4) >> 3 = 16 ; (600 + 1250 + 4) >> 3 = 231
    assert golden.residual_add(a, b, ma=3, mb=5, s=3).tolist() == [16, 231]


def test_linear_matches_matmul():
    rng = np.random.default_rng(3)
    x, w, b = rng.integers(0, 256, 17), rng.integers(-128, 128, (5, 17)), rng.integers(-9, 9, 5)
    assert golden.linear(x, w, b).tolist() == [int(sum(int(x[i]) * int(w[o, i]) for i in range(17)) + b[o]) for o in range(5)]
