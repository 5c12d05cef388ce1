"""cocotb testbench for ``hw.layer.ConvLayerEngine`` (run through ``sim.runner``).

Arguments (``sim.runner.tb_args``, written by ``flow.layer_check``):
``spec``/``chip``/``mapping``/``duplication``/``raw`` (to rebuild the plan), ``params``
(``gen.params.WeightParams.to_dict``), ``images`` (``[n][Cin][H][W]``), ``in_words`` (per image,
the feature-map words), ``tiles`` (per tile: ``words`` per step, ``cols``: the
``[step slot, c0, c1]`` column blocks those words carry, in order, and the written steps:
per replica of the tile ``[y, x]`` or ``null``), ``g``, ``value_bits``, ``signed``,
``predicted_clocks``, ``expected_reads`` (per image), ``gap_prob``, ``ready_prob``, ``seed``,
``check_timing``, and ``prog`` (the programming beats, written through the ``prog`` port
before the first image, when the engine's crossbars are programmed).

The expected output is ``sim.golden``: ``plan_layer_acc`` (every placement's block through
``crossbar_mvm``) then ``requantize`` (or ``acc + bias`` for a raw layer). Clocks per
image: from the edge its first input word is accepted to the edge its last output word
(over all tiles) is taken. Feature-map reads: the engine's ``fm_reads`` counter.
"""
from __future__ import annotations

import cocotb
import numpy as np

from gen.config import ChipConfig
from gen.intops import finish_weight_layer
from gen.layerspec import LayerSpec, layer_plan
from gen.params import WeightParams
from sim.golden import plan_layer_acc
from sim.stream import unpack
from sim.testbench import TB


def golden_outputs(a: dict) -> list[np.ndarray]:
    """``[Cout, Ho, Wo]`` expected outputs per image, from ``sim.golden``."""
    chip = ChipConfig.from_dict(a["chip"])
    _, lp = layer_plan(LayerSpec.from_dict(a["spec"]), chip, a["mapping"], a["duplication"], a["raw"])
    p = WeightParams.from_dict(a["params"])
    out = []
    for img in a["images"]:
        x = np.array(img, dtype=np.int64)
        if lp.layer.kind == "fc":
            x = x.reshape(-1, 1, 1)
        acc = plan_layer_acc(lp, p, x, chip.crossbar)
        out.append(finish_weight_layer(acc, p, a["raw"], chip.crossbar.a_bits))
    return out


def compare(a: dict, received: list[list[int]], expected: list[np.ndarray]):
    """Check the received words of every tile against the expected maps. Returns
    ``(mismatching pixels, pixels checked, first mismatch or None)``."""
    g, vb, sg = a["g"], a["value_bits"], a["signed"]
    bad, checked, first = 0, 0, None
    for t, tile in enumerate(a["tiles"]):
        nw = tile["words"]
        words = [w for w in received[t]]
        steps_per_img = len(tile["steps"])
        for b, exp in enumerate(expected):
            for si, step in enumerate(tile["steps"]):
                q = (b * steps_per_img + si) * nw
                chunk = words[q:q + nw]
                if len(chunk) < nw:
                    bad += sum(1 for px in step if px is not None)
                    continue
                vec = 0
                for n, wd in enumerate(chunk):
                    vec |= wd << (n * g)
                cols = tile["cols"]        # the tile's values: (step slot, c0, c1) blocks in order
                vals = unpack(vec, vb, sum(c1 - c0 for _, c0, c1 in cols), signed=sg)
                for n, px in enumerate(step):
                    if px is None:
                        continue
                    y, x = px
                    got, want, q = [], [], 0
                    for sl, c0, c1 in cols:
                        if sl == n:
                            got += vals[q:q + c1 - c0]
                            want += exp[c0:c1, y, x].tolist()
                        q += c1 - c0
                    if not want:
                        continue
                    checked += 1
                    if got != want:
                        bad += 1
                        if first is None:
                            first = {"image": b, "tile": t, "pixel": [y, x], "got": got, "expected": want}
    return bad, checked, first


@cocotb.test()
async def layer_matches_golden(dut):
    """Stream images in, collect the output words, compare with sim.golden, check clocks and reads."""
    tb = TB(dut)
    a = tb.args
    n_img = len(a["images"])
    driver = tb.driver("i", rng=tb.rng)
    sinks = [tb.sink(tb.member("o", t)) for t in range(len(a["tiles"]))]
    prog = tb.driver("prog", gap_prob=0.0) if a.get("prog") else None
    await tb.start()
    if prog is not None:     # the crossbars' weights, through the programming port, before any image
        prog.send(a["prog"])
        await tb.wait_for(lambda: len(prog.accepted) >= len(a["prog"]), timeout=10 * len(a["prog"]) + 100)
    for words in a["in_words"]:
        driver.send(words)
    want = [tile["words"] * len(tile["steps"]) * n_img for tile in a["tiles"]]
    await tb.wait_for(lambda: all(len(s.received) >= w for s, w in zip(sinks, want)),
                      timeout=40 * (a["predicted_clocks"] + 100) * n_img)
    await tb.clocks(5)   # nothing extra may follow
    fm_reads = int(dut.fm_reads.value)
    received = [[p for _, p in s.received] for s in sinks]
    expected = golden_outputs(a)
    bad, checked, first = compare(a, received, expected)

    # clocks per image
    per_img_in = len(a["in_words"][0])
    measured = []
    for b in range(n_img):
        if len(driver.accepted) < (b + 1) * per_img_in:
            break
        start = driver.accepted[b * per_img_in][0]
        ends = []
        for t, s in enumerate(sinks):
            n = a["tiles"][t]["words"] * len(a["tiles"][t]["steps"])
            if n and len(s.received) >= (b + 1) * n:
                ends.append(s.received[(b + 1) * n - 1][0])
        if ends:
            measured.append(max(ends) - start)
    extra = [len(s.received) - w for s, w in zip(sinks, want)]
    tb.report({
        "images": n_img, "mismatches": bad, "pixels_checked": checked, "first_mismatch": first,
        "measured_clocks": measured[0] if measured else None, "measured_per_image": measured,
        "predicted_clocks": a["predicted_clocks"], "fm_reads": fm_reads,
        "expected_fm_reads": a["expected_reads"] * n_img, "words_received": [len(s.received) for s in sinks],
        "words_expected": want, "cycles_port": int(dut.cycles.value),
    })
    assert all(e == 0 for e in extra), f"received {extra} words more/less than expected per tile"
    assert bad == 0, f"{bad} of {checked} output pixels differ from sim.golden; first: {first}"
    assert fm_reads == a["expected_reads"] * n_img, (
        f"feature-map buffer read {fm_reads} words, expected {a['expected_reads'] * n_img}")
    if a.get("check_timing", True):
        assert measured and all(c == a["predicted_clocks"] for c in measured), (
            f"measured clocks {measured} != predicted {a['predicted_clocks']}")
        assert int(dut.cycles.value) == a["predicted_clocks"], (
            f"the engine's cycle counter says {int(dut.cycles.value)}, predicted {a['predicted_clocks']}")
