"""Stream adapters on the links between a chip's stages (``gen.chipplan.Link``).

A layer engine sends each output pixel as ``wpp`` words of the global bus; a max-pool unit
(``hw.post.MaxPoolUnit``) takes and gives whole pixels. :class:`WordsToPixel` assembles a
pixel from its words (one clock: the pixel leaves its register the clock after its last
word), :class:`PixelToWords` sends a pixel word by word (its first word the clock after the
pixel arrives). Both respect back-pressure; ``gen.chipplan.Link.delay`` counts their clocks.
"""
from __future__ import annotations

from amaranth.hdl import Cat, Module, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["WordsToPixel", "PixelToWords"]


class WordsToPixel(wiring.Component):
    """``words`` beats of ``word_bits`` (first word = lowest bits) -> one ``pix_bits`` beat."""

    def __init__(self, word_bits: int, words: int, pix_bits: int):
        self.word_bits, self.words, self.pix_bits = word_bits, words, pix_bits
        super().__init__({"i": In(stream.Signature(unsigned(word_bits))),
                          "o": Out(stream.Signature(unsigned(pix_bits)))})

    def elaborate(self, platform):
        m = Module()
        n = self.words
        held = [Signal(self.word_bits, name=f"w{k}") for k in range(n - 1)]
        idx = Signal(range(max(2, n)))
        m.d.comb += self.i.ready.eq(~self.o.valid | self.o.ready)
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(self.i.valid & self.i.ready):
            for k in range(n - 1):
                with m.If(idx == k):
                    m.d.sync += held[k].eq(self.i.payload)
            with m.If(idx == n - 1):
                m.d.sync += [idx.eq(0), self.o.valid.eq(1),
                             self.o.payload.eq(Cat(*held, self.i.payload)[:self.pix_bits])]
            with m.Else():
                m.d.sync += idx.eq(idx + 1)
        return m


class PixelToWords(wiring.Component):
    """One ``pix_bits`` beat -> ``words`` beats of ``word_bits`` (lowest bits first)."""

    def __init__(self, pix_bits: int, word_bits: int, words: int):
        self.pix_bits, self.word_bits, self.words = pix_bits, word_bits, words
        super().__init__({"i": In(stream.Signature(unsigned(pix_bits))),
                          "o": Out(stream.Signature(unsigned(word_bits)))})

    def elaborate(self, platform):
        m = Module()
        n, wb = self.words, self.word_bits
        pix = Signal(n * wb)
        idx = Signal(range(max(2, n)))
        last = self.o.valid & self.o.ready & (idx == n - 1)
        m.d.comb += [self.i.ready.eq(~self.o.valid | last), self.o.payload.eq(pix.word_select(idx, wb))]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += idx.eq(idx + 1)
            with m.If(idx == n - 1):
                m.d.sync += [idx.eq(0), self.o.valid.eq(0)]
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [pix.eq(self.i.payload), self.o.valid.eq(1), idx.eq(0)]
        return m
