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

# BMC depths, each the least that covers what the block needs (docs/formal.md, results):
# maxpool one 12-beat frame, its last output held to the frame's last beat and taken (+2);
# avgpool two 3-beat frames and more; the links four 3-word frames; the router's 1-deep
# FIFOs filled and drained; layer_out (a step is 2 clocks, 2 words) four steps and a reset.
DEPTH = {"requantize": 12, "maxpool": 14, "avgpool": 8, "residual": 12, "words2pixel": 12, "pixel2words": 12,
         "router": 8, "layer_out": 10}
# a broken variant may need more clocks to show its failure (it is found quickly): maxpool's
# and avgpool's ``dup`` a second pooled beat taken (maxpool's second is due on the frame's
# last beat); layer_out's ``ungated`` a fifth word into the 4-deep FIFO
FAULT_DEPTH = dict(DEPTH, maxpool=15, avgpool=12, layer_out=12)


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
    r = _prove(block, tmp_path, DEPTH[block])
    assert r.passed and r.covered, (r.failed, r.log[-3000:])


@pytest.mark.slow
@pytest.mark.parametrize("block, fault", [(b, f) for b in BLOCKS for f in faults_for(b)])
def test_each_property_fails_on_its_fault(block, fault, tmp_path):
    prop = faults_for(block)[fault]
    r = _prove(block, tmp_path, FAULT_DEPTH[block], fault=fault, only=prop)
    assert not r.passed and r.failed == [prop], (r.failed, r.log[-3000:])


@pytest.mark.slow
@pytest.mark.parametrize("broken", sorted(BROKEN))
def test_layer_output_fails_when_broken(broken, tmp_path):
    r = _prove("layer_out", tmp_path, FAULT_DEPTH["layer_out"], broken=broken, only=BROKEN[broken])
    assert not r.passed and r.failed == [BROKEN[broken]], (r.failed, r.log[-3000:])
