"""The accelerator: a whole CNN as one layer-pipelined chip (DESIGN.md §9).

``Chip(cp)`` builds, from a :class:`gen.chipplan.ChipPlan`, one
:class:`hw.layer.ConvLayerEngine` per weight layer (each with two input banks, so it fills
one with the next image while it computes on the other) and the links between them: through
a raster reorder where the layer is duplicated (:class:`hw.links.RasterReorder`: its replicas'
pixels back into raster order), through a max-pool unit where the network pools (:class:`hw.links.WordsToPixel` →
:class:`hw.post.MaxPoolUnit` → :class:`hw.links.PixelToWords`), then over the interconnect
fabric of the plan's placement (a link FIFO per flow on
5PP, routers shared in time slots on mesh and torus: ``hw.interconnect.SlottedFabric``), one
flow per link.

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
       ``G``-bit words (lowest value first; ``cp.logit_layout``).
    prog: stream in, the programming port (``hw.pe.prog_layout``): ``(crossbar, row, weights)``
       beats, written as a real chip is programmed, before the first image. The crossbar
       modules hold no weights of their own.
    cycles: out, clocks since reset. status: out, one bit per stage (an image in flight).
    tap_valid, tap_data: out, trace taps (ports, so a testbench reads them from outside the
       black boxes): stage ``n`` hands output word ``tap_data.s<n>`` (Verilog port
       ``tap_data__s<n>``, ``cp.tap(n)`` bits: a stage over several tiles shows its joined
       pixels) on this clock when ``tap_valid[n]`` is high.
"""
from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from gen.chipplan import ChipPlan
from gen.topology import fabric_kind
from hw.blackbox import instantiate
from hw.interconnect import FlowLinks, SlottedFabric
from hw.layer import ConvLayerEngine
from hw.links import ImageFIFO, PixelToWords, RasterReorder, WordsToPixel
from hw.pe import prog_layout
from hw.post import AvgPoolUnit, ConcatUnit, GlobalAvgPoolUnit, MaxPoolUnit, ResidualAddUnit

__all__ = ["Chip", "tap_signature"]


def tap_signature(cp: ChipPlan) -> wiring.Signature:
    """The trace taps' data ports: ``s<n>``, stage ``n``'s words at their own width (padding
    every tap to the widest, ResNet-34's 32 000-bit logits, made 1.2 million port bits)."""
    return wiring.Signature({f"s{n}": Out(cp.tap(n)[0]) for n in range(len(cp.stages))})


class Chip(wiring.Component):
    """The whole network as RTL (module docstring)."""

    def __init__(self, cp: ChipPlan, target=None):
        self.cp = cp
        self.target = target        # hw.decoupled.TargetClock: the emulation build (hw.decoupled.EmulatedChip)
        first, last = cp.stages[0], cp.stages[-1]
        super().__init__({
            "i": In(stream.Signature(unsigned(first.fm.word_bits))),
            "o": Out(stream.Signature(unsigned(cp.logit_layout.word_bits if cp.merged(len(cp.stages) - 1)
                                              else last.bus_bits))),
            "prog": In(stream.Signature(prog_layout(cp.chip.crossbar, cp.n_xbars))),
            "cycles": Out(32), "status": Out(len(cp.stages)),
            "tap_valid": Out(len(cp.stages)),
            "tap_data": Out(tap_signature(cp)),
        })

    def elaborate(self, platform):
        m = Module()
        cp = self.cp
        lp_by = {lp.name: lp for lp in cp.plan.layers}
        # The programming beats cross one register before they fan out to every crossbar
        # (the chip's widest net), so no crossbar's write logic hangs on a chip input pin.
        # `prog` is always ready, so the register only delays each write by a clock; images
        # come after the last beat.
        prog = stream.Signature(self.prog.payload.shape()).create()
        m.d.sync += [prog.valid.eq(self.prog.valid), prog.payload.eq(self.prog.payload)]
        engines = []
        for n, sc in enumerate(cp.stages):
            eng = ConvLayerEngine(lp_by[sc.name], cp.chip, cp.params[sc.name], (cp.xbar_base(n), cp.n_xbars),
                                  target=self.target)
            m.submodules[f"stage{n}_{sc.name}"] = eng
            m.d.comb += [eng.prog.valid.eq(prog.valid), eng.prog.payload.eq(prog.payload),
                         self.status[n].eq(eng.busy)]
            engines.append(eng)
        m.d.comb += self.prog.ready.eq(1)
        m.d.sync += self.cycles.eq(self.cycles + 1)
        wiring.connect(m, wiring.flipped(self.i), engines[0].i)

        # the fabric: a port pair per flow on one-hop placements, core ports on routed ones
        tx = rx = None
        if cp.links:
            if fabric_kind(cp.placement) == "point-to-point":
                m.submodules.fabric = fab = FlowLinks(cp.placement, cp.fabric_bits)
                tx, rx = list(fab.i), list(fab.o)
            else:       # mesh, torus: the flows share the routers in their time slots
                ln0 = cp.links[0]
                m.submodules.fabric = fab = SlottedFabric(cp.placement, cp.fabric_bits, ln0.period,
                                                          [ln.slot for ln in cp.links],
                                                          [ln.burst for ln in cp.links])
                m.d.comb += fab.start.eq(self.i.valid & self.i.ready)
                tx, rx = list(fab.i), list(fab.o)

        # skip FIFOs (hw.links.ImageFIFO, one module per size): whole images of the skip
        # tensor; a stage starts an image only once its skip tensor is wholly in
        # (gen.perf.chip_timing's K_l(n)), so its add never waits
        skip_pixels, skip_ok = {}, {}
        for f, ln in enumerate(cp.links):
            if ln.port == "in":
                dst = engines[ln.consumer].i
                m.d.comb += [dst.valid.eq(rx[f].valid), dst.payload.eq(rx[f].payload[:len(dst.payload)]),
                             rx[f].ready.eq(dst.ready)]
                continue
            c, out = ln.consumer, ln.out
            args = (out.word_bits, ln.slots * out.depth)
            if self.target is None:
                qf = instantiate(m, f"skipfifo{c}", ImageFIFO.module_name(*args), ImageFIFO.signature_of(*args),
                                 lambda: ImageFIFO(*args))
            else:       # the emulation build's target-clock enable reaches no black box
                m.submodules[f"skipfifo{c}"] = qf = ImageFIFO(*args, shared=False)
            q = qf.w
            m.d.comb += q.payload.eq(rx[f].payload[:out.word_bits])
            if ln.port == "skip":
                m.d.comb += [q.valid.eq(rx[f].valid), rx[f].ready.eq(q.ready)]
            else:       # in+skip: each word into the banks and the skip FIFO at once
                dst = engines[c].i
                m.d.comb += [dst.payload.eq(rx[f].payload[:len(dst.payload)]),
                             dst.valid.eq(rx[f].valid & q.ready), q.valid.eq(rx[f].valid & dst.ready),
                             rx[f].ready.eq(dst.ready & q.ready)]
            word = Signal(range(out.depth), name=f"skip_word{c}")
            full = Signal(range(ln.slots + 1), name=f"skip_images{c}")
            arrived = Signal(name=f"skip_arrived{c}")
            m.d.comb += arrived.eq(q.valid & q.ready & (word == out.depth - 1))
            with m.If(q.valid & q.ready):
                m.d.sync += word.eq(Mux(word == out.depth - 1, 0, word + 1))
            m.d.sync += full.eq(full + arrived - engines[c].started)
            skip_ok[c] = full != 0
            m.submodules[f"skip_w2p{c}"] = w2p = WordsToPixel(out.word_bits, out.wpp, out.pix_bits)
            # depth 3: a buffered FIFO of depth 2 passes a pixel only every other clock, and a
            # duplicated stage's raster reorder sends its pixels to the join back to back
            m.submodules[f"skip_pix{c}"] = pix = fifo.SyncFIFOBuffered(width=out.pix_bits, depth=3)
            wiring.connect(m, qf.r, w2p.i)
            wiring.connect(m, w2p.o, pix.w_stream)
            skip_pixels[c] = pix.r_stream

        # each stage's output: the tiles' words joined into pixels (a stage over several
        # tiles), its tail, then a fork onto its links
        taps = []
        for n, eng in enumerate(engines):
            src = eng.o[cp.out_tiles(n)[0]]     # the one tile the outputs leave from (unless merged)
            links = [(f, ln) for f, ln in enumerate(cp.links) if ln.producer == n]
            ops = cp.tail(n)
            sc = cp.stages[n]
            a_out = sc.a_out
            pix = None
            if cp.merged(n) or cp.reordered(n):
                pix = self._join(m, n, eng)
                if cp.reordered(n):     # the replicas' pixels of each step, back into raster order
                    order = cp.raster_order(n)
                    rr = RasterReorder(sc.cout * a_out, len(sc.replicas), sc.out_steps, order, cp.reorder_pace(n))
                    m.submodules[f"reorder{n}"] = rr
                    wiring.connect(m, pix, rr.i)
                    pix = rr.o
                taps.append((pix.valid & pix.ready, pix.payload))
            else:
                taps.append((src.valid & src.ready, src.payload))
            if ops:
                px = links[0][1].pixel
                if pix is None:
                    m.submodules[f"tail{n}_w2p"] = w2p = WordsToPixel(len(src.payload), px.wpp, px.pix_bits)
                    wiring.connect(m, src, w2p.i)
                    pix = w2p.o
                c, h, w = sc.out_shape
                for k, op in enumerate(ops):
                    if op.kind in ("add", "concat"):
                        if op.kind == "add":
                            u = ResidualAddUnit(c, cp.params[op.layer], a_out, lanes=True)
                        else:
                            cs = cp.skip_link(n).out.channels
                            u = ConcatUnit(cs, c, a_out) if op.skip_first else ConcatUnit(c, cs, a_out)
                        main, skip = (u.b, u.a) if op.skip_first else (u.a, u.b)
                        wiring.connect(m, pix, main)
                        wiring.connect(m, skip_pixels[n], skip)
                    elif op.kind == "maxpool":
                        u = MaxPoolUnit(c, h, w, op.k, a_out, stride=op.stride, pad=op.pad)
                        wiring.connect(m, pix, u.i)
                    elif op.kind == "avgpool":
                        p = cp.params[op.layer]
                        u = AvgPoolUnit(c, h, w, op.k, p.requant, a_out, z_in=p.z_in)
                        wiring.connect(m, pix, u.i)
                    else:
                        p = cp.params[op.layer]
                        u = GlobalAvgPoolUnit(c, h, w, p.requant, a_out, z_in=p.z_in)
                        wiring.connect(m, pix, u.i)
                    m.submodules[f"tail{n}_{k}_{op.kind}"] = u
                    c, h, w = cp.network.out_shape(op.layer)      # the shape after the unit, in one home
                    pix = u.o
            if pix is not None:
                out = links[0][1].out if links else cp.logit_layout
                m.submodules[f"tail{n}_p2w"] = p2w = PixelToWords(out.pix_bits, out.word_bits, out.wpp)
                wiring.connect(m, pix, p2w.i)
                src = p2w.o
            if n == len(engines) - 1:
                m.d.comb += [self.o.valid.eq(src.valid), self.o.payload.eq(src.payload), src.ready.eq(self.o.ready)]
            if links:       # the fork: a word leaves when every link takes it
                readies = [tx[f].ready for f, _ in links]
                for f, ln in links:
                    others = 1
                    for g, _ in links:
                        if g != f:
                            others = others & tx[g].ready
                    m.d.comb += [tx[f].valid.eq(src.valid & others),
                                 tx[f].payload.eq(src.payload[:ln.out.word_bits])]
                all_ready = 1
                for r in readies:
                    all_ready = all_ready & r
                m.d.comb += src.ready.eq(all_ready)
            # the stage may start an image while every consumer has room (credits) and, with
            # an add, its skip tensor is in
            ok = 1
            for f, ln in links:
                credits = Signal(range(ln.slots + 1), init=ln.slots, name=f"credits{f}")
                m.d.sync += credits.eq(credits - eng.started + engines[ln.consumer].released)
                ok = ok & (credits != 0)
            if n in skip_ok:
                ok = ok & skip_ok[n]
            m.d.comb += eng.start_ok.eq(ok)
        for n, (fire, data_) in enumerate(taps):     # trace taps: every word a stage hands on
            m.d.comb += [self.tap_valid[n].eq(fire), getattr(self.tap_data, f"s{n}").eq(data_)]
        return m

    def _join(self, m, n: int, eng):
        """Stage ``n``'s output tiles' words as one stream of steps: per tile a
        :class:`hw.links.WordsToPixel` of its column blocks, then every replica's channels in
        order (replica 0's pixel lowest; one replica: the pixel); a step leaves when the part
        of every tile that writes it is in. A tile whose replicas' rectangles are done (they
        are smaller than the largest, ``TileSchedule.written_steps``) writes nothing more in
        the image; its lanes then carry stale values that the raster reorder never reads."""
        sc = self.cp.stages[n]
        a = sc.a_out
        parts, chan = [], {}
        for t in self.cp.out_tiles(n):
            tile = sc.tiles[t]
            w2p = WordsToPixel(sc.bus_bits, tile.out_words, tile.out_values * a)
            m.submodules[f"join{n}_t{t}"] = w2p
            m.d.comb += [w2p.i.valid.eq(eng.o[t].valid), w2p.i.payload.eq(eng.o[t].payload),
                         eng.o[t].ready.eq(w2p.i.ready)]
            q = 0
            for r, c0, c1 in tile.out_cols:
                for c in range(c0, c1):
                    chan[(r, c)] = (w2p.o.payload, q)
                    q += 1
            parts.append((w2p.o, tile.written_steps))
        order = [(r, c) for r in range(len(sc.replicas)) for c in range(sc.cout)]
        pix = stream.Signature(len(order) * a).create(path=(f"join{n}",))
        steps = max(w for _, w in parts)
        step = None
        if any(w < steps for _, w in parts):
            step = Signal(range(steps), name=f"join{n}_step")
            with m.If(pix.valid & pix.ready):
                m.d.sync += step.eq(Mux(step == steps - 1, 0, step + 1))
        due = [Const(1) if w == steps else step < w for _, w in parts]
        every = 1
        for (p, _), d in zip(parts, due):
            every = every & (p.valid | ~d)
        m.d.comb += [pix.valid.eq(every),
                     pix.payload.eq(Cat(*[chan[k][0][chan[k][1] * a:(chan[k][1] + 1) * a] for k in order]))]
        m.d.comb += [p.ready.eq(pix.ready & every & d) for (p, _), d in zip(parts, due)]
        return pix
