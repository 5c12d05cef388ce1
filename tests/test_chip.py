"""The whole chip (hw.chip.Chip) under cocotb: real and random images streamed back to back,
every logit and every stage's words bit-exact vs sim.golden.run_plan, every image's
latency and interval == gen.perf.chip_timing; plus the chip plan in gen.

Fast set: a tiny conv -> pool -> conv -> linear chip, both mappings (novel on 5PP, conventional
on a mesh; one Verilator build each; all its checks run on that build). Slow set: the trained
digits chip, both mappings on both fabrics, with and without back-pressure.
"""
import dataclasses

import numpy as np
import pytest

from gen.chipplan import ChipError, lower_for_chip, plan_chip
from gen.config import ChipConfig
from gen.network import Conv2d, Linear, MaxPool, Network, zoo
from gen.params import NetworkParams
from gen.quantize import random_weights
from sim.golden import run_network, run_plan
from flow.chip_check import ChipDesign, design_from_network, run_chip_check

SMALL = ChipConfig.preset("small")


def tiny() -> Network:
    return Network("tiny", (2, 6, 6), [
        Conv2d(name="c1", cin=2, cout=8, k=3, pad=1),
        MaxPool(name="p1", k=2),
        Conv2d(name="c2", cin=8, cout=6, k=3, pad=1),
        Linear(name="fc", in_features=6 * 3 * 3, out_features=5),
    ])


def tiny_params(seed=3) -> NetworkParams:
    """Random weights, with input zero points on both padded convolutions (their padding
    pixels then carry z_in, DESIGN.md §3) and an output zero point on the first (its ReLU
    then clamps at z_out)."""
    p = random_weights(tiny(), seed)
    z_in = {"c1": 3, "c2": 9}
    out = {n: dataclasses.replace(p[n], z_in=z_in[n]) if n in z_in else p[n] for n in p}
    out["c1"] = dataclasses.replace(out["c1"], requant=dataclasses.replace(out["c1"].requant, z_out=5))
    return NetworkParams(out)


def tiny_design(mapping: str, chip=SMALL, seed=3, topology="5pp") -> ChipDesign:
    return ChipDesign(tiny(), tiny_params(seed), chip, mapping, topology=topology)


# --- gen: the chip plan ----------------------------------------------------------------------
def test_lowering_keeps_the_network():
    """A linear layer on a map becomes the equivalent convolution: same logits."""
    net = tiny()
    p = random_weights(net, 1)
    low, lp = lower_for_chip(net, p)
    assert isinstance(low.layers[-1], Conv2d) and low.layers[-1].k == 3
    x = np.random.default_rng(0).integers(0, 256, net.input_shape)
    assert np.array_equal(run_network(net, p, x), run_network(low, lp, x))
    cp = plan_chip(net, p, SMALL, "novel")
    assert np.array_equal(run_plan(cp.plan, cp.params, x), run_network(net, p, x))   # lossless ADC


@pytest.mark.parametrize("mapping", ["novel", "conventional"])
def test_padding_with_the_input_zero_point(mapping):
    """The crossbar walk pads with z_in as the integer reference (gen.intops) does; with 0
    padding the two would differ at the border."""
    net, p = tiny(), tiny_params()
    x = np.random.default_rng(2).integers(0, 256, net.input_shape)
    cp = plan_chip(net, p, SMALL, mapping)
    got = run_plan(cp.plan, cp.params, x, return_all=True)
    assert np.array_equal(got["fc"], run_network(net, p, x))
    zero = NetworkParams({n: dataclasses.replace(p[n], z_in=0) if n in ("c1", "c2") else p[n] for n in p})
    assert not np.array_equal(run_plan(cp.plan, plan_chip(net, zero, SMALL, mapping).params, x, return_all=True)["c1"],
                              got["c1"])


def test_chip_plan_stages_and_programming():
    cp = tiny_design("novel").cp
    assert [s.name for s in cp.stages] == ["c1", "c2", "fc"]
    assert [(ln.producer, ln.pool) for ln in cp.links] == [(0, 2), (1, None)]
    assert cp.stages[1].mapping == "novel" and cp.stages[-1].raw
    beats = cp.programming()
    # every weight row of every placed block, once
    assert len(beats) == sum(p.rows[1] - p.rows[0] for p in cp.plan.placements)
    assert {b[0] for b in beats} == set(range(cp.n_xbars))


def test_chip_fabric_latency_per_topology():
    """Each link crosses the fabric: one link FIFO on 5PP; on a mesh or torus the snake
    placement makes every flow one hop, which passes two router input FIFOs."""
    for topo, fifo_clocks in [("5pp", 1), ("mesh", 2), ("torus", 2)]:
        cp = tiny_design("novel", topology=topo).cp
        assert cp.to_dict()["topology"]["hops"] == [1, 1]
        assert [ln.fabric_clocks for ln in cp.links] == [fifo_clocks] * 2
        # the pool link adds its own clocks: assemble, register, then out.wpp words
        assert cp.links[0].delay == 2 + cp.links[0].out.wpp + fifo_clocks
    with pytest.raises(ChipError, match="topology 'ring' is not allowed: choose one of 5pp, mesh, torus"):
        tiny_design("novel", topology="ring")


@pytest.mark.parametrize("name, match", [("resnet20", "GlobalAvgPool|Add|fed by the one before"),
                                         ("vgg16", "one tile")])
def test_chip_refusals_name_the_layer(name, match):
    net = zoo(name)
    with pytest.raises(ChipError, match=match):
        plan_chip(net, random_weights(net, 0, calibrate=False), SMALL, "novel")


# --- RTL ------------------------------------------------------------------------------------------
def _check(rep, n):
    assert rep["mismatches"] == 0 and rep["diverged"] is None, rep
    if rep["timing_checked"]:
        assert rep["measured_latency"] == rep["predicted_latency"], rep
        assert rep["measured_interval"] == rep["predicted_interval"], rep
        assert len(rep["measured_latency"]) == n
    assert rep["passed"], rep


def test_tiny_chip_novel(sim_cache):
    d = tiny_design("novel")
    x = np.random.default_rng(5).integers(0, 256, (4, 2, 6, 6))
    _check(run_chip_check(d, x, seed=1, cache_dir=sim_cache), 4)
    # random input gaps and output back-pressure: nothing lost, duplicated or reordered
    _check(run_chip_check(d, x, seed=2, ready_prob=0.3, gap_prob=0.4, cache_dir=sim_cache), 4)

    # a wrong weight in one layer is caught, and the traces name that layer
    def corrupt(args):
        base = d.cp.xbar_base(1)
        lay = __import__("hw.pe", fromlist=["prog_layout"]).prog_layout(d.chip.crossbar, d.cp.n_xbars)
        for k, v in enumerate(args["prog"]):
            if (v >> lay["xbar"].offset) & ((1 << lay["xbar"].shape.width) - 1) == base:
                args["prog"][k] = v ^ (0x7F << lay["weights"].offset)     # flip a weight's low bits
                break
        return args

    rep = run_chip_check(d, x[:2], seed=3, cache_dir=sim_cache, args_hook=corrupt)
    assert not rep["passed"] and rep["diverged"]["layer"] == "c2", rep


def test_tiny_chip_conventional_mesh(sim_cache):
    d = tiny_design("conventional", topology="mesh")
    assert {s.mapping for s in d.cp.stages} == {"conventional"}
    x = np.random.default_rng(6).integers(0, 256, (3, 2, 6, 6))
    _check(run_chip_check(d, x, seed=4, cache_dir=sim_cache), 3)


# --- slow set: the trained digits chip ---------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("mapping, topology", [("novel", "5pp"), ("conventional", "5pp"), ("novel", "mesh")])
def test_digits_chip(mapping, topology, sim_cache):
    from gen.models import digits_dataset
    d = design_from_network("digits", SMALL, mapping, topology=topology)
    assert d.source == "trained"
    x, labels = digits_dataset("test")
    rep = run_chip_check(d, x[:6], labels=labels[:6], seed=1, cache_dir=sim_cache)
    _check(rep, 6)
    assert rep["accuracy"] >= 5 / 6
    rep = run_chip_check(d, x[6:10], labels=labels[6:10], seed=2, ready_prob=0.4, cache_dir=sim_cache)
    _check(rep, 4)


@pytest.mark.slow
def test_digits_chip_lossy_adc(sim_cache):
    """A lossy ADC: the chip follows the crossbar-exact model, not the plain convolution."""
    chip = dataclasses.replace(SMALL, crossbar=dataclasses.replace(SMALL.crossbar, adc_bits=6, adc_shift=1))
    d = design_from_network("digits", chip, "novel")
    x = np.random.default_rng(9).integers(0, 256, (3, 1, 8, 8))
    gold = run_plan(d.cp.plan, d.cp.params, x[0])
    assert not np.array_equal(gold, run_network(d.network, d.params, x[0]))
    _check(run_chip_check(d, x, seed=5, cache_dir=sim_cache), 3)


@pytest.mark.slow
def test_onnx_imported_digits_chip(sim_cache):
    """The front end's path into the chip: the float digits ONNX model quantized on the fly
    (gen.onnx_import + gen.quantize) runs on the chip bit-exact, clocks exact; its classes
    are the int8 golden model's."""
    from pathlib import Path
    from gen.models import digits_dataset
    from gen.onnx_import import load_onnx
    from gen.quantize import quantize
    fm = load_onnx(Path(__file__).resolve().parents[1] / "gen" / "models" / "digits.onnx")
    xf, _ = digits_dataset("train", codes=False)
    qm = quantize(fm, xf[:200])
    xt, yt = digits_dataset("test", codes=False)
    codes = np.stack([qm.quantize_input(x) for x in xt[:4]])
    d = ChipDesign(qm.net, qm.params, SMALL, "novel", source="digits.onnx")
    rep = run_chip_check(d, codes, labels=yt[:4], seed=7, cache_dir=sim_cache)
    _check(rep, 4)
    want = [int(np.argmax(run_network(qm.net, qm.params, c))) for c in codes]
    assert rep["predictions"] == want


@pytest.mark.slow
def test_digits_chip_chaos(sim_cache):
    """Random input idles and random output back-pressure over many images: every logit
    delivered once, in order, bit-exact (no clock check: the stalls are random)."""
    from gen.models import digits_dataset
    d = design_from_network("digits", SMALL, "novel")
    x, labels = digits_dataset("test")
    rep = run_chip_check(d, x[:16], labels=labels[:16], seed=11, ready_prob=0.2, gap_prob=0.6, cache_dir=sim_cache)
    _check(rep, 16)
    assert rep["images"] == 16 and not rep["timing_checked"]
