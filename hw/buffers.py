"""Buffers of a layer engine: the feature-map buffer, the conventional window generator
and the novel mapping's input distributor (line buffers + PE-to-PE pixel passing).

Feature-map words
    The input feature map ``[Cin, H, W]`` is stored pixel by pixel in raster order, each
    pixel as ``wpp = ceil(Cin*a_bits / G)`` words of ``Wd = min(G, Cin*a_bits)`` bits
    (channel ``c`` of a pixel at bits ``[c*a, (c+1)*a)`` of the concatenated words; the last
    word's spare bits are zero). ``G`` is the global bus width: one word crosses the bus per
    clock. Word address of pixel ``(y, x)`` word ``w``: ``(y*W + x)*wpp + w``.

Both fetch blocks are stages of the layer schedule (``hw.controller``): started by a ``go``
pulse, fixed duration, result in an output register on the stage's last edge, ``done`` the
cycle after. A read issued in cycle ``c`` returns its word in cycle ``c+1`` (synchronous
BRAM read port), so a fetch of ``n`` words lasts ``n + 1`` clocks
(``gen.timing.FM_READ_LATENCY``). Padding pixels are zero and are not read (their slot idles).
"""
from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from hw.controller import StageTimer

__all__ = ["FMGeometry", "FeatureMapBuffer", "WindowGenerator", "InputDistributor"]


class FMGeometry:
    """Feature-map word layout: ``cin`` channels of ``a_bits``, ``h x w`` pixels, bus ``g`` bits."""

    def __init__(self, cin: int, h: int, w: int, a_bits: int, g: int):
        self.cin, self.h, self.w, self.a = cin, h, w, a_bits
        self.pix_bits = cin * a_bits
        self.word_bits = min(g, self.pix_bits)
        self.wpp = -(-self.pix_bits // self.word_bits)
        self.depth = h * w * self.wpp

    def words(self, pixel_values) -> list[int]:
        """The ``wpp`` words of one pixel (``cin`` unsigned values)."""
        word = 0
        for c, v in enumerate(pixel_values):
            word |= (int(v) & ((1 << self.a) - 1)) << (c * self.a)
        mask = (1 << self.word_bits) - 1
        return [(word >> (i * self.word_bits)) & mask for i in range(self.wpp)]

    def pack_map(self, x) -> list[int]:
        """All words of a ``[Cin, H, W]`` map, in buffer (address) order."""
        out = []
        for yy in range(self.h):
            for xx in range(self.w):
                out += self.words([x[c][yy][xx] for c in range(self.cin)])
        return out


def _addr_bits(depth: int) -> int:
    return max(1, ceil_log2(max(2, depth)))


class FeatureMapBuffer(wiring.Component):
    """The layer's input feature map in one ``lib.memory.Memory`` (BRAM): a write stream
    ``w`` (one word per beat, addresses in arrival order, wrapping after ``depth`` words)
    and ``n_read`` synchronous read ports ``rd{k}_addr/en/data``; ``reads`` counts the
    words read (all ports, since reset; a read is counted one clock after it is issued)."""

    def __init__(self, geom: FMGeometry, n_read: int = 1):
        self.geom, self.n_read = geom, n_read
        ports = {"w": In(stream.Signature(unsigned(geom.word_bits))), "reads": Out(32)}
        for k in range(n_read):
            ports[f"rd{k}_addr"] = In(_addr_bits(geom.depth))
            ports[f"rd{k}_en"] = In(1)
            ports[f"rd{k}_data"] = Out(geom.word_bits)
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        g = self.geom
        m.submodules.mem = mem = Memory(shape=unsigned(g.word_bits), depth=g.depth, init=[])
        wp = mem.write_port()
        waddr = Signal(range(g.depth))
        m.d.comb += [self.w.ready.eq(1), wp.addr.eq(waddr), wp.data.eq(self.w.payload),
                     wp.en.eq(self.w.valid)]
        with m.If(self.w.valid):
            m.d.sync += waddr.eq(Mux(waddr == g.depth - 1, 0, waddr + 1))
        n = Const(0, 32)
        for k in range(self.n_read):
            rp = mem.read_port()
            m.d.comb += [rp.addr.eq(getattr(self, f"rd{k}_addr")), rp.en.eq(getattr(self, f"rd{k}_en")),
                         getattr(self, f"rd{k}_data").eq(rp.data)]
            en_q = Signal(name=f"rd{k}_en_q")       # counted a clock later (off the address path)
            m.d.sync += en_q.eq(getattr(self, f"rd{k}_en"))
            n = n + en_q
        m.d.sync += self.reads.eq(self.reads + n)
        return m


def _in_range(v, hi: int):
    return (v >= 0) & (v < hi)

def _fetch_words(m, st, port, slots, word_bits, prefix):
    """Read ``slots`` (``(real, addr)`` pairs) one per clock of the fetch stage ``st``
    through ``port``'s ``rd_addr``/``rd_en``/``rd_data`` (one clock of read latency);
    padding slots are not read and give 0. Returns the words, the last one straight from
    the port on the stage's last clock."""
    words = [Signal(word_bits, name=f"{prefix}{n}") for n in range(len(slots))]
    rdv = Signal(word_bits, name=f"{prefix}_rd")
    with m.If(st.run):
        for n in range(len(slots) + 1):
            with m.If(st.idx == n):
                if n < len(slots):
                    real, addr = slots[n]
                    m.d.comb += [port.rd_addr.eq(addr[:len(port.rd_addr)]), port.rd_en.eq(real)]
                if n >= 1:
                    m.d.comb += rdv.eq(Mux(slots[n - 1][0], port.rd_data, 0))
                    m.d.sync += words[n - 1].eq(rdv)
    return words[:-1] + [rdv]



class WindowGenerator(wiring.Component):
    """Conventional mapping, one tile: per step, the im2col windows of the tile's replicas
    (``K*K`` pixels each, kernel-position major) read from the feature-map buffer, one word
    per clock over the global bus (the ``gbus_in`` stage, ``reps*K*K*wpp + 1`` clocks).

    Ports: ``go`` (pulse), ``done``; per replica ``y{r}``, ``x{r}`` (output pixel of the
    step) and ``act{r}`` (the replica has a pixel this step; otherwise its reads are
    skipped); the read port ``rd_addr``, ``rd_en``, ``rd_data``; ``window``: replica-major,
    then kernel position ``(i, j)``, then channel, ``a_bits`` each (registered).
    """

    def __init__(self, geom: FMGeometry, k: int, stride: int, pad: int, n_reps: int, ho: int, wo: int):
        self.geom, self.k, self.stride, self.pad, self.n_reps = geom, k, stride, pad, n_reps
        self.n_reads = n_reps * k * k * geom.wpp
        self.duration = self.n_reads + 1
        ports = {"go": In(1), "done": Out(1), "rd_addr": Out(_addr_bits(geom.depth)), "rd_en": Out(1),
                 "rd_data": In(geom.word_bits), "window": Out(n_reps * k * k * geom.pix_bits)}
        for r in range(n_reps):
            ports[f"y{r}"] = In(range(max(2, ho)))
            ports[f"x{r}"] = In(range(max(2, wo)))
            ports[f"act{r}"] = In(1)
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        g, k, s, pad = self.geom, self.k, self.stride, self.pad
        st = StageTimer(m, self.go, self.duration, "fetch")
        m.d.comb += self.done.eq(st.done)
        # positions latched at go
        pos = []
        for r in range(self.n_reps):
            yl, xl, al = (Signal.like(getattr(self, f"{n}{r}"), name=f"{n}{r}_l") for n in ("y", "x", "act"))
            with m.If(self.go):
                m.d.sync += [yl.eq(getattr(self, f"y{r}")), xl.eq(getattr(self, f"x{r}")),
                             al.eq(getattr(self, f"act{r}"))]
            pos.append(tuple(Mux(self.go, getattr(self, f"{n}{r}"), l_) for n, l_ in
                             zip(("y", "x", "act"), (yl, xl, al))))
        cw = signed(max(ceil_log2(max(g.h, g.w) * 2 + 2 * k + 4) + 2, 4))

        def slot(n):
            r, rest = divmod(n, k * k * g.wpp)
            kp, w = divmod(rest, g.wpp)
            i, j = divmod(kp, k)
            y, x, act = pos[r]
            iy = Signal(cw, name=f"iy_{n}")
            ix = Signal(cw, name=f"ix_{n}")
            m.d.comb += [iy.eq(y * s + (i - pad)), ix.eq(x * s + (j - pad))]
            real = act & _in_range(iy, g.h) & _in_range(ix, g.w)
            addr = (iy * g.w + ix) * g.wpp + w
            return real, addr

        # the window register: the words so far, the last one straight from the port
        final = _fetch_words(m, st, self, [slot(n) for n in range(self.n_reads)], g.word_bits, "wword")
        with m.If(st.last):
            for r in range(self.n_reps):
                for kp in range(k * k):
                    base = (r * k * k + kp) * g.wpp
                    pix = Cat(*final[base:base + g.wpp])[:g.pix_bits]
                    off = (r * k * k + kp) * g.pix_bits
                    m.d.sync += self.window[off:off + g.pix_bits].eq(pix)
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
    """

    def __init__(self, geom: FMGeometry, k: int, stride: int, pad: int, x0: int, y0: int, ho: int, wo: int,
                 d_tbus: int, d_pass: int):
        if k <= 1:
            raise ValueError("the novel mapping needs K > 1")
        self.geom, self.k, self.stride, self.pad = geom, k, stride, pad
        self.x0, self.y0 = x0, y0
        self.wu = -(-(k - stride) // stride) if k > stride else 0
        self.n_reads = stride * stride * geom.wpp
        self.duration = self.n_reads + 1
        self.d_tbus, self.d_pass = d_tbus, d_pass
        if d_tbus < 1:
            raise ValueError("tbus_in must last at least one clock")
        lb_rows = max(0, k - stride)
        rows = [y0 * stride - pad + r for r in range(lb_rows)]
        self.pro_rows = [yy for yy in rows if 0 <= yy < geom.h]
        self.pro_reads = len(self.pro_rows) * geom.w * geom.wpp
        ports = {"go": In(1), "done": Out(1), "real": Out(1), "real_next": Out(1), "pro_go": In(1),
                 "y": In(range(max(2, ho))), "t": In(range(max(2, wo + self.wu + 1))), "act": In(1),
                 "rd_addr": Out(_addr_bits(geom.depth)), "rd_en": Out(1), "rd_data": In(geom.word_bits),
                 "grid": Out(k * k * geom.pix_bits)}
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        g, k, s, pad = self.geom, self.k, self.stride, self.pad
        P = g.pix_bits
        lb_rows = max(0, k - s)
        cw = signed(max(ceil_log2(max(g.h, g.w) * 2 + 2 * k + 8) + 2, 4))
        # line buffers: lb[r][x], real columns only
        lb = [[Signal(P, name=f"lb{r}_{x}") for x in range(g.w)] for r in range(lb_rows)]

        # ---------------- prologue: fill the line buffers ----------------------------
        pro_rd_addr = Signal.like(self.rd_addr)
        pro_rd_en = Signal()
        if self.pro_reads:
            pt = StageTimer(m, self.pro_go, self.pro_reads + 1, "pro")
            words = [Signal(g.word_bits, name=f"pword{w}") for w in range(g.wpp)]
            with m.If(pt.run):
                for n in range(self.pro_reads + 1):
                    with m.If(pt.idx == n):
                        if n < self.pro_reads:
                            ri, rest = divmod(n, g.w * g.wpp)
                            x, w = divmod(rest, g.wpp)
                            yy = self.pro_rows[ri]
                            m.d.comb += [pro_rd_addr.eq((yy * g.w + x) * g.wpp + w), pro_rd_en.eq(1)]
                        if n >= 1:
                            ri, rest = divmod(n - 1, g.w * g.wpp)
                            x, w = divmod(rest, g.wpp)
                            r = self.pro_rows[ri] - (self.y0 * s - pad)
                            if w < g.wpp - 1:
                                m.d.sync += words[w].eq(self.rd_data)
                            else:
                                pix = Cat(*words[:g.wpp - 1], self.rd_data)[:P]
                                m.d.sync += lb[r][x].eq(pix)
        # ---------------- gbus_in: the s x s new pixels ------------------------------
        st = StageTimer(m, self.go, self.duration, "gbus")
        m.d.comb += [self.rd_addr.eq(pro_rd_addr), self.rd_en.eq(pro_rd_en)]
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
        m.d.comb += [rowbase.eq(y * s + (k - s - pad)), colbase.eq(t * s + ((self.x0 - self.wu) * s + k - s - pad))]

        def slot(n):
            rc, w = divmod(n, g.wpp)
            r, c = divmod(rc, s)
            iy = Signal(cw, name=f"ny_{n}")
            ix = Signal(cw, name=f"nx_{n}")
            m.d.comb += [iy.eq(rowbase + r), ix.eq(colbase + c)]
            real = act & _in_range(iy, g.h) & _in_range(ix, g.w)
            return real, (iy * g.w + ix) * g.wpp + w

        final = _fetch_words(m, st, self, [slot(n) for n in range(self.n_reads)], g.word_bits, "nword")
        newpix = [[Signal(P, name=f"new{r}_{c}") for c in range(s)] for r in range(s)]
        # step metadata handed to the next stage
        rowtop = Signal(cw)      # real row of window row 0
        colent = Signal(cw)      # real column of entering column 0
        with m.If(st.last):
            for r in range(s):
                for c in range(s):
                    base = (r * s + c) * g.wpp
                    m.d.sync += newpix[r][c].eq(Cat(*final[base:base + g.wpp])[:P])
            m.d.sync += [rowtop.eq(rowbase - (k - s)), colent.eq(colbase)]
        t1 = Signal.like(self.t)   # the step's position in its row, handed along the stages
        t2 = Signal.like(self.t)
        t3 = Signal.like(self.t)
        with m.If(st.last):
            m.d.sync += t1.eq(t)

        # ---------------- tbus_in: assemble the entering columns ----------------------
        tt = StageTimer(m, st.done, self.d_tbus, "tbus")
        ent = [[Signal(P, name=f"ent{i}_{c}") for c in range(s)] for i in range(k)]
        ent_next = [[Signal(P, name=f"entn{i}_{c}") for c in range(s)] for i in range(k)]
        xbits = max(1, ceil_log2(max(2, g.w)))
        # padded to a power of two so the read multiplexer's case statement is complete
        lb_arr = [Array(lb[r] + [Const(0, P)] * ((1 << xbits) - g.w)) for r in range(lb_rows)]
        for c in range(s):
            col = Signal(cw, name=f"col{c}")
            m.d.comb += col.eq(colent + c)
            col_ok = _in_range(col, g.w)
            colidx = col[:xbits]
            for i in range(k):
                if i < lb_rows:
                    row_ok = _in_range(rowtop + i, g.h)
                    m.d.comb += ent_next[i][c].eq(Mux(col_ok & row_ok, lb_arr[i][colidx], 0))
                else:
                    m.d.comb += ent_next[i][c].eq(newpix[i - lb_rows][c])
            with m.If(tt.last & col_ok):
                for r in range(lb_rows):
                    for x in range(g.w):
                        with m.If(colidx == x):
                            m.d.sync += lb[r][x].eq(ent_next[r + s][c])
        with m.If(tt.last):
            m.d.sync += [ent[i][c].eq(ent_next[i][c]) for i in range(k) for c in range(s)]
            m.d.sync += t2.eq(t1)

        # ---------------- pe_pass: shift the PE grid, take the entering columns ---------
        grid = [[Signal(P, name=f"pe{i}_{j}") for j in range(k)] for i in range(k)]
        if self.d_pass:
            pt2 = StageTimer(m, tt.done, self.d_pass, "pass")
            src, when, done, tsrc = ent, pt2.last, pt2.done, t2
        else:
            src, when, done, tsrc = ent_next, tt.last, tt.done, t1
        with m.If(when):
            m.d.sync += t3.eq(tsrc)
        m.d.comb += [self.real.eq(t3 >= self.wu), self.real_next.eq(when & (tsrc >= self.wu))]
        with m.If(when):
            for i in range(k):
                for j in range(k):
                    m.d.sync += grid[i][j].eq(grid[i][j + s] if j < k - s else src[i][j - (k - s)])
        m.d.comb += self.done.eq(done)
        for i in range(k):
            for j in range(k):
                m.d.comb += self.grid[(i * k + j) * P:(i * k + j + 1) * P].eq(grid[i][j])
        return m
