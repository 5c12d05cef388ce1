"""The accelerator: a whole CNN as one layer-pipelined chip (DESIGN.md §9).

``Chip(cp)`` builds, from a :class:`gen.chipplan.ChipPlan`, one
:class:`hw.layer.ConvLayerEngine` per weight layer (each with two input banks, so it fills
one with the next image while it computes on the other) and the links between them: through
a max-pool unit where the network pools (:class:`hw.links.WordsToPixel` →
:class:`hw.post.MaxPoolUnit` → :class:`hw.links.PixelToWords`), then over the interconnect
fabric of the plan's placement (``hw.interconnect.build_fabric``: a link FIFO per flow on
5PP, routers on mesh and torus), one flow per link.

Flow control: an engine starts an image only when its consumer has a free input bank — a
credit counter per link (two credits: the consumer's banks), taken when the producer
starts an image and given back when the consumer releases a bank — so a started image
never waits on its consumer; valid/ready holds everywhere else, and back-pressure on the
logits holds the last engine (and, through the banks, the ones before it). The cycle model
of exactly this is ``gen.perf.chip_timing``.

Ports:
    i: stream in, the images: per image ``cp.input_layout.depth`` words of the first layer's
       feature-map layout (``gen.schedule.FMLayout.pack``).
    o: stream out, the logits: per image the last layer's ``Cout`` raw int32 values in
       ``G``-bit words (lowest value first).
    prog: stream in, the programming port (``hw.pe.prog_layout``): ``(crossbar, row, weights)``
       beats, written as a real chip is programmed, before the first image. The crossbar
       modules hold no weights of their own.
    cycles: out, clocks since reset. status: out, one bit per stage (an image in flight).
    tap_valid, tap_data: out, trace taps (ports, so a testbench reads them from outside the
       black boxes): stage ``n`` hands output word ``tap_data[n]`` on this clock when
       ``tap_valid[n]`` is high.
"""
from __future__ import annotations

from amaranth.hdl import Module, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from gen.chipplan import ChipPlan
from hw.interconnect import build_fabric
from hw.layer import ConvLayerEngine
from hw.links import PixelToWords, WordsToPixel
from hw.pe import prog_layout
from hw.post import MaxPoolUnit

__all__ = ["Chip"]


class Chip(wiring.Component):
    """The whole network as RTL (module docstring)."""

    def __init__(self, cp: ChipPlan):
        self.cp = cp
        first, last = cp.stages[0], cp.stages[-1]
        super().__init__({
            "i": In(stream.Signature(unsigned(first.fm.word_bits))),
            "o": Out(stream.Signature(unsigned(last.bus_bits))),
            "prog": In(stream.Signature(prog_layout(cp.chip.crossbar, cp.n_xbars))),
            "cycles": Out(32), "status": Out(len(cp.stages)),
            "tap_valid": Out(len(cp.stages)),
            "tap_data": Out(unsigned(max(s.bus_bits for s in cp.stages))).array(len(cp.stages)),
        })

    def elaborate(self, platform):
        m = Module()
        cp = self.cp
        lp_by = {lp.name: lp for lp in cp.plan.layers}
        engines = []
        for n, sc in enumerate(cp.stages):
            eng = ConvLayerEngine(lp_by[sc.name], cp.chip, cp.params[sc.name], (cp.xbar_base(n), cp.n_xbars))
            m.submodules[f"stage{n}_{sc.name}"] = eng
            m.d.comb += [eng.prog.valid.eq(self.prog.valid), eng.prog.payload.eq(self.prog.payload),
                         self.status[n].eq(eng.busy)]
            engines.append(eng)
        m.d.comb += self.prog.ready.eq(1)
        m.d.sync += self.cycles.eq(self.cycles + 1)
        wiring.connect(m, wiring.flipped(self.i), engines[0].i)

        fabric = None
        if cp.links:
            m.submodules.fabric = fabric = build_fabric(cp.placement, cp.fabric_bits)
        for link in cp.links:
            src, dst = engines[link.producer].o[0], engines[link.producer + 1].i
            if link.pool is not None:
                px, out = link.pixel, link.out
                m.submodules[f"link{link.producer}_w2p"] = w2p = WordsToPixel(len(src.payload), px.wpp, px.pix_bits)
                m.submodules[f"link{link.producer}_pool"] = pool = MaxPoolUnit(px.channels, px.h, px.w, link.pool,
                                                                                px.a_bits)
                m.submodules[f"link{link.producer}_p2w"] = p2w = PixelToWords(out.pix_bits, out.word_bits, out.wpp)
                wiring.connect(m, src, w2p.i)
                wiring.connect(m, w2p.o, pool.i)
                wiring.connect(m, pool.o, p2w.i)
                src = p2w.o
            # flow ``n`` is link ``n`` (gen.chipplan numbers them so)
            tx, rx = fabric.tx[link.producer], fabric.rx[link.producer + 1]
            m.d.comb += [tx.valid.eq(src.valid), tx.payload.flow.eq(link.producer),
                         tx.payload.data.eq(src.payload[:len(dst.payload)]), src.ready.eq(tx.ready),
                         dst.valid.eq(rx.valid), dst.payload.eq(rx.payload.data[:len(dst.payload)]),
                         rx.ready.eq(dst.ready)]
            # the producer may start an image while its consumer has a free bank
            credits = Signal(range(3), init=2, name=f"credits{link.producer}")
            prod, cons = engines[link.producer], engines[link.producer + 1]
            m.d.sync += credits.eq(credits - prod.started + cons.released)
            m.d.comb += prod.start_ok.eq(credits != 0)
        m.d.comb += engines[-1].start_ok.eq(1)
        for n, eng in enumerate(engines):     # trace taps: every word a stage hands on
            o = eng.o[0]
            m.d.comb += [self.tap_valid[n].eq(o.valid & o.ready), self.tap_data[n].eq(o.payload)]
        wiring.connect(m, engines[-1].o[0], wiring.flipped(self.o))
        return m
