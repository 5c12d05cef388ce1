"""The plan-executing golden model equals the direct layer-by-layer model bit for bit."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from gen.config import ChipConfig, CrossbarConfig
from gen.mapping import map_network
from gen.network import Conv2d, Network, zoo
from gen.params import Requant, WeightParams
from gen.quantize import random_weights
from sim.golden import conv2d_int, run_network, run_plan

SMALL = ChipConfig(crossbar=CrossbarConfig(rows=16, cols=21, cell_bits=2), subarrays_per_pe=2, pes_per_tile=9)


def _inputs(net, n, seed):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, size=net.input_shape) for _ in range(n)]


@pytest.mark.parametrize("mapping", ["conventional", "novel"])
@pytest.mark.parametrize("chip", [ChipConfig(), SMALL], ids=["paper", "small"])
def test_digits(mapping, chip):
    net = zoo("digits")
    params = random_weights(net, seed=3)
    for dup in (None, 3):
        plan = map_network(net, chip, mapping=mapping, duplication=dup)
        if mapping == "novel":
            assert any(lp.mapping == "novel" for lp in plan.layers)
        for x in _inputs(net, 3, 4):
            assert np.array_equal(run_plan(plan, params, x), run_network(net, params, x))


@pytest.mark.parametrize("mapping", ["conventional", "novel"])
def test_resnet20(mapping):
    net = zoo("resnet20")
    params = random_weights(net, seed=5)
    plan = map_network(net, ChipConfig(), mapping=mapping)
    x = _inputs(net, 1, 6)[0]
    ref = run_network(net, params, x, return_all=True)
    got = run_plan(plan, params, x, return_all=True)
    for name in ref:
        assert np.array_equal(got[name], ref[name]), name
    # the activations are informative: neither all zero nor all saturated
    acts = np.concatenate([v.ravel() for k, v in ref.items() if k not in ("input", net.output)])
    assert 0.05 < (acts == 0).mean() < 0.8 and (acts == 255).mean() < 0.05


@pytest.mark.slow
@pytest.mark.parametrize("mapping", ["conventional", "novel"])
def test_resnet20_small_chip_pipelined(mapping):
    net = zoo("resnet20")
    params = random_weights(net, seed=7)
    plan = map_network(net, SMALL, mapping=mapping, pipeline=True)
    for x in _inputs(net, 2, 8):
        assert np.array_equal(run_plan(plan, params, x), run_network(net, params, x))


@settings(max_examples=40, deadline=None)
@given(k=st.integers(1, 5), stride=st.integers(1, 2), pad=st.integers(0, 2), cin=st.integers(1, 21),
       cout=st.integers(1, 13), h=st.integers(1, 9), w=st.integers(1, 9), rows=st.sampled_from([4, 7, 16]),
       cols=st.sampled_from([9, 14, 21]), spp=st.integers(1, 3), dup=st.integers(1, 4),
       mapping=st.sampled_from(["conventional", "novel"]), seed=st.integers(0, 2**16))
def test_single_layer_hypothesis(k, stride, pad, cin, cout, h, w, rows, cols, spp, dup, mapping, seed):
    pad = min(pad, k - 1)
    h, w = max(h, k - 2 * pad), max(w, k - 2 * pad)
    net = Network("one", (cin, h, w), [Conv2d(name="c", cin=cin, cout=cout, k=k, stride=stride, pad=pad)])
    chip = ChipConfig(crossbar=CrossbarConfig(rows=rows, cols=cols, cell_bits=2), subarrays_per_pe=spp,
                      pes_per_tile=25)
    rng = np.random.default_rng(seed)
    wts = rng.integers(-128, 128, size=(cout, cin, k, k))
    bias = rng.integers(-1000, 1000, size=cout)
    params = {"c": WeightParams(wts, bias, Requant(1, 0))}
    x = rng.integers(0, 256, size=(cin, h, w))
    plan = map_network(net, chip, mapping=mapping, duplication=dup)
    lp = plan["c"]
    if mapping == "novel" and k > 1 and k * k * cin > rows:
        assert lp.mapping == "novel"
    got = run_plan(plan, params, x)
    assert np.array_equal(got, run_network(net, params, x))
    assert np.array_equal(got, conv2d_int(x, wts, bias, stride, pad))       # independent of run_network


def test_lossy_adc_changes_results_like_the_crossbar_model():
    """With a lossy ADC run_plan still follows the mapping's own blocks, so the two mappings
    differ from the exact result (and may differ from each other)."""
    net = Network("one", (16, 5, 5), [Conv2d(name="c", cin=16, cout=4, k=3, pad=1)])
    chip = ChipConfig(crossbar=CrossbarConfig(rows=16, cols=21, cell_bits=2, adc_bits=3), subarrays_per_pe=2)
    rng = np.random.default_rng(0)
    params = {"c": WeightParams(rng.integers(-128, 128, size=(4, 16, 3, 3)), np.zeros(4, dtype=int))}
    x = rng.integers(0, 256, size=(16, 5, 5))
    exact = run_network(net, params, x)
    for m in ("conventional", "novel"):
        assert not np.array_equal(run_plan(map_network(net, chip, mapping=m), params, x), exact)


def test_run_network_errors():
    net = zoo("digits")
    params = random_weights(net, 0)
    with pytest.raises(ValueError, match="expects"):
        run_network(net, params, np.zeros((1, 4, 4), dtype=np.int64))
    with pytest.raises(ValueError, match="no parameters for layer 'conv1'"):
        run_network(net, {}, np.zeros((1, 8, 8), dtype=np.int64))
