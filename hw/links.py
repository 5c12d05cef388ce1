"""Stream adapters on the links between a chip's stages (``gen.chipplan.Link``).

A layer engine sends each output pixel as ``wpp`` words of the global bus; a max-pool unit
(``hw.post.MaxPoolUnit``) takes and gives whole pixels. :class:`WordsToPixel` assembles a
pixel from its words (one clock: the pixel leaves its register the clock after its last
word), :class:`PixelToWords` sends a pixel word by word (its first word the clock after the
pixel arrives). Both respect back-pressure; ``gen.chipplan.Link.delay`` counts their clocks.
:class:`RasterReorder` puts a duplicated stage's pixels, which its replicas compute side by
side, back into raster order.
"""
from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from gen import timing
from hw.sram import TiledMemory

__all__ = ["WordsToPixel", "PixelToWords", "RasterReorder", "ImageFIFO"]


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


class RasterReorder(wiring.Component):
    """A duplicated stage's output in raster order (``gen.chipplan`` module docstring).

    ``i`` takes one beat per output step: ``lanes`` pixels of ``pix_bits``, replica ``r``'s in
    lane ``r`` (lowest first). ``o`` sends the image's pixels in raster order, pixel ``p``
    being lane and step ``order[p]`` (``gen.chipplan.ChipPlan.raster_order``). The image is
    held in one of two halves of a memory, so the next image is written while this one is
    read; an image is read once all its ``steps`` are in, one pixel every ``pace`` clocks,
    and its half is free again once its last pixel is read. ``i.ready`` is low only while
    the half it would write is still being read (``gen.chipplan`` refuses a duplication
    where that could happen).

    Timing (``gen.timing.REORDER_LATENCY``, read at elaboration): the clock after the edge
    the last step is written, the first pixel's entry of ``order`` is read (edge 1), then the
    pixel (edge 2), and it is handed on at edge 3 when ``o`` is ready — plus one edge for
    every clock the constant asks beyond those :data:`MIN_LATENCY` (output registers); every
    pixel after it ``pace`` clocks later. Back-pressure on ``o`` holds the whole read pipeline.
    """

    #: registers the reorder needs: order-table read, pixel read, output
    MIN_LATENCY = 3

    def __init__(self, pix_bits: int, lanes: int, steps: int, order, pace: int):
        if timing.REORDER_LATENCY < self.MIN_LATENCY:
            raise ValueError(f"gen.timing.REORDER_LATENCY = {timing.REORDER_LATENCY}: the raster reorder needs "
                             f"{self.MIN_LATENCY} registers")
        self.pix_bits, self.lanes, self.steps, self.pace = pix_bits, lanes, steps, max(1, pace)
        self.order = tuple(order)
        super().__init__({"i": In(stream.Signature(unsigned(lanes * pix_bits))),
                          "o": Out(stream.Signature(unsigned(pix_bits)))})

    def elaborate(self, platform):
        m = Module()
        S, N, P = self.steps, len(self.order), self.pace
        sbits = max(1, (S - 1).bit_length())
        lbits = max(1, (self.lanes - 1).bit_length())
        m.submodules.table = table = Memory(shape=unsigned(sbits + lbits), depth=N,
                                            init=[step | (lane << sbits) for lane, step in self.order])
        m.submodules.mem = mem = Memory(shape=unsigned(self.lanes * self.pix_bits), depth=2 << sbits, init=[])
        wp, tp, rp = mem.write_port(), table.read_port(), mem.read_port()

        full = Signal(2)                 # per half: an image is wholly written and not yet read
        wh = Signal()                    # the half being written
        wj = Signal(range(max(2, S)))
        m.d.comb += [self.i.ready.eq(~full.bit_select(wh, 1)),
                     wp.addr.eq(Cat(wj[:sbits], wh)), wp.data.eq(self.i.payload),
                     wp.en.eq(self.i.valid & self.i.ready)]
        set_full = Signal(2)
        clr_full = Signal(2)
        with m.If(self.i.valid & self.i.ready):
            with m.If(wj == S - 1):
                m.d.sync += [wj.eq(0), wh.eq(~wh)]
                m.d.comb += set_full.bit_select(wh, 1).eq(1)
            with m.Else():
                m.d.sync += wj.eq(wj + 1)

        # read pipeline: issue (order-table read) -> pixel read -> output; held as one by o
        adv = ~self.o.valid | self.o.ready
        rh = Signal()                    # the half being read
        p = Signal(range(max(2, N)))
        wait = Signal(range(max(2, P)))  # clocks until the next pixel may be issued
        issue = adv & full.bit_select(rh, 1) & (wait == 0)
        v1, h1, last1 = Signal(), Signal(), Signal()
        v2, lane2 = Signal(), Signal(lbits)
        m.d.comb += [tp.addr.eq(p), tp.en.eq(adv),
                     rp.addr.eq(Cat(tp.data[:sbits], h1)), rp.en.eq(adv)]
        valid, pixel = v2, rp.data.word_select(lane2, self.pix_bits)
        for k in range(timing.REORDER_LATENCY - self.MIN_LATENCY):      # output registers the constant adds
            vk, dk = Signal(name=f"v_out{k}"), Signal(self.pix_bits, name=f"pix_out{k}")
            with m.If(adv):
                m.d.sync += [vk.eq(valid), dk.eq(pixel)]
            valid, pixel = vk, dk
        m.d.comb += [self.o.valid.eq(valid), self.o.payload.eq(pixel)]
        with m.If(wait != 0):
            m.d.sync += wait.eq(wait - 1)
        with m.If(issue):
            m.d.sync += [wait.eq(P - 1), p.eq(Mux(p == N - 1, 0, p + 1))]
            with m.If(p == N - 1):
                m.d.sync += rh.eq(~rh)
        with m.If(adv):
            m.d.sync += [v1.eq(issue), h1.eq(rh), last1.eq(issue & (p == N - 1)),
                         v2.eq(v1), lane2.eq(tp.data[sbits:])]
            with m.If(v1 & last1):      # the image's last pixel is being read: its half is free
                m.d.comb += clr_full.bit_select(h1, 1).eq(1)
        m.d.sync += full.eq((full | set_full) & ~clr_full)
        return m


class ImageFIFO(wiring.Component):
    """A first-in first-out queue of ``depth`` words of ``width`` bits between stream ports
    ``w`` and ``r``, clock for clock Amaranth's ``SyncFIFOBuffered`` (``r`` registered: a
    memory of ``depth - 1`` words and the output register), its memory a
    :class:`hw.sram.TiledMemory`.

    A skip FIFO holds whole images of its tensor (``gen.chipplan.Link.slots``), a memory of
    up to megabits whose Verilog a chip instantiates rather than repeats: a chip makes it one
    module per :meth:`module_name` (``hw.blackbox``), built from shared RAM macros.
    ``shared``: as ``TiledMemory``'s (``False`` in the emulation build)."""

    def __init__(self, width: int, depth: int, *, shared: bool = True, macro: tuple[int, int] | None = None):
        if depth < 2:
            raise ValueError(f"an image FIFO of depth {depth}: at least 2 words are allowed")
        self.width, self.depth, self.shared, self.macro = width, depth, shared, macro
        super().__init__(self.signature_of(width, depth))

    @staticmethod
    def signature_of(width: int, depth: int) -> wiring.Signature:
        return wiring.Signature({"w": In(stream.Signature(unsigned(width))),
                                 "r": Out(stream.Signature(unsigned(width)))})

    @staticmethod
    def module_name(width: int, depth: int) -> str:
        return f"pimgen_image_fifo_{width}x{depth}"

    def elaborate(self, platform):
        m = Module()
        inner = self.depth - 1
        m.submodules.mem = mem = TiledMemory(self.width, inner, 1, shared=self.shared, macro=self.macro)
        level = Signal(range(inner + 1))
        produce = Signal(range(inner))
        consume = Signal(range(inner))
        do_write = self.w.valid & self.w.ready
        do_read = Signal()
        m.d.comb += [self.w.ready.eq(level != inner),
                     do_read.eq((level != 0) & (~self.r.valid | self.r.ready)),
                     mem.wr.addr.eq(produce), mem.wr.data.eq(self.w.payload), mem.wr.en.eq(do_write),
                     mem.rd[0].addr.eq(consume), mem.rd[0].en.eq(do_read), self.r.payload.eq(mem.rd[0].data)]
        with m.If(do_write):
            m.d.sync += produce.eq(Mux(produce == inner - 1, 0, produce + 1))
        with m.If(do_read):
            m.d.sync += [consume.eq(Mux(consume == inner - 1, 0, consume + 1)), self.r.valid.eq(1)]
        with m.Elif(self.r.ready):
            m.d.sync += self.r.valid.eq(0)
        with m.If(do_write & ~do_read):
            m.d.sync += level.eq(level + 1)
        with m.If(do_read & ~do_write):
            m.d.sync += level.eq(level - 1)
        return m
