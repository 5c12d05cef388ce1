"""gen.params (typed per-layer parameters, the one home of the M/s range check) and
gen.quantize (scale_to_requant, random_weights). Expected values are worked out by hand."""
import dataclasses
import json

import numpy as np
import pytest

from gen.network import Add, Conv2d, GlobalAvgPool, Linear, MaxPool, Network
from gen.params import AddParams, NetworkParams, NoParams, PoolParams, Requant, WeightParams
from gen.quantize import random_weights, scale_to_requant


def _net():
    """conv -> maxpool -> 1x1 conv -> add(pool, c2) -> global avg pool -> fc."""
    return Network("t", (2, 6, 6), [
        Conv2d(name="c1", cin=2, cout=4, k=3, pad=1),          # (4, 6, 6)
        MaxPool(name="pool", k=2),                               # (4, 3, 3)
        Conv2d(name="c2", cin=4, cout=4, k=1),                   # (4, 3, 3)
        Add(name="add", inputs=("pool", "c2")),
        GlobalAvgPool(name="gap"),                               # (4, 1, 1)
        Linear(name="fc", in_features=4, out_features=3),
    ])


# --- Requant / AddParams: the M and s ranges -------------------------------------------------
@pytest.mark.parametrize("m, s", [(0, 0), (65535, 31), (1, 0), (np.int64(7), np.uint8(3))])
def test_requant_accepts_the_whole_range(m, s):
    rq = Requant(m, s)
    assert (rq.m, rq.s) == (int(m), int(s)) and type(rq.m) is int and type(rq.s) is int


@pytest.mark.parametrize("m, s, z_out, relu, a_bits", [
    (43289, 24, 0, True, 8), (50146, 25, 0, True, 8), (1, 0, 0, True, 8), (65535, 31, 0, True, 8),
    (3, 2, 0, True, 8), (3, 2, 17, True, 8), (3, 2, 17, False, 8), (7, 0, 255, True, 8), (0, 5, 9, False, 8),
    (12345, 20, 9, False, 4), (1, 1, 0, False, 8)])
def test_requant_input_range_keeps_every_output(m, s, z_out, relu, a_bits):
    """Clamping ``v`` into ``input_range`` changes no output (golden ``requantize`` on both,
    over every ``v`` around the bounds), and the bounds are tight: just inside them the output
    differs from the clamped end's."""
    from gen.intops import requantize
    rq = Requant(m, s, z_out, relu)
    lo, hi = rq.input_range(a_bits)
    assert lo <= hi
    span = max(hi - lo, 1)
    v = np.unique(np.concatenate([np.arange(lo - 300, lo + 300), np.arange(hi - 300, hi + 300),
                                  np.linspace(lo - 4 * span, hi + 4 * span, 2001).astype(np.int64)]))
    q = lambda x: requantize(x, m, s, a_bits=a_bits, z_out=z_out, relu=relu)  # noqa: E731
    assert np.array_equal(q(v), q(np.clip(v, lo, hi)))
    if lo < hi:          # tight: the output moves right inside each bound
        assert q(np.array([lo + 1]))[0] != q(np.array([lo]))[0]
        assert q(np.array([hi - 1]))[0] != q(np.array([hi]))[0]


@pytest.mark.parametrize("kw, msg", [
    ({"m": 65536, "s": 0}, r"m=65536 is not allowed: m must be an unsigned 16-bit integer in \[0, 65535\]"),
    ({"m": -1, "s": 0}, r"m=-1 is not allowed: m must be an unsigned 16-bit integer in \[0, 65535\]"),
    ({"m": 1, "s": 32}, r"s=32 is not allowed: s must be in \[0, 31\]"),
    ({"m": 1, "s": -1}, r"s=-1 is not allowed: s must be in \[0, 31\]"),
    ({"m": 1.5, "s": 0}, r"m=1.5 is not allowed: m must be an integer"),
    ({"m": 1, "s": "3"}, r"s='3' is not allowed: s must be an integer"),
    ({"m": True, "s": 0}, r"m=True is not allowed: m must be an integer"),
    ({"m": 1, "s": 0, "z_out": -1}, r"z_out=-1 is not allowed: a zero point is an unsigned activation code"),
    ({"m": 1, "s": 0, "relu": 1}, r"relu=1 is not allowed: relu must be True or False"),
])
def test_requant_refuses_bad_values_naming_the_field(kw, msg):
    with pytest.raises(ValueError, match=msg):
        Requant(**kw)


@pytest.mark.parametrize("args, msg", [
    ((70000, 1, 1), r"ma=70000 is not allowed: ma must be an unsigned 16-bit integer"),
    ((1, -2, 1), r"mb=-2 is not allowed: mb must be an unsigned 16-bit integer"),
    ((1, 1, 40), r"s=40 is not allowed: s must be in \[0, 31\]"),
])
def test_add_params_refuse_bad_values(args, msg):
    with pytest.raises(ValueError, match=msg):
        AddParams(*args)


def test_pool_params_need_a_requant():
    assert PoolParams(Requant(3, 4)).requant == Requant(3, 4)
    with pytest.raises(ValueError, match=r"requant=\(1, 2\) is not allowed: requant must be a Requant"):
        PoolParams((1, 2))


# --- WeightParams ------------------------------------------------------------------------------
def test_weight_params_store_read_only_int64_copies():
    w = np.array([[1, -2, 3]], dtype=np.int8)
    p = WeightParams(w, [5], Requant(1, 0))
    assert p.w.dtype == np.int64 and p.bias.dtype == np.int64 and p.bias.tolist() == [5]
    w[0, 0] = 99                                   # the caller's array is not aliased
    assert p.w.tolist() == [[1, -2, 3]]
    with pytest.raises(ValueError):
        p.w[0, 0] = 7                              # read-only
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.requant = None
    assert p.kernel.shape == (1, 3, 1, 1) and p.bias_or_zeros.tolist() == [5]
    assert WeightParams(np.zeros((2, 1, 3, 3), int)).bias_or_zeros.tolist() == [0, 0]


@pytest.mark.parametrize("kw, msg", [
    ({"w": np.zeros((2, 2), float)}, r"w must be an integer array, got dtype float64"),
    ({"w": np.zeros((2, 2, 2), int)}, r"w has shape \(2, 2, 2\): w must be \[Cout, Cin, K, K\] \(conv\) or \[out, in\]"),
    ({"w": np.zeros((2, 1, 3, 2), int)}, r"w has shape \(2, 1, 3, 2\): w must be \[Cout, Cin, K, K\]"),
    ({"w": np.zeros((0, 3), int)}, r"w has shape \(0, 3\): every dimension of w must be >= 1"),
    ({"w": np.zeros((2, 3), int), "bias": [1, 2, 3]}, r"bias has shape \(3,\): bias must have shape \(2,\)"),
    ({"w": np.zeros((2, 3), int), "bias": [0.5, 1.0]}, r"bias must be an integer array, got dtype float64"),
    ({"w": np.zeros((2, 3), int), "requant": {"m": 1, "s": 0}}, r"requant=\{'m': 1, 's': 0\} is not allowed: "
                                                                 r"requant must be a Requant or None"),
])
def test_weight_params_refuse_bad_values(kw, msg):
    with pytest.raises(ValueError, match=msg):
        WeightParams(**kw)


def test_weight_range_by_w_bits():
    WeightParams(np.array([[127, -128]])).check_w_bits(8)
    WeightParams(np.array([[7, -8]])).check_w_bits(4)
    with pytest.raises(ValueError, match=r"w has values in \[-128, 128\]: w must lie in \[-128, 127\] \(signed 8-bit\)"):
        WeightParams(np.array([[128, -128]])).check_w_bits(8)
    with pytest.raises(ValueError, match=r"w has values in \[-9, 0\]: w must lie in \[-8, 7\] \(signed 4-bit\)"):
        WeightParams(np.array([[-9, 0]])).check_w_bits(4)


def test_weight_params_checked_against_a_layer():
    conv = Conv2d(name="c", cin=2, cout=4, k=3)
    fc = Linear(name="f", in_features=5, out_features=3)
    WeightParams(np.zeros((4, 2, 3, 3), int), requant=Requant(1, 0)).check_for(conv, raw=False)
    WeightParams(np.zeros((3, 5), int)).check_for(fc, raw=True)
    with pytest.raises(ValueError, match=r"layer 'c': w has shape \(4, 2, 1, 1\), the layer needs \(4, 2, 3, 3\)"):
        WeightParams(np.zeros((4, 2, 1, 1), int), requant=Requant(1, 0)).check_for(conv, raw=False)
    with pytest.raises(ValueError, match=r"layer 'f': w has shape \(5, 3\), the layer needs \(3, 5\)"):
        WeightParams(np.zeros((5, 3), int)).check_for(fc, raw=True)
    with pytest.raises(ValueError, match=r"layer 'c': requant is None, but the layer requantizes"):
        WeightParams(np.zeros((4, 2, 3, 3), int)).check_for(conv, raw=False)
    with pytest.raises(ValueError, match=r"w must lie in \[-2, 1\]"):
        WeightParams(np.full((3, 5), 2)).check_for(fc, raw=True, w_bits=2)


# --- NetworkParams -----------------------------------------------------------------------------
def _params():
    return NetworkParams({
        "c1": WeightParams(np.arange(72).reshape(4, 2, 3, 3) - 36, np.array([1, -1, 2, 0]), Requant(300, 12)),
        "pool": NoParams(),
        "c2": WeightParams(np.ones((4, 4, 1, 1), int), None, Requant(1, 1)),
        "add": AddParams(1, 1, 1),
        "gap": PoolParams(Requant(58254, 19)),
        "fc": WeightParams(np.array([[1, 2, 3, 4], [-1, 0, 0, 0], [0, 0, 0, 5]]), np.array([0, 0, 7])),
    })


def test_network_params_fit_the_network():
    _params().check(_net(), w_bits=8)


def test_network_params_refusals():
    with pytest.raises(ValueError, match=r"layer 'c1': parameters must be one of WeightParams, PoolParams, AddParams, "
                                         r"NoParams, got dict"):
        NetworkParams({"c1": {"w": np.zeros((4, 2, 3, 3), int), "m": 1, "s": 0}})
    p = dict(_params())
    del p["gap"]
    with pytest.raises(ValueError, match=r"no parameters for layer 'gap'"):
        NetworkParams(p).check(_net())
    p = {**_params(), "add": NoParams()}
    with pytest.raises(ValueError, match=r"layer 'add' \(Add\) needs AddParams, got NoParams"):
        NetworkParams(p).check(_net())
    p = {**_params(), "c2": WeightParams(np.ones((4, 4, 1, 1), int))}       # c2 is not the last layer
    with pytest.raises(ValueError, match=r"layer 'c2': requant is None"):
        NetworkParams(p).check(_net())
    with pytest.raises(ValueError, match=r"w must lie in \[-8, 7\]"):
        _params().check(_net(), w_bits=4)                                     # c1 holds -36..35


def test_json_form_by_hand():
    p = WeightParams(np.array([[1, -2]]), np.array([3]), Requant(5, 2))
    assert p.to_dict() == {"kind": "weights", "w": [[1, -2]], "bias": [3], "requant": {"m": 5, "s": 2}}
    assert AddParams(2, 3, 4).to_dict() == {"kind": "add", "ma": 2, "mb": 3, "s": 4}
    assert PoolParams(Requant(9, 1)).to_dict() == {"kind": "pool", "requant": {"m": 9, "s": 1}}
    assert NoParams().to_dict() == {"kind": "none"}
    text = NetworkParams({"a": AddParams(2, 3, 4)}).to_json()
    assert json.loads(text) == {"version": 1, "layers": {"a": {"kind": "add", "ma": 2, "mb": 3, "s": 4}}}


def test_json_round_trip():
    p = _params()
    back = NetworkParams.from_json(p.to_json())
    assert back == p and list(back) == list(p)
    assert back["c2"].bias is None and back["fc"].requant is None
    assert back["c1"].w.shape == (4, 2, 3, 3) and back["c1"].w.dtype == np.int64
    assert back != NetworkParams({**p, "add": AddParams(1, 2, 1)})


def test_json_refusals():
    with pytest.raises(ValueError, match="not a version-1 parameter file"):
        NetworkParams.from_json('{"c1": {"w": [[1]]}}')
    with pytest.raises(ValueError, match=r"kind='conv' is not allowed"):
        NetworkParams.from_json('{"version": 1, "layers": {"c1": {"kind": "conv"}}}')
    with pytest.raises(ValueError, match=r"m=70000 is not allowed"):           # values are validated on load
        NetworkParams.from_json('{"version": 1, "layers": {"g": {"kind": "pool", "requant": {"m": 70000, "s": 1}}}}')


# --- gen.quantize ------------------------------------------------------------------------------
@pytest.mark.parametrize("scale, want", [
    (1.0, (32768, 15)),            # s = floor(log2(65535)) = 15, M = 2**15
    (1 / 15, (34953, 19)),         # s = floor(log2(65535*15 = 983025)) = 19, M = round(524288/15 = 34952.53)
    (1 / 9, (58254, 19)),          # log2(589815) = 19.17; round(524288/9 = 58254.2)
    (1e6, (65535, 0)),             # log2(0.066) < 0 -> s = 0; M saturates at 65535
    (1e-12, (1, 31)),              # s capped at 31; M = max(1, round(0.002))
    (0.0, (0, 0)),
    (-3.0, (0, 0)),
])
def test_scale_to_requant_by_hand(scale, want):
    rq = scale_to_requant(scale)
    assert (rq.m, rq.s) == want


def test_random_weights_deterministic_and_valid():
    net = _net()
    p = random_weights(net, 4)
    assert isinstance(p, NetworkParams)
    assert p == random_weights(net, 4)
    assert p != random_weights(net, 5)
    p.check(net, w_bits=8)
    assert [type(p[n]).__name__ for n in p] == ["WeightParams", "NoParams", "WeightParams", "AddParams",
                                                "PoolParams", "WeightParams"]
    assert p["add"] == AddParams(1, 1, 1)
    assert p["gap"] == PoolParams(Requant(58254, 19))     # 1 / (3*3), see above
    assert p["fc"].requant is not None                     # every weight layer gets one, the last too
    small = random_weights(net, 4, w_bits=3)
    small.check(net, w_bits=3)
    assert small["c1"].w.min() == -4 and small["c1"].w.max() == 3    # 72 uniform draws over [-4, 3]


def test_random_weights_make_informative_activations():
    from sim.golden import run_network
    net = _net()
    x = np.random.default_rng(0).integers(0, 256, size=net.input_shape)
    acts = run_network(net, random_weights(net, 1), x, return_all=True)
    for name in ("c1", "c2"):                              # neither all 0 nor mostly saturated
        assert 0 < (acts[name] == 0).mean() < 0.9 and (acts[name] == 255).mean() < 0.25, name
