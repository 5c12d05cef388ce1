"""cocotb testbench for the generated interconnect (``hw.interconnect``), run via ``sim.runner``.

Arguments (``sim.runner.tb_args``):
``flows`` ``[{id, src, dst, beats}]``, ``tx``/``rx`` (the cores that send / receive: their
ports ``tx__<c>`` / ``rx__<c>`` are driven), ``flow_bits``,
``width``, ``n_links``, ``gap_prob`` (random gaps at the sources), ``ready_prob`` (random
back-pressure at the sinks), ``seed``, ``timeout``.

Two phases:

1. **zero-load probe**: one beat per flow, alone in the fabric, no back-pressure; its
   latency (edge accepted at ``tx`` -> edge taken at ``rx``) is reported per flow;
2. **load**: every source core sends all beats of its flows, randomly interleaved
   between flows (in order within a flow), random payloads, random gaps; every sink
   applies random back-pressure. Every beat must arrive exactly once, in order within its
   flow, at its destination core; ``link_fire`` is counted per link.

Reported: ``probe_latency`` {flow: clocks}, ``link_beats`` [per link], ``cycles`` of the
load phase, per-flow ``latency`` (min/mean/max), ``delivered``, ``errors``.
"""
from __future__ import annotations

import cocotb
from cocotb.triggers import ReadOnly, RisingEdge

from sim.testbench import TB


class LinkCounter:
    """Counts the transfers on every bit of ``link_fire`` (sampled in ReadOnly)."""

    def __init__(self, dut, n):
        self.dut, self.n = dut, n
        self.counts = [0] * n
        self.cycles = 0

    def start(self):
        cocotb.start_soon(self._run())
        return self

    async def _run(self):
        while True:
            await RisingEdge(self.dut.clk)
            await ReadOnly()
            self.cycles += 1
            v = int(self.dut.link_fire.value)
            k = 0
            while v:
                if v & 1:
                    self.counts[k] += 1
                v >>= 1
                k += 1


@cocotb.test()
async def interconnect_delivers_every_beat(dut):
    tb = TB(dut)
    a, rng = tb.args, tb.rng
    fb, width = a["flow_bits"], a["width"]
    flows = {f["id"]: f for f in a["flows"]}
    # phase 1 runs without gaps or back-pressure; phase 2 sets the run's
    drivers = {c: tb.driver(tb.member("tx", c), gap_prob=0.0) for c in a["tx"]}
    sinks = {c: tb.sink(tb.member("rx", c), ready_prob=1.0) for c in a["rx"]}
    await tb.start()
    links = LinkCounter(dut, a["n_links"]).start()
    errors: list[str] = []

    def beat(fid, data):
        return fid | (data << fb)

    def split(p):
        return p & ((1 << fb) - 1), p >> fb

    # --- phase 1: zero-load probe, one beat per flow --------------------------------------
    probe = {}
    for fid, f in sorted(flows.items()):
        drv, snk = drivers[f["src"]], sinks[f["dst"]]
        n0, r0 = len(drv.accepted), len(snk.received)
        drv.send([beat(fid, rng.getrandbits(width))])
        await tb.wait_for(lambda: len(snk.received) > r0, timeout=200)
        if len(snk.received) != r0 + 1:
            errors.append(f"probe of flow {fid} not delivered")
            continue
        probe[fid] = snk.received[r0][0] - drv.accepted[n0][0]
    for d in drivers.values():
        d.accepted.clear()
    for s in sinks.values():
        s.received.clear()
    await tb.clocks(3)

    # --- phase 2: all flows, random interleaving, gaps and back-pressure -------------------
    expected: dict[int, list[int]] = {fid: [rng.getrandbits(width) for _ in range(f["beats"])]
                                      for fid, f in flows.items()}
    for c, drv in drivers.items():
        mine = [fid for fid, f in flows.items() if f["src"] == c]
        cursor = {fid: 0 for fid in mine}
        seq = []
        while mine:
            fid = rng.choice(mine)
            seq.append(beat(fid, expected[fid][cursor[fid]]))
            cursor[fid] += 1
            if cursor[fid] == len(expected[fid]):
                mine.remove(fid)
        drv.gap_prob = a.get("gap_prob", 0.0)
        drv.send(seq)
    for s in sinks.values():
        s.ready_prob = a.get("ready_prob", 1.0)
    total = sum(len(v) for v in expected.values())
    links.counts = [0] * a["n_links"]
    start = tb.now
    await tb.wait_for(lambda: sum(len(s.received) for s in sinks.values()) >= total
                      and all(d.idle for d in drivers.values()), timeout=a.get("timeout", 200_000))
    await tb.clocks(5)  # anything extra would show up now
    cycles = tb.now - start

    # --- checks -------------------------------------------------------------------------
    sent_t = {fid: [] for fid in flows}
    for c, drv in drivers.items():
        for t, p in drv.accepted:
            fid, _ = split(p)
            sent_t[fid].append(t)
    got: dict[int, list[tuple[int, int]]] = {fid: [] for fid in flows}
    for c, snk in sinks.items():
        for t, p in snk.received:
            fid, data = split(p)
            if fid not in flows:
                errors.append(f"core {c} received unknown flow id {fid}")
                continue
            if flows[fid]["dst"] != c:
                errors.append(f"flow {fid} beat delivered to core {c}, not its destination {flows[fid]['dst']}")
            got[fid].append((t, data))
    lat = {}
    for fid in flows:
        data = [d for _, d in got[fid]]
        if data != expected[fid]:
            n_ok = next((k for k, (x, y) in enumerate(zip(data, expected[fid])) if x != y), min(len(data), len(expected[fid])))
            errors.append(f"flow {fid}: {len(data)} beats received of {len(expected[fid])}, first difference at {n_ok}")
        ls = [t_r - t_s for (t_r, _), t_s in zip(got[fid], sent_t[fid])]
        if ls:
            lat[fid] = [min(ls), sum(ls) / len(ls), max(ls)]
    tb.report({"probe_latency": {str(k): v for k, v in probe.items()}, "link_beats": links.counts,
               "cycles": cycles, "latency": {str(k): v for k, v in lat.items()},
               "delivered": sum(len(v) for v in got.values()), "sent": total, "errors": errors[:20]})
    assert not errors, "; ".join(errors[:5])
