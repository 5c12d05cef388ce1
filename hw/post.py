"""Post-processing units, exactly DESIGN.md §3 (the same arithmetic as ``sim.golden``).

* :func:`requant_expr` — bias, fixed-point scale, rounding shift, output zero point, clamp:
  ``clamp((((acc + bias) * M + 2**(s-1)) >> s) + z_out, lo, 2**a_bits - 1)`` (no rounding term for
  ``s == 0``; ``>>`` arithmetic; :func:`gen.intops.round_shift`, the golden model's own
  expression; ``lo = z_out`` with ReLU, else 0). Used by the layer engine's post stage and by
  :class:`Requantize`; :func:`requant_tail` is its part after the multiply.
* :class:`Requantize` — a vector of accumulators in, activations out (or raw ``acc + bias``).
* :class:`MaxPoolUnit` — k×k max-pool with any stride and padding over a raster stream of
  pixels (windows clipped onto one pixel refused); :class:`AvgPoolUnit` — k×k, stride k average pool.
* :class:`GlobalAvgPoolUnit` — ``((Σ (x - z_in)) * M + 2**(s-1)) >> s) + z_out`` per channel, clamped.
* :class:`ResidualAddUnit` — ``clamp((((a-za)*Ma + (b-zb)*Mb + 2**(s-1)) >> s) + z_out, lo, 2**a_bits - 1)``.
  A chip builds each channel as an instance of one :class:`AddLane` module per join.

With every zero point 0 (the defaults) each unit builds exactly the logic it built before
zero points existed.

Every unit has ``amaranth.lib.stream`` ports with flat ``unsigned`` payloads (element
``e`` in bits ``[e*w, (e+1)*w)``), a one-register output stage and full back-pressure:
``i.ready = ~o.valid | o.ready``.

Parameters arrive as ``gen.params`` objects (:class:`~gen.params.Requant`,
:class:`~gen.params.AddParams`), validated when they were made: the units take them as
they are and refuse nothing.
"""
from __future__ import annotations

import hashlib

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from gen.intops import pool_windows, round_shift, streamed_pool_refusal
from gen.params import AddParams, Requant
from hw.blackbox import instantiate

__all__ = ["AddLane", "residual_add_expr", "ConcatUnit", "sext", "saturate", "requant_expr", "requant_tail", "round_shift", "clamp_unsigned", "Requantize", "MaxPoolUnit", "AvgPoolUnit", "GlobalAvgPoolUnit",
           "ResidualAddUnit"]


def clamp_unsigned(v, a_bits: int, lo: int = 0):
    """``clamp(v, lo, 2**a_bits - 1)`` of a signed value, as ``a_bits`` unsigned (``lo`` a constant code).
    The upper bound is read from the bits above ``a_bits`` (no comparator), and so is a lower
    bound of 0."""
    hi = (1 << a_bits) - 1
    v = v.as_signed()
    if len(v) <= a_bits:     # never above hi
        return Mux(v < lo, lo, sext(v, a_bits))[:a_bits]
    neg, above = v[-1], v[a_bits:-1].any() if len(v) > a_bits + 1 else Const(0)
    low = neg if lo == 0 else (v < lo)
    return Mux(low, lo, Mux(above, hi, v[:a_bits]))[:a_bits]


def saturate(v, width: int):
    """The signed value ``v`` clamped to the signed ``width``-bit range, as ``width`` bits: it
    fits when its bits from ``width - 1`` up all copy its sign (no comparator)."""
    v = v.as_signed()
    if len(v) <= width:
        return sext(v, width)
    top = v[width - 1:]
    fits = ~top.any() | top.all()
    lo, hi = Const(1 << (width - 1), width), Const((1 << (width - 1)) - 1, width)
    return Mux(fits, v[:width], Mux(v[-1], lo, hi))


def requant_tail(v, rq: Requant, a_bits: int, offset: int = 0):
    """``clamp((round_shift(v + offset, s)) + z_out, lo, 2**a_bits - 1)`` of the signed product
    ``v`` (``(acc + bias) * M``, less a constant ``offset``): the part of :func:`requant_expr`
    after the multiplier."""
    r = round_shift(v, rq.s, offset)
    if rq.z_out:
        r = r + Const(rq.z_out, unsigned(rq.z_out.bit_length()))
    return clamp_unsigned(r, a_bits, rq.lo())


def requant_expr(acc, bias: int, rq: Requant, a_bits: int):
    """DESIGN.md §3 requantization of one signed accumulator (constants ``bias`` and ``rq``'s ``M``, ``s``,
    ``z_out``, ReLU flag)."""
    v = acc.as_signed() + Const(int(bias), signed(max(2, int(bias).bit_length() + 1)))
    return requant_tail(v * Const(rq.m, unsigned(17)).as_signed(), rq, a_bits)


def sext(v, width: int):
    """The signed value ``v`` as ``width`` bits of two's complement (sign-extended or truncated)."""
    v = v.as_signed()
    if len(v) >= width:
        return v[:width]
    return Cat(v, v[-1].replicate(width - len(v)))


def _flat(signal, width: int, i: int):
    return signal[i * width:(i + 1) * width]


class Requantize(wiring.Component):
    """``n = len(bias)`` signed ``acc_bits`` accumulators in → ``n`` outputs.

    With a ``requant``: unsigned ``a_bits`` activations, :func:`requant_expr` per element
    with ``bias[e]``. ``requant=None`` (raw, the last layer): signed ``out_bits`` (default
    32) ``acc + bias``. One register: the result is offered the clock after the input is taken.
    """

    def __init__(self, acc_bits: int, bias, requant: Requant | None = None, *, a_bits: int = 8, out_bits: int = 32):
        self.bias = [int(b) for b in bias]
        self.n, self.acc_bits, self.requant, self.a_bits = len(self.bias), acc_bits, requant, a_bits
        self.raw = requant is None
        self.out_bits = out_bits if self.raw else a_bits
        n = self.n
        super().__init__({
            "i": In(stream.Signature(unsigned(n * acc_bits))),
            "o": Out(stream.Signature(unsigned(n * self.out_bits))),
        })

    def element(self, acc, e: int):
        """The output of element ``e`` for accumulator value ``acc`` (combinational)."""
        if self.raw:
            return sext(acc.as_signed() + self.bias[e], self.out_bits)
        return requant_expr(acc, self.bias[e], self.requant, self.a_bits)

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.i.ready.eq(~self.o.valid | self.o.ready)
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += self.o.valid.eq(1)
            m.d.sync += [_flat(self.o.payload, self.out_bits, e).eq(
                self.element(_flat(self.i.payload, self.acc_bits, e), e)) for e in range(self.n)]
        return m


def _pixel_unit(c: int, a_bits: int) -> dict:
    """Ports of a unit that turns a pixel stream into a pixel stream (``C`` channels of ``a_bits``)."""
    return {"i": In(stream.Signature(unsigned(c * a_bits))), "o": Out(stream.Signature(unsigned(c * a_bits)))}


def _vmax(a, b, c: int, w: int):
    return Cat(*[Mux(_flat(a, w, e) > _flat(b, w, e), _flat(a, w, e), _flat(b, w, e)) for e in range(c)])


class MaxPoolUnit(wiring.Component):
    """k×k max-pool with ``stride`` [k] and ``pad`` [0] of an ``H x W`` map of ``C``-channel
    ``a_bits`` pixels arriving in raster order (one pixel per beat); pooled pixels leave in
    raster order, each registered on the clock after its window's last pixel (the windows of
    ``sim.golden.maxpool2d``: padding never wins, ``gen.intops.pool_windows``). Separable: a
    row's last ``k - 1`` pixels give each window's row maximum where the window's last column
    arrives, and per output column the last ``k - 1`` such row maxima give the window's maximum
    where its last row arrives. Pixels in no window are consumed and dropped; when the map's
    last pixels are such, the last output is held and registered on the clock after the map's
    last pixel instead, so an image's last output always leaves on its last pixel (the chip's
    cycle model counts on it). Two windows ending on one pixel (clipped by the padding) are
    refused (``gen.intops.streamed_pool_refusal``, which ``gen.chipplan`` checks too)."""

    def __init__(self, c: int, h: int, w: int, k: int = 2, a_bits: int = 8, *, stride: int | None = None,
                 pad: int = 0):
        self.c, self.h, self.w, self.k, self.a_bits = c, h, w, k, a_bits
        self.stride, self.pad = stride or k, pad
        self.cols, self.rows = pool_windows(w, k, stride, pad), pool_windows(h, k, stride, pad)
        for axis, n in (("rows", h), ("columns", w)):
            why = streamed_pool_refusal(n, k, stride, pad)
            if why:
                raise ValueError(f"a {k}x{k} max-pool with stride {self.stride} and pad {pad} over {h}x{w}, along "
                                 f"its {axis}: {why}; the unit emits one output per pixel")
        self.wo = len(self.cols)
        super().__init__(_pixel_unit(c, a_bits))

    def elaborate(self, platform):
        m = Module()
        c, k, a = self.c, self.k, self.a_bits
        x = Signal(range(self.w))
        y = Signal(range(self.h))
        # the pixel history carries no reset: a window reads only what this image wrote
        hist = [Signal(c * a, name=f"prev{t}", reset_less=True) for t in range(k - 1)]   # this row's last pixels
        # the row maxima of the last k - 1 rows, per output column, as a ring that turns once a
        # row: a row's window ends come in column order, so the head is always the current
        # column's, and one comparator chain serves every column (no copy per column)
        ring = [[Signal(c * a, name=f"rowmax{j}_{t}", reset_less=True) for t in range(k - 1)] for j in range(self.wo)]
        nv = Signal(range(k + 1))       # rows of the window ending on this row (0: none ends)
        end = Signal()                  # a window's last column
        width = Signal(range(k + 1))    # its columns inside the map
        with m.Switch(y):
            for (r0, r1) in self.rows:
                with m.Case(r1):
                    m.d.comb += nv.eq(r1 - r0 + 1)
        with m.Switch(x):
            for (c0, c1) in self.cols:
                with m.Case(c1):
                    m.d.comb += [end.eq(1), width.eq(c1 - c0 + 1)]
        pix = self.i.payload
        hmax = pix                      # the row maximum over the window's `width` columns
        chain = pix
        for t in range(k - 1):
            chain = _vmax(chain, hist[t], c, a)
            hmax = Mux(width > t + 1, chain, hmax)
        out = hmax
        for t in range(k - 1):          # the window's rows before this one: nv - 1 of them
            out = Mux(nv > t + 1, _vmax(out, ring[0][t], c, a), out)
        m.d.comb += self.i.ready.eq(~self.o.valid | self.o.ready)
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(self.i.valid & self.i.ready):
            if k > 1:
                m.d.sync += [hist[0].eq(pix)] + [hist[t].eq(hist[t - 1]) for t in range(1, k - 1)]
                with m.If(end):
                    m.d.sync += [ring[j][t].eq(ring[j + 1][t]) for j in range(self.wo - 1) for t in range(k - 1)]
                    m.d.sync += [ring[-1][0].eq(hmax)] + [ring[-1][t].eq(ring[0][t - 1]) for t in range(1, k - 1)]
            last_col = x == self.w - 1
            ey, ex = self.rows[-1][1], self.cols[-1][1]
            if (ey, ex) == (self.h - 1, self.w - 1):
                with m.If(end & (nv != 0)):
                    m.d.sync += [self.o.payload.eq(out), self.o.valid.eq(1)]
            else:
                # the map's last pixels fall in no window: the last output waits for the last
                # pixel, so an image's last output leaves on its last pixel as when none is dropped
                held = Signal.like(self.o.payload, name="held", reset_less=True)
                final = (y == ey) & (x == ex)
                with m.If(end & (nv != 0) & ~final):
                    m.d.sync += [self.o.payload.eq(out), self.o.valid.eq(1)]
                with m.If(final):
                    m.d.sync += held.eq(out)
                with m.If((y == self.h - 1) & last_col):
                    m.d.sync += [self.o.payload.eq(held), self.o.valid.eq(1)]
            m.d.sync += x.eq(Mux(last_col, 0, x + 1))
            with m.If(last_col):
                m.d.sync += y.eq(Mux(y == self.h - 1, 0, y + 1))
        return m


class AvgPoolUnit(wiring.Component):
    """k×k, stride k average pool of an ``H x W`` map (``k`` divides both; ``sim.golden.avgpool2d``):
    per window and channel ``clamp(((Σ (x - z_in)) * M + 2**(s-1)) >> s) + z_out, lo, 2**a_bits - 1)``,
    registered on the clock after the window's last pixel; one running sum per output column."""

    def __init__(self, c: int, h: int, w: int, k: int, requant: Requant, a_bits: int = 8, *, z_in: int = 0):
        self.c, self.h, self.w, self.k, self.requant, self.a_bits, self.z_in = c, h, w, k, requant, a_bits, int(z_in)
        self.wo = w // k
        super().__init__(_pixel_unit(c, a_bits))

    def elaborate(self, platform):
        m = Module()
        c, k, a = self.c, self.k, self.a_bits
        sb = (k * k * ((1 << a) - 1)).bit_length()
        x, y = Signal(range(self.w)), Signal(range(self.h))
        xi, yi = Signal(range(k)), Signal(range(k))
        xo = Signal(range(max(2, self.wo)))
        sums = [[Signal(sb, name=f"sum{j}_{e}") for e in range(c)] for j in range(self.wo)]
        m.d.comb += self.i.ready.eq(~self.o.valid | self.o.ready)
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(self.i.valid & self.i.ready):
            first = (xi == 0) & (yi == 0)
            for j in range(self.wo):
                with m.If(xo == j):
                    new = [Mux(first, 0, sums[j][e]) + _flat(self.i.payload, a, e) for e in range(c)]
                    m.d.sync += [s_.eq(v) for s_, v in zip(sums[j], new)]
                    with m.If((xi == k - 1) & (yi == k - 1)):
                        m.d.sync += [self.o.valid.eq(1),
                                     *_pooled(self.o.payload, new, k * k, self.requant, self.z_in, a)]
            last_col = x == self.w - 1
            m.d.sync += x.eq(Mux(last_col, 0, x + 1))
            with m.If(last_col):
                m.d.sync += [xi.eq(0), xo.eq(0), y.eq(Mux(y == self.h - 1, 0, y + 1)),
                             yi.eq(Mux(yi == k - 1, 0, yi + 1))]
            with m.Else():
                m.d.sync += [xi.eq(Mux(xi == k - 1, 0, xi + 1)), xo.eq(Mux(xi == k - 1, xo + 1, xo))]
        return m


def _pooled(payload, sums, n: int, rq: Requant, z_in: int, a: int) -> list:
    """The assignments of a pooled output from its per-channel sums over ``n`` pixels:
    ``clamp(((Σ x - n·z_in) * M + 2**(s-1)) >> s) + z_out, lo, 2**a - 1)`` (DESIGN.md §3)."""
    off = n * z_in
    if off or rq.z_out or not rq.relu:
        tot = [(v - Const(off, unsigned(off.bit_length()))) if off else v for v in sums]
        return [_flat(payload, a, e).eq(requant_tail(tot[e] * Const(rq.m, unsigned(17)).as_signed(), rq, a))
                for e in range(len(sums))]
    # no zero points, ReLU: the unsigned form the unit was first built with
    return [_flat(payload, a, e).eq(clamp_unsigned(round_shift(v * Const(rq.m, unsigned(16)), rq.s), a))
            for e, v in enumerate(sums)]


class GlobalAvgPoolUnit(wiring.Component):
    """Global average pool of an ``H x W`` map: after the last pixel, one vector
    ``clamp(((Σ (x - z_in)) * M + 2**(s-1)) >> s) + z_out, lo, 2**a_bits - 1)`` per channel
    (``M``, ``s``, ``z_out``, ``lo``: ``requant``; ``Σ (x - z_in) = Σ x - H·W·z_in``)."""

    def __init__(self, c: int, h: int, w: int, requant: Requant, a_bits: int = 8, *, z_in: int = 0):
        self.c, self.n, self.requant, self.a_bits, self.z_in = c, h * w, requant, a_bits, int(z_in)
        super().__init__(_pixel_unit(c, a_bits))

    def elaborate(self, platform):
        m = Module()
        c, a = self.c, self.a_bits
        sb = (self.n * ((1 << a) - 1)).bit_length()
        sums = [Signal(sb, name=f"sum{e}") for e in range(c)]
        cnt = Signal(range(self.n))
        m.d.comb += self.i.ready.eq(~self.o.valid | self.o.ready)
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(self.i.valid & self.i.ready):
            new = [sums[e] + _flat(self.i.payload, a, e) for e in range(c)]
            with m.If(cnt == self.n - 1):
                m.d.sync += [cnt.eq(0), self.o.valid.eq(1)] + [s_.eq(0) for s_ in sums]
                m.d.sync += _pooled(self.o.payload, new, self.n, self.requant, self.z_in, a)
            with m.Else():
                m.d.sync += [cnt.eq(cnt + 1)] + [s_.eq(v) for s_, v in zip(sums, new)]
        return m


def _join_beat(m: Module, a, b, o):
    """The handshake of a two-input join with a registered output ``o``: a beat is taken from
    ``a`` and ``b`` together when both are valid and ``o`` has room; ``o.valid`` follows.
    Returns the take condition (the caller registers ``o.payload`` under it)."""
    room = ~o.valid | o.ready
    take = a.valid & b.valid & room
    m.d.comb += [a.ready.eq(b.valid & room), b.ready.eq(a.valid & room)]
    with m.If(o.valid & o.ready):
        m.d.sync += o.valid.eq(0)
    with m.If(take):
        m.d.sync += o.valid.eq(1)
    return take


def residual_add_expr(xa, xb, p: AddParams, a: int):
    """``clamp((((xa-za)*Ma + (xb-zb)*Mb + 2**(s-1)) >> s) + z_out, lo, 2**a - 1)`` of two
    ``a``-bit codes (DESIGN.md §3), combinational."""
    if p.za:
        xa = xa - Const(p.za, unsigned(a))
    if p.zb:
        xb = xb - Const(p.zb, unsigned(a))
    v = xa * Const(p.ma, unsigned(16)) + xb * Const(p.mb, unsigned(16))
    r = round_shift(v, p.s)
    if p.z_out:
        r = r + Const(p.z_out, unsigned(a))
    return clamp_unsigned(r, a, p.lo())


class AddLane(wiring.Component):
    """One channel of :class:`ResidualAddUnit`, combinational (:func:`residual_add_expr`):
    ``a``, ``b`` in, ``y`` out. A chip makes it one module per join (``hw.blackbox``): a
    join's channels differ in nothing but their inputs."""

    def __init__(self, params: AddParams, a_bits: int = 8):
        self.params, self.a_bits = params, a_bits
        super().__init__(self.signature_of(a_bits))

    @staticmethod
    def signature_of(a_bits: int) -> wiring.Signature:
        """The ports of a lane of ``a_bits``-bit codes: operands ``a`` and ``b``, sum ``y``."""
        return wiring.Signature({"a": In(a_bits), "b": In(a_bits), "y": Out(a_bits)})

    @staticmethod
    def module_name(params: AddParams, a_bits: int) -> str:
        """The Verilog module name: the join's parameters and code width."""
        key = repr((params, a_bits))
        return f"pimgen_add_lane_{hashlib.sha1(key.encode()).hexdigest()[:10]}"

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.y.eq(residual_add_expr(self.a, self.b, self.params, self.a_bits))
        return m


class ResidualAddUnit(wiring.Component):
    """Residual join of two pixel streams ``a`` and ``b`` (``C`` channels each):
    ``clamp((((a-za)*Ma + (b-zb)*Mb + 2**(s-1)) >> s) + z_out, lo, 2**a_bits - 1)``. A beat is
    taken from both inputs together (when both are valid). ``Ma``, ``Mb``, ``s``, zero points,
    ReLU flag: ``params``. ``lanes`` (a chip): each channel's arithmetic is an instance of one
    :class:`AddLane` module (``hw.blackbox``), so the Verilog of a 512-channel join is one lane
    and 512 instances, not 512 copies."""

    def __init__(self, c: int, params: AddParams, a_bits: int = 8, *, lanes: bool = False):
        self.c, self.params, self.a_bits, self.lanes = c, params, a_bits, lanes
        super().__init__({
            "a": In(stream.Signature(unsigned(c * a_bits))),
            "b": In(stream.Signature(unsigned(c * a_bits))),
            "o": Out(stream.Signature(unsigned(c * a_bits))),
        })

    def elaborate(self, platform):
        m = Module()
        c, a, p = self.c, self.a_bits, self.params
        ys = []
        for e in range(c):
            xa, xb = _flat(self.a.payload, a, e), _flat(self.b.payload, a, e)
            if self.lanes:
                lane = instantiate(m, f"lane{e}", AddLane.module_name(p, a), AddLane.signature_of(a),
                                   lambda: AddLane(p, a), clocked=False)
                m.d.comb += [lane.a.eq(xa), lane.b.eq(xb)]
                ys.append(lane.y)
            else:
                ys.append(residual_add_expr(xa, xb, p, a))
        with m.If(_join_beat(m, self.a, self.b, self.o)):
            m.d.sync += [_flat(self.o.payload, a, e).eq(y) for e, y in enumerate(ys)]
        return m


class ConcatUnit(wiring.Component):
    """Channel concatenation of two pixel streams: ``a`` (``ca`` channels) then ``b`` (``cb``
    channels), ``a_bits`` each; a beat is taken from both inputs together. The producers
    share one scale and zero point (the front end requantizes them so), so the codes pass
    as they are (``gen.intops.concat``)."""

    def __init__(self, ca: int, cb: int, a_bits: int = 8):
        self.ca, self.cb, self.a_bits = ca, cb, a_bits
        super().__init__({
            "a": In(stream.Signature(unsigned(ca * a_bits))),
            "b": In(stream.Signature(unsigned(cb * a_bits))),
            "o": Out(stream.Signature(unsigned((ca + cb) * a_bits))),
        })

    def elaborate(self, platform):
        m = Module()
        with m.If(_join_beat(m, self.a, self.b, self.o)):
            m.d.sync += self.o.payload.eq(Cat(self.a.payload, self.b.payload))
        return m
