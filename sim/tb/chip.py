"""cocotb testbench for ``hw.chip.Chip`` (run through ``sim.runner`` by ``flow.chip_check``).

Arguments (``sim.runner.tb_args``): ``prog`` (the programming beats, packed payloads),
``in_words`` (per image, its input words), ``logit_words`` (output words per image),
``expected_logits`` (per image, the golden model's raw values), ``g`` (bus bits),
``stages`` (per stage: ``name``, ``words`` per image and ``value_bits``/``signed``, and
``expected`` words per image — the golden model's tensor of that layer, as the stage sends
it), ``predicted_latency`` / ``predicted_interval`` (``gen.perf.chip_timing``),
``ready_prob``, ``gap_prob``, ``seed``, ``check_timing``, ``target_clock`` (an emulation build,
``hw.decoupled``: transfers are stamped with the chip's ``cycles``, its target clocks, and
``host_cycles`` is reported beside them) and ``timeout_scale`` (host clocks per target clock
the timeouts allow).

All weights are programmed through ``prog`` first (its clocks are reported apart); then
every image streams in back to back. Each image's latency is measured from the clock its
first input word is accepted to the clock its last logit word is taken, and the interval
between consecutive images' first words. The trace taps say which stage diverged first: the
design runs inside a ``sim.recorder.tap_recorder`` wrapper, which writes every tap word to
``tap_file`` from inside the simulator, read here at the end.
"""
from __future__ import annotations

import time

import cocotb

from sim.recorder import read_taps
from sim.stream import PortCounter, unpack
from sim.testbench import TB


@cocotb.test()
async def chip_matches_golden(dut):
    """Program the weights, stream images, compare logits and traces, check clocks."""
    tb = TB(dut)
    a = tb.args
    n_img = len(a["in_words"])
    target = a.get("target_clock", False)
    scale = a.get("timeout_scale", 1)
    if target:
        tb.stamps = PortCounter(dut.cycles)
    prog = tb.driver("prog", gap_prob=0.0)
    images = tb.driver("i", rng=tb.rng)
    logits = tb.sink("o")
    await tb.start()

    t0, wall0 = tb.now, time.perf_counter()
    prog.send(a["prog"])
    await tb.wait_count(prog, len(a["prog"]), timeout=scale * (10 * len(a["prog"]) + 100))
    prog_clocks = tb.now - t0
    img0, target0 = tb.now, int(dut.cycles.value)

    for words in a["in_words"]:
        images.send(words)
    per_img = a["logit_words"]
    budget = scale * 20 * (max(a["predicted_latency"]) + sum(a["predicted_interval"]) + 1000)
    await tb.wait_count(logits, per_img * n_img, timeout=budget)
    await tb.clocks(20)   # nothing extra may follow
    wall, clocks = time.perf_counter() - wall0, tb.now - t0
    image_clocks, image_target = tb.now - img0, int(dut.cycles.value) - target0
    taps = read_taps(a["tap_file"], len(a["stages"]))

    got_words = [p for _, p in logits.received]
    mismatches, first = 0, None
    got_logits = []
    for b in range(n_img):
        chunk = got_words[b * per_img:(b + 1) * per_img]
        vec = 0
        for n, wd in enumerate(chunk):
            vec |= wd << (n * a["g"])
        vals = unpack(vec, 32, len(a["expected_logits"][b]), signed=True) if len(chunk) == per_img else None
        got_logits.append(vals)
        if vals != a["expected_logits"][b]:
            mismatches += 1
            if first is None:
                first = {"image": b, "got": vals, "expected": a["expected_logits"][b]}

    # which stage diverged first (the earliest stage whose words differ from the golden tensor)
    diverged = None
    for n, st in enumerate(a["stages"]):
        want = [w for img in st["expected"] for w in img]
        if taps[n][:len(want)] != want:
            k = next((i for i, (x, y) in enumerate(zip(taps[n], want)) if x != y), min(len(taps[n]), len(want)))
            diverged = {"stage": n, "layer": st["name"], "word": k, "image": k // max(1, st["words"])}
            break

    in_len = [len(w) for w in a["in_words"]]
    firsts, lasts = [], []
    for b in range(n_img):
        q = sum(in_len[:b])
        if len(images.accepted) > q:
            firsts.append(images.accepted[q][0])
        if len(logits.received) >= (b + 1) * per_img:
            lasts.append(logits.received[(b + 1) * per_img - 1][0])
    latency = [o - i for i, o in zip(firsts, lasts)]
    interval = [y - x for x, y in zip(firsts, firsts[1:])]
    tb.report({
        "images": n_img, "mismatches": mismatches, "first_mismatch": first, "logits": got_logits,
        "diverged": diverged, "measured_latency": latency, "measured_interval": interval,
        "predicted_latency": a["predicted_latency"], "predicted_interval": a["predicted_interval"],
        "programming_clocks": prog_clocks, "prog_beats": len(a["prog"]),
        "logit_words": len(logits.received), "logit_words_expected": per_img * n_img,
        "clocks": int(dut.cycles.value),
        # simulator speed over programming and images (not start-up): clocks per wall second
        "sim_clocks": clocks, "sim_wall_seconds": round(wall, 3), "clocks_per_second": round(clocks / wall),
        **({"host_cycles": int(dut.host_cycles.value), "image_host_clocks": image_clocks,
             "image_target_clocks": image_target} if target else {}),
    })
    assert len(logits.received) == per_img * n_img, (
        f"received {len(logits.received)} logit words, expected {per_img * n_img}")
    assert mismatches == 0 and diverged is None, (
        f"{mismatches} of {n_img} images differ from sim.golden; first {first}; traces diverge at {diverged}")
    if a.get("check_timing", True):
        assert latency == a["predicted_latency"], f"latency {latency} != predicted {a['predicted_latency']}"
        assert interval == a["predicted_interval"], f"interval {interval} != predicted {a['predicted_interval']}"
