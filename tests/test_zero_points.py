"""Zero points (DESIGN.md §3): the golden arithmetic against a scalar re-reading of the formulas,
the compile-time bias fold, and the RTL post units bit-exact in the Amaranth simulator."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from gen.intops import avgpool2d, conv2d_int, fold_zero_point, global_avgpool, maxpool2d, requantize, residual_add
from gen.params import AddParams, PoolParams, Requant
from hw.post import GlobalAvgPoolUnit, Requantize, ResidualAddUnit
from sim.stream import pack, unpack

from test_hw_blocks import _stream_through


def _rs(v: int, s: int) -> int:          # (v + 2**(s-1)) >> s, Python's >> floors like an arithmetic shift
    return (v + (1 << (s - 1))) >> s if s else v


def _clamp(v, lo, hi):
    return max(lo, min(hi, v))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(-(1 << 20), 1 << 20), min_size=1, max_size=8), st.integers(0, 65535),
       st.integers(0, 31), st.integers(0, 255), st.booleans(), st.integers(-5000, 5000))
def test_requantize_scalar(accs, m, s, z, relu, b):
    got = requantize(np.array(accs), m, s, [b] * len(accs), 8, z, relu)
    want = [_clamp(_rs((a + b) * m, s) + z, z if relu else 0, 255) for a in accs]
    assert got.tolist() == want


def test_requantize_bias_per_channel_and_defaults_unchanged():
    rng = np.random.default_rng(0)
    acc = rng.integers(-(1 << 18), 1 << 18, (4, 3, 3))
    bias = rng.integers(-999, 999, 4)
    old = np.clip(((acc + bias[:, None, None]) * 777 + (1 << 11)) >> 12, 0, 255)
    assert np.array_equal(requantize(acc, 777, 12, bias), old)
    assert np.array_equal(requantize(acc, 777, 12, bias, 8, 0, False), old)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 255), st.integers(0, 255), st.integers(0, 255), st.integers(0, 65535), st.integers(0, 65535),
       st.integers(0, 20), st.booleans(), st.integers(0, 2 ** 32 - 1))
def test_residual_add_scalar(za, zb, zo, ma, mb, s, relu, seed):
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, 256, (2, 3, 4, 4))
    got = residual_add(a, b, ma, mb, s, 8, za, zb, zo, relu)
    want = np.vectorize(lambda x, y: _clamp(_rs((x - za) * ma + (y - zb) * mb, s) + zo, zo if relu else 0, 255))(a, b)
    assert np.array_equal(got, want)


def test_pools_scalar():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (3, 6, 4))
    zi, zo, m, s = 37, 100, 3000, 14
    got = global_avgpool(x, m, s, 8, zi, zo, False)
    want = [_clamp(_rs(int((x[c] - zi).sum()) * m, s) + zo, 0, 255) for c in range(3)]
    assert got.tolist() == want
    got = avgpool2d(x, 2, m, s, 8, zi, zo, True)
    want = [[[_clamp(_rs(int((x[c, 2 * i:2 * i + 2, 2 * j:2 * j + 2] - zi).sum()) * m, s) + zo, zo, 255)
              for j in range(2)] for i in range(3)] for c in range(3)]
    assert got.tolist() == want
    # general max pool: 3x3 stride 2 pad 1 (the ImageNet ResNet stem), padding never wins
    got = maxpool2d(x, 3, 2, 1)
    xp = np.full((3, 8, 6), -1)
    xp[:, 1:7, 1:5] = x
    want = [[[xp[c, 2 * i:2 * i + 3, 2 * j:2 * j + 3].max() for j in range(2)] for i in range(3)] for c in range(3)]
    assert got.tolist() == want
    assert np.array_equal(maxpool2d(x, 2), maxpool2d(x, 2, 2, 0))


@pytest.mark.parametrize("pad,stride", [(1, 1), (1, 2), (2, 1), ((0, 1, 1, 0), 2)])
def test_fold_zero_point_is_the_real_zero(pad, stride):
    """conv(q, w, bias - z·Σw, padding z) == conv(q - z, w, bias, padding 0): the crossbars see codes,
    the result is the convolution of the real values (up to the scale)."""
    rng = np.random.default_rng(2)
    z = 77
    q = rng.integers(0, 256, (3, 7, 6))
    w = rng.integers(-128, 128, (4, 3, 3, 3))
    b = rng.integers(-1000, 1000, 4)
    got = conv2d_int(q, w, fold_zero_point(b, w, z), stride, pad, pad_value=z)
    ref = conv2d_int(q - z, w, b, stride, pad)
    assert np.array_equal(got, ref)


# --- the RTL post units ----------------------------------------------------------------------
@pytest.mark.parametrize("z,relu", [(0, False), (90, True), (128, False)])
def test_requantize_unit_zero_point(z, relu):
    rng = np.random.default_rng(3)
    n, acc_bits = 5, 24
    bias = rng.integers(-5000, 5000, n)
    m, s = 1234, 17
    accs = rng.integers(-(1 << 22), 1 << 22, (30, n))
    accs[0], accs[1] = (1 << 23) - 1, -(1 << 23)
    rq = Requant(m, s, z, relu)
    got = _stream_through(Requantize(acc_bits, bias, rq), {"i": [pack(a, acc_bits) for a in accs]}, "o", len(accs),
                          ready_prob=0.6, gap_prob=0.2)
    assert [unpack(p, 8, n) for p in got] == requantize(accs.T, m, s, bias, 8, z, relu).T.tolist()


def test_global_avgpool_unit_zero_points():
    rng = np.random.default_rng(4)
    c, h, w = 4, 3, 5
    imgs = rng.integers(0, 256, (3, c, h, w))
    imgs[0] = 0                                   # Σ(x - z_in) < 0
    m, s, zi, zo = 4369, 16, 60, 20
    beats = [pack(img[:, y, x], 8) for img in imgs for y in range(h) for x in range(w)]
    got = _stream_through(GlobalAvgPoolUnit(c, h, w, Requant(m, s, zo, False), z_in=zi), {"i": beats}, "o", 3,
                          ready_prob=0.5, gap_prob=0.2)
    assert [unpack(p, 8, c) for p in got] == [global_avgpool(img, m, s, 8, zi, zo, False).tolist() for img in imgs]


@pytest.mark.parametrize("za,zb,zo,relu", [(10, 200, 128, False), (0, 255, 30, True), (128, 0, 0, False)])
def test_residual_add_unit_zero_points(za, zb, zo, relu):
    rng = np.random.default_rng(5)
    c = 5
    a = rng.integers(0, 256, (30, c))
    b = rng.integers(0, 256, (30, c))
    p = AddParams(3000, 5000, 13, za, zb, zo, relu)
    got = _stream_through(ResidualAddUnit(c, p), {"a": [pack(v, 8) for v in a], "b": [pack(v, 8) for v in b]},
                          "o", 30, ready_prob=0.5, gap_prob=0.3, seed=9)
    assert [unpack(v, 8, c) for v in got] == residual_add(a, b, p.ma, p.mb, p.s, 8, za, zb, zo, relu).tolist()


def test_params_json_omits_defaults_and_round_trips():
    assert Requant(5, 3).to_dict() == {"m": 5, "s": 3}
    for obj in (Requant(5, 3, 17, False), PoolParams(Requant(1, 2, 3, True), 9), AddParams(1, 2, 3, 4, 5, 6, False)):
        assert type(obj).from_dict(obj.to_dict()) == obj
