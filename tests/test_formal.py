"""Bounded proofs (SymbiYosys: yowasp-sby, smtbmc z3) of the stream handshake rules —
valid held until ready, payload stable while stalled, no beat created or lost, nothing held
back, data and order — for the post units, the chip's links, the router and the layer
engine's output path (formal/stream_props.py, formal/blocks.py, formal/layer_output.py).
Every property is first shown to fail, by itself, on a deliberately broken variant.

The default run keeps one fast representative (the words-to-pixel link at depth 10, its real
block and one fault); the rest is ``slow``."""
import pytest

from formal.blocks import BLOCKS, faults_for
from formal.layer_output import BROKEN
from formal.stream_props import bmc

DEPTH = {"router": 16, "residual": 16, "layer_out": 10, "maxpool": 24}
FAULT_DEPTH = {"router": 14, "layer_out": 10}


def _prove(block, tmp_path, depth, **kw):
    return bmc(BLOCKS[block](**kw), f"{block}_{kw.get('fault') or kw.get('broken') or 'real'}", depth, tmp_path,
               cover=not kw)


def test_fast_words2pixel_passes_and_drop_fails(tmp_path):
    real = _prove("words2pixel", tmp_path, 10)
    assert real.passed and real.covered, real.log[-3000:]
    bad = _prove("words2pixel", tmp_path, 10, fault="drop", only="lost")
    assert not bad.passed and bad.failed == ["lost"], bad.log[-3000:]


@pytest.mark.slow
@pytest.mark.parametrize("block", list(BLOCKS))
def test_block_passes(block, tmp_path):
    r = _prove(block, tmp_path, DEPTH.get(block, 20))
    assert r.passed and r.covered, (r.failed, r.log[-3000:])


@pytest.mark.slow
@pytest.mark.parametrize("block, fault", [(b, f) for b in BLOCKS for f in faults_for(b)])
def test_each_property_fails_on_its_fault(block, fault, tmp_path):
    prop = faults_for(block)[fault]
    r = _prove(block, tmp_path, FAULT_DEPTH.get(block, 14), fault=fault, only=prop)
    assert not r.passed and r.failed == [prop], (r.failed, r.log[-3000:])


@pytest.mark.slow
@pytest.mark.parametrize("broken", sorted(BROKEN))
def test_layer_output_fails_when_broken(broken, tmp_path):
    r = _prove("layer_out", tmp_path, 12, broken=broken, only=BROKEN[broken])
    assert not r.passed and r.failed == [BROKEN[broken]], (r.failed, r.log[-3000:])
