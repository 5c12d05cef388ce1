"""Buffers of a layer engine: the feature-map buffer, the conventional window generator
and the novel mapping's input distributor (line buffers + PE-to-PE pixel passing).

The feature-map word layout is ``gen.schedule.FMLayout``; every count and duration here
comes from the layer's ``gen.schedule.LayerSchedule``.

Both fetch blocks are stages of the layer schedule (``hw.controller``): started by a ``go``
pulse, fixed duration, result in an output register on the stage's last edge, ``done`` the
cycle after. A read issued in cycle ``c`` returns its word in cycle ``c + L`` with ``L =
gen.timing.FM_READ_LATENCY`` (a synchronous BRAM read port, plus ``L - 1`` registers), so a
fetch of ``n`` words lasts ``n + L`` clocks. Padding pixels are never read (their slot idles
and gives 0), nor are pixels outside the replica's input rows and columns.
"""
from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory, ReadPort
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from gen import timing
from gen.schedule import FMLayout, LayerSchedule
from hw.controller import StageTimer
from hw.sram import TiledMemory, addr_bits

__all__ = ["FeatureMapBuffer", "WindowGenerator", "InputDistributor", "read_port_signature"]


def read_port_signature(fm: FMLayout) -> ReadPort.Signature:
    """A feature-map buffer read port (``lib.memory`` read-port signature)."""
    return ReadPort.Signature(addr_width=addr_bits(fm.depth), shape=unsigned(fm.word_bits))


class FeatureMapBuffer(wiring.Component):
    """The layer's input feature map in one memory (``hw.sram.TiledMemory``: block RAM, or
    tiles of a shared RAM macro when it is deep): a write stream ``w`` (one word per beat,
    addresses in arrival order, wrapping after ``depth`` words) and the read-port family
    ``rd`` (``n_read`` ports, data ``FM_READ_LATENCY`` clocks after the address); ``reads``
    counts the words read (all ports, since reset). With ``banks = 2`` the memory holds two
    maps (bank = the address's top bit): ``wr_bank`` selects where ``w`` writes, ``rd_bank``
    what the read ports see. ``ce``: the memory's clock enable (``hw.sram``: the engine's
    enable, which does not reach into shared macros); ``shared``: as ``TiledMemory``'s."""

    def __init__(self, fm: FMLayout, n_read: int = 1, banks: int = 1, *, shared: bool = True):
        self.fm, self.n_read, self.banks, self.shared = fm, n_read, banks, shared
        super().__init__({"w": In(stream.Signature(unsigned(fm.word_bits))),
                          "rd": Out(read_port_signature(fm)).array(n_read), "reads": Out(32),
                          "wr_bank": In(1), "rd_bank": In(1), "ce": In(1, init=1)})

    def elaborate(self, platform):
        m = Module()
        fm = self.fm
        lo = addr_bits(fm.depth)
        two = self.banks == 2
        mem = TiledMemory(fm.word_bits, (2 << lo) if two else fm.depth, self.n_read, shared=self.shared)
        m.submodules.mem = mem
        waddr = Signal(lo)      # lo bits even for a one-word map, so the bank bit lands where reads see it
        m.d.comb += [self.w.ready.eq(1), mem.ce.eq(self.ce),
                     mem.wr.addr.eq(Cat(waddr, self.wr_bank) if two else waddr),
                     mem.wr.data.eq(self.w.payload), mem.wr.en.eq(self.w.valid)]
        with m.If(self.w.valid):
            m.d.sync += waddr.eq(Mux(waddr == fm.depth - 1, 0, waddr + 1))
        n = Const(0, 32)
        for k, port in enumerate(self.rd):
            rp = mem.rd[k]
            m.d.comb += [rp.addr.eq(Cat(port.addr[:lo], self.rd_bank) if two else port.addr), rp.en.eq(port.en)]
            d = rp.data
            for i in range(timing.FM_READ_LATENCY - 1):       # the latency is the schedule's
                q = Signal.like(d, name=f"rd{k}_data_q{i}")
                m.d.sync += q.eq(d)
                d = q
            m.d.comb += port.data.eq(d)
            en_q = Signal(name=f"rd{k}_en_q")       # counted a clock later (off the address path)
            m.d.sync += en_q.eq(port.en)
            n = n + en_q
        m.d.sync += self.reads.eq(self.reads + n)
        return m


def _in_range(v, lo: int, hi: int):
    return (v >= lo) & (v < hi)


def pad_pixel(fm, pad):
    """A padding pixel, ``pix_bits`` wide: every channel at ``pad`` (the input's zero point,
    DESIGN.md §3), an ``int`` or a Value of ``a_bits`` (an engine's ``z_in`` port), packed as
    every pixel is (``gen.schedule.FMLayout.pixel_words``: channel ``c`` at bits
    ``[c*a, (c+1)*a)``)."""
    a = fm.a_bits
    value = Const(pad & ((1 << a) - 1), a) if isinstance(pad, int) else pad[:a]
    return Cat(*[value] * fm.channels)


def pad_words(fm, pad) -> list:
    """The ``wpp`` words of a padding pixel (:func:`pad_pixel`), the last one's spare bits zero."""
    px, wb = pad_pixel(fm, pad), fm.word_bits
    return [px[i * wb:(i + 1) * wb] for i in range(fm.wpp)]


def _fetch_words(m, st, port, slots, word_bits, prefix):
    """Read ``slots`` (``(real, addr, pad)`` triples) one per clock of the fetch stage ``st``
    through the read port ``port`` (data ``FM_READ_LATENCY`` clocks after the address);
    slots that are not real are not read and give their padding word ``pad``. Returns the
    words, the last one straight from the port when it arrives on the stage's last clock (a
    tile that reads fewer words than the stage lasts has them all in registers by then)."""
    lat = timing.FM_READ_LATENCY
    words = [Signal(word_bits, name=f"{prefix}{n}") for n in range(len(slots))]
    rdv = Signal(word_bits, name=f"{prefix}_rd")
    with m.If(st.run):
        for n in range(len(slots) + lat):
            with m.If(st.idx == n):
                if n < len(slots):
                    real, addr, _ = slots[n]
                    m.d.comb += [port.addr.eq(addr[:len(port.addr)]), port.en.eq(real)]
                if n >= lat:
                    m.d.comb += rdv.eq(Mux(slots[n - lat][0], port.data, slots[n - lat][2]))
                    m.d.sync += words[n - lat].eq(rdv)
    return words if len(slots) + lat < st.d else words[:-1] + [rdv]


def _pixel(fm: FMLayout, got: dict):
    """A pixel from the words a tile read (``got``: word index -> value); the words it does
    not read (channels of other tiles) are 0."""
    return Cat(*[got.get(w, Const(0, fm.word_bits)) for w in range(fm.wpp)])[:fm.pix_bits]


def position_layout(ho: int, wo: int) -> data.StructLayout:
    """A replica's step position: output pixel ``(y, x)`` and ``act`` (it has a pixel)."""
    return data.StructLayout({"y": range(max(2, ho)), "x": range(max(2, wo)), "act": 1})


class WindowGenerator(wiring.Component):
    """Conventional mapping, tile ``t`` of ``sched``: per step, the im2col windows of the
    tile's replicas (``K*K`` pixels each, kernel-position major) read from the feature-map
    buffer, one word per clock over the global bus (the ``gbus_in`` stage:
    ``sched.tiles[t].pixel_words`` reads plus the read latency).

    Ports: ``go`` (pulse), ``done``; ``pos``: per replica of the tile its output pixel and
    ``act`` (the replica has a pixel this step; otherwise its reads are skipped); ``rd``: a
    feature-map read port; ``window``: replica-major, then kernel position ``(i, j)``, then
    channel, ``a_bits`` each (registered). ``pad_value``: the padding pixels' channels, an
    ``int`` or a Value (an engine's ``z_in`` port, :func:`pad_pixel`).
    """

    def __init__(self, sched: LayerSchedule, t: int, pad_value=0):
        fm, tile = sched.fm, sched.tiles[t]
        self.sched, self.tile, self.pad_value = sched, tile, pad_value
        n_reps = len(tile.replicas)
        _, ho, wo = sched.out_shape
        super().__init__({"go": In(1), "done": Out(1), "pos": In(position_layout(ho, wo)).array(n_reps),
                          "rd": In(read_port_signature(fm)),
                          "window": Out(n_reps * sched.k * sched.k * fm.pix_bits)})

    def elaborate(self, platform):
        m = Module()
        sc, fm = self.sched, self.sched.fm
        k, s, pad = sc.k, sc.stride, sc.pad
        n_reps = len(self.tile.replicas)
        st = StageTimer(m, self.go, sc.stages["gbus_in"], "fetch")
        m.d.comb += [self.done.eq(st.done), self.rd.en.eq(0)]
        # positions latched at go
        pos = []
        for r in range(n_reps):
            held = Signal.like(self.pos[r], name=f"pos{r}_l")
            with m.If(self.go):
                m.d.sync += held.eq(self.pos[r])
            pos.append(Mux(self.go, self.pos[r].as_value(), held.as_value()))
        lay = position_layout(*sc.out_shape[1:])
        cw = signed(max(ceil_log2(max(fm.h, fm.w) * 2 + 2 * k + 4) + 2, 4))
        pads = pad_words(fm, self.pad_value)
        local = {r: n for n, r in enumerate(self.tile.replicas)}
        slots, where = [], []        # the tile's reads: replica, kernel position, word
        for rep, kp, wl in self.tile.reads:
            r = local[rep]
            i, j = divmod(kp, k)
            p = data.View(lay, pos[r])
            iy = Signal(cw, name=f"iy_{r}_{kp}")
            ix = Signal(cw, name=f"ix_{r}_{kp}")
            m.d.comb += [iy.eq(p.y * s + (i - pad)), ix.eq(p.x * s + (j - pad))]
            real = p.act & _in_range(iy, 0, fm.h) & _in_range(ix, 0, fm.w)
            for w in wl:
                slots.append((real, (iy * fm.w + ix) * fm.wpp + w, pads[w]))
                where.append((r, kp, w))

        # the window register: the words so far, the last one straight from the port
        final = _fetch_words(m, st, self.rd, slots, fm.word_bits, "wword")
        got: dict = {}
        for (r, kp, w), v in zip(where, final):
            got.setdefault((r, kp), {})[w] = v
        with m.If(st.last):
            for (r, kp), words in got.items():
                off = (r * k * k + kp) * fm.pix_bits
                m.d.sync += self.window[off:off + fm.pix_bits].eq(_pixel(fm, words))
        return m


class InputDistributor(wiring.Component):
    """Novel mapping, one replica (tile): line buffers and the ``K x K`` PE grid's pixels.

    Stages (each a fixed-duration stage of the layer schedule):

    * ``prologue`` (``pro_go``): before the first step, the line buffers are filled with the
      ``K - s`` window rows above the first output row's new rows (real rows only), one word
      per clock; ``pro_reads + 1`` clocks (the engine's prologue may be longer: all replicas
      wait for the slowest).
    * ``gbus_in`` (``go``): the ``s x s`` new pixels of the step — rows ``y*s+K-s .. y*s+K-1``
      of the entering columns — are read from the feature-map buffer, each exactly once
      (``s*s*wpp + 1`` clocks).
    * ``tbus_in`` (``d_tbus`` clocks): the entering ``s`` columns (``K`` pixels each) are
      assembled from the line buffers (rows above) and the new pixels, and the line buffers
      take the column shifted up by ``s`` rows for the next output row.
    * ``pe_pass`` (``d_pass`` clocks; 0 when ``K <= s``): every PE passes its pixel ``s``
      columns to the left (``W[i][j] <- W[i][j+s]``) and the entering columns fill the right
      edge. ``grid`` holds ``W`` (PE ``(i, j)`` = window position ``(i, j)``).

    A row of ``C`` outputs takes ``C + wu`` steps, ``wu = ceil((K - s) / s)`` warm-up steps
    bringing in the window's first ``K - s`` columns; a warm-up step only passes these
    stages (``real`` is low with its ``done``), an output step goes on to the PEs
    (``real_next``: an output step's ``done`` comes on the next clock).
    Positions: ``y`` (output row) and ``t`` (step in the row) per step, ``act`` (replica busy).
    ``pad_value``: the padding pixels' channels, an ``int`` or a Value (:func:`pad_pixel`).
    """

    def __init__(self, sched: LayerSchedule, replica: int, pad_value=0, tile: int | None = None):
        self.sched, self.rep, self.pad_value = sched, sched.replicas[replica], pad_value
        self.tile = sched.tiles[self.rep.tile if tile is None else tile]
        self.words = next(wl for rep, _, wl in self.tile.reads if rep == replica)
        fm, k = sched.fm, sched.k
        _, ho, wo = sched.out_shape
        super().__init__({"go": In(1), "done": Out(1), "real": Out(1), "real_next": Out(1), "pro_go": In(1),
                          "y": In(range(max(2, ho))), "t": In(range(max(2, self.rep.row_steps + 1))), "act": In(1),
                          "rd": In(read_port_signature(fm)), "grid": Out(k * k * fm.pix_bits)})

    def elaborate(self, platform):
        m = Module()
        sc, rep = self.sched, self.rep
        g, k, s, pad = sc.fm, sc.k, sc.stride, sc.pad
        y0, _, x0, _ = rep.region
        cx0, cx1 = rep.in_cols
        lat = timing.FM_READ_LATENCY
        P = g.pix_bits
        lb_rows = max(0, k - s)
        cw = signed(max(ceil_log2(max(g.h, g.w) * 2 + 2 * k + 8) + 2, 4))
        # line buffers: row r's pixels at columns x in a memory of its own (LUT RAM on an FPGA,
        # read asynchronously), one write port per entering column; the prologue writes
        # through port 0 while no step is under way
        xbits = max(1, ceil_log2(max(2, g.w)))
        lb, lb_w = [], []
        for r in range(lb_rows):
            m.submodules[f"lb{r}"] = mem = Memory(shape=unsigned(P), depth=g.w, init=[],
                                                 attrs={"ram_style": "distributed"})
            lb.append([mem.read_port(domain="comb") for _ in range(s)])
            lb_w.append([mem.write_port() for _ in range(s)])
        pro_we = [Signal(name=f"pro_we{r}") for r in range(lb_rows)]
        pro_waddr = Signal(xbits)
        pro_wdata = Signal(P)

        # ---------------- prologue: fill the line buffers (the replica's columns) --------
        pro_rd_addr = Signal.like(self.rd.addr)
        pro_rd_en = Signal()
        wl = self.words              # the words of a pixel this tile reads
        nw = len(wl)
        per_row = (cx1 - cx0) * nw
        pro_reads = self.tile.prologue_reads
        if pro_reads:
            pt = StageTimer(m, self.pro_go, pro_reads + lat, "pro")
            words = {w: Signal(g.word_bits, name=f"pword{w}") for w in wl[:-1]}
            with m.If(pt.run):
                for n in range(pro_reads + lat):
                    with m.If(pt.idx == n):
                        if n < pro_reads:
                            ri, rest = divmod(n, per_row)
                            x, q = divmod(rest, nw)
                            yy = rep.prologue_rows[ri]
                            m.d.comb += [pro_rd_addr.eq((yy * g.w + cx0 + x) * g.wpp + wl[q]), pro_rd_en.eq(1)]
                        if n >= lat:
                            ri, rest = divmod(n - lat, per_row)
                            x, q = divmod(rest, nw)
                            r = rep.prologue_rows[ri] - (y0 * s - pad)
                            if q < nw - 1:
                                m.d.sync += words[wl[q]].eq(self.rd.data)
                            else:
                                m.d.comb += [pro_we[r].eq(1), pro_waddr.eq(cx0 + x),
                                             pro_wdata.eq(_pixel(g, {**words, wl[q]: self.rd.data}))]
        # ---------------- gbus_in: the s x s new pixels ------------------------------
        st = StageTimer(m, self.go, sc.stages["gbus_in"], "gbus")
        m.d.comb += [self.rd.addr.eq(pro_rd_addr), self.rd.en.eq(pro_rd_en)]
        yl = Signal.like(self.y)
        tl = Signal.like(self.t)
        al = Signal()
        with m.If(self.go):
            m.d.sync += [yl.eq(self.y), tl.eq(self.t), al.eq(self.act)]
        y = Mux(self.go, self.y, yl)
        t = Mux(self.go, self.t, tl)
        act = Mux(self.go, self.act, al)
        # real row of new row 0 and real column of entering column 0
        rowbase = Signal(cw)
        colbase = Signal(cw)
        m.d.comb += [rowbase.eq(y * s + (k - s - pad)), colbase.eq(t * s + ((x0 - sc.warmup) * s + k - s - pad))]

        pads = pad_words(g, self.pad_value)
        slots = []
        for rc in range(s * s):
            r, c = divmod(rc, s)
            iy = Signal(cw, name=f"ny_{rc}")
            ix = Signal(cw, name=f"nx_{rc}")
            m.d.comb += [iy.eq(rowbase + r), ix.eq(colbase + c)]
            # columns left of the replica's window enter during warm-up and leave before its
            # first output: they are never read
            real = act & _in_range(iy, 0, g.h) & _in_range(ix, cx0, cx1)
            slots += [(real, (iy * g.w + ix) * g.wpp + w, pads[w]) for w in wl]

        final = _fetch_words(m, st, self.rd, slots, g.word_bits, "nword")
        newpix = [[Signal(P, name=f"new{r}_{c}") for c in range(s)] for r in range(s)]
        # step metadata handed to the next stage
        rowtop = Signal(cw)      # real row of window row 0
        colent = Signal(cw)      # real column of entering column 0
        with m.If(st.last):
            for r in range(s):
                for c in range(s):
                    base = (r * s + c) * nw
                    m.d.sync += newpix[r][c].eq(_pixel(g, dict(zip(wl, final[base:base + nw]))))
            m.d.sync += [rowtop.eq(rowbase - (k - s)), colent.eq(colbase)]
        t1 = Signal.like(self.t)   # the step's position in its row, handed along the stages
        t2 = Signal.like(self.t)
        t3 = Signal.like(self.t)
        with m.If(st.last):
            m.d.sync += t1.eq(t)

        # ---------------- tbus_in: assemble the entering columns ----------------------
        tt = StageTimer(m, st.done, sc.stages["tbus_in"], "tbus")
        ent = [[Signal(P, name=f"ent{i}_{c}") for c in range(s)] for i in range(k)]
        ent_next = [[Signal(P, name=f"entn{i}_{c}") for c in range(s)] for i in range(k)]
        pad_px = pad_pixel(g, self.pad_value)[:P]
        for c in range(s):
            col = Signal(cw, name=f"col{c}")
            m.d.comb += col.eq(colent + c)
            col_ok = _in_range(col, 0, g.w)
            colidx = col[:xbits]
            for i in range(k):
                if i < lb_rows:
                    row_ok = _in_range(rowtop + i, 0, g.h)
                    m.d.comb += [lb[i][c].addr.eq(colidx),
                                 ent_next[i][c].eq(Mux(col_ok & row_ok, lb[i][c].data, pad_px))]
                else:
                    m.d.comb += ent_next[i][c].eq(newpix[i - lb_rows][c])
            # the column shifted up by s rows, for the next output row (the prologue's writes
            # and a step's never meet: the prologue ends before the first step's fetch)
            for r in range(lb_rows):
                wp = lb_w[r][c]
                step_we = tt.last & col_ok
                m.d.comb += [wp.en.eq(step_we | (pro_we[r] if c == 0 else 0)),
                             wp.addr.eq(Mux(step_we, colidx, pro_waddr) if c == 0 else colidx),
                             wp.data.eq(Mux(step_we, ent_next[r + s][c], pro_wdata) if c == 0 else ent_next[r + s][c])]
        with m.If(tt.last):
            m.d.sync += [ent[i][c].eq(ent_next[i][c]) for i in range(k) for c in range(s)]
            m.d.sync += t2.eq(t1)

        # ---------------- pe_pass: shift the PE grid, take the entering columns ---------
        grid = [[Signal(P, name=f"pe{i}_{j}") for j in range(k)] for i in range(k)]
        if sc.stages["pe_pass"]:
            pt2 = StageTimer(m, tt.done, sc.stages["pe_pass"], "pass")
            src, when, done, tsrc = ent, pt2.last, pt2.done, t2
        else:
            src, when, done, tsrc = ent_next, tt.last, tt.done, t1
        with m.If(when):
            m.d.sync += t3.eq(tsrc)
        m.d.comb += [self.real.eq(t3 >= sc.warmup), self.real_next.eq(when & (tsrc >= sc.warmup))]
        with m.If(when):
            for i in range(k):
                for j in range(k):
                    m.d.sync += grid[i][j].eq(grid[i][j + s] if j < k - s else src[i][j - (k - s)])
        m.d.comb += self.done.eq(done)
        for i in range(k):
            for j in range(k):
                m.d.comb += self.grid[(i * k + j) * P:(i * k + j + 1) * P].eq(grid[i][j])
        return m
