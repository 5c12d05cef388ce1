"""Post-processing units, exactly DESIGN.md §3 (the same arithmetic as ``sim.golden``).

* :func:`requant_expr` — bias, fixed-point scale, rounding shift, output zero point, clamp:
  ``clamp((((acc + bias) * M + 2**(s-1)) >> s) + z_out, lo, 2**a_bits - 1)`` (no rounding term for
  ``s == 0``; ``>>`` arithmetic; :func:`gen.intops.round_shift`, the golden model's own
  expression; ``lo = z_out`` with ReLU, else 0). Used by the layer engine's post stage and by
  :class:`Requantize`; :func:`requant_tail` is its part after the multiply.
* :class:`Requantize` — a vector of accumulators in, activations out (or raw ``acc + bias``).
* :class:`MaxPoolUnit` — k×k / stride k max-pool over a raster stream of pixels.
* :class:`GlobalAvgPoolUnit` — ``((Σ (x - z_in)) * M + 2**(s-1)) >> s) + z_out`` per channel, clamped.
* :class:`ResidualAddUnit` — ``clamp((((a-za)*Ma + (b-zb)*Mb + 2**(s-1)) >> s) + z_out, lo, 2**a_bits - 1)``.

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

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from gen.intops import round_shift
from gen.params import AddParams, Requant

__all__ = ["ConcatUnit", "sext", "requant_expr", "requant_tail", "round_shift", "clamp_unsigned", "Requantize", "MaxPoolUnit", "GlobalAvgPoolUnit",
           "ResidualAddUnit"]


def clamp_unsigned(v, a_bits: int, lo: int = 0):
    """``clamp(v, lo, 2**a_bits - 1)`` of a signed value, as ``a_bits`` unsigned (``lo`` a constant code)."""
    hi = (1 << a_bits) - 1
    return Mux(v < lo, lo, Mux(v > hi, hi, v[:a_bits]))[:a_bits]


def requant_tail(v, rq: Requant, a_bits: int):
    """``clamp((round_shift(v, s)) + z_out, lo, 2**a_bits - 1)`` of the signed product ``v``
    (``(acc + bias) * M``): the part of :func:`requant_expr` after the multiplier."""
    r = round_shift(v, rq.s)
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


def _vmax(a, b, c: int, w: int):
    return Cat(*[Mux(_flat(a, w, e) > _flat(b, w, e), _flat(a, w, e), _flat(b, w, e)) for e in range(c)])


class MaxPoolUnit(wiring.Component):
    """k×k, stride k max-pool of an ``H x W`` map of ``C``-channel ``a_bits`` pixels arriving
    in raster order (one pixel per beat); pooled pixels leave in raster order. Trailing rows
    and columns that do not fill a window are consumed and dropped (``sim.golden.maxpool2d``).
    One running maximum per pooled column is kept (``W // k`` registers). ``1 <= k <= min(H, W)``
    (``gen.network.MaxPool`` checks it)."""

    def __init__(self, c: int, h: int, w: int, k: int = 2, a_bits: int = 8):
        self.c, self.h, self.w, self.k, self.a_bits = c, h, w, k, a_bits
        self.wo = w // k
        super().__init__({
            "i": In(stream.Signature(unsigned(c * a_bits))),
            "o": Out(stream.Signature(unsigned(c * a_bits))),
        })

    def elaborate(self, platform):
        m = Module()
        c, k, w, a = self.c, self.k, self.w, self.a_bits
        x = Signal(range(w))
        y = Signal(range(self.h))
        xi = Signal(range(k))
        yi = Signal(range(k))
        xo = Signal(range(max(2, self.wo + 1)))
        acc = [Signal(c * a, name=f"colmax{j}") for j in range(self.wo)]
        m.d.comb += self.i.ready.eq(~self.o.valid | self.o.ready)
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(self.i.valid & self.i.ready):
            pix = self.i.payload
            inside = (x < self.wo * k) & (y < (self.h // k) * k)
            for j in range(self.wo):
                with m.If(xo == j):
                    new = Mux((xi == 0) & (yi == 0), pix, _vmax(acc[j], pix, c, a))
                    with m.If(inside):
                        m.d.sync += acc[j].eq(new)
                        with m.If((xi == k - 1) & (yi == k - 1)):
                            m.d.sync += [self.o.payload.eq(new), self.o.valid.eq(1)]
            # raster counters
            last_col = x == w - 1
            m.d.sync += x.eq(Mux(last_col, 0, x + 1))
            with m.If(last_col):
                m.d.sync += [xi.eq(0), xo.eq(0), y.eq(Mux(y == self.h - 1, 0, y + 1)),
                             yi.eq(Mux((yi == k - 1) | (y == self.h - 1), 0, yi + 1))]
            with m.Else():
                m.d.sync += [xi.eq(Mux(xi == k - 1, 0, xi + 1)), xo.eq(Mux(xi == k - 1, xo + 1, xo))]
        return m


class GlobalAvgPoolUnit(wiring.Component):
    """Global average pool of an ``H x W`` map: after the last pixel, one vector
    ``clamp(((Σ (x - z_in)) * M + 2**(s-1)) >> s) + z_out, lo, 2**a_bits - 1)`` per channel
    (``M``, ``s``, ``z_out``, ``lo``: ``requant``; ``Σ (x - z_in) = Σ x - H·W·z_in``)."""

    def __init__(self, c: int, h: int, w: int, requant: Requant, a_bits: int = 8, *, z_in: int = 0):
        self.c, self.n, self.requant, self.a_bits, self.z_in = c, h * w, requant, a_bits, int(z_in)
        super().__init__({
            "i": In(stream.Signature(unsigned(c * a_bits))),
            "o": Out(stream.Signature(unsigned(c * a_bits))),
        })

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
                rq, off = self.requant, self.n * self.z_in
                tot = [(v - Const(off, unsigned(off.bit_length()))) if off else v for v in new]
                if off or rq.z_out or not rq.relu:
                    m.d.sync += [_flat(self.o.payload, a, e).eq(requant_tail(
                        tot[e] * Const(rq.m, unsigned(17)).as_signed(), rq, a)) for e in range(c)]
                else:   # the unit as built before zero points
                    m.d.sync += [_flat(self.o.payload, a, e).eq(clamp_unsigned(
                        round_shift(new[e] * Const(rq.m, unsigned(16)), rq.s), a)) for e in range(c)]
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


class ResidualAddUnit(wiring.Component):
    """Residual join of two pixel streams ``a`` and ``b`` (``C`` channels each):
    ``clamp((((a-za)*Ma + (b-zb)*Mb + 2**(s-1)) >> s) + z_out, lo, 2**a_bits - 1)``. A beat is
    taken from both inputs together (when both are valid). ``Ma``, ``Mb``, ``s``, zero points,
    ReLU flag: ``params``."""

    def __init__(self, c: int, params: AddParams, a_bits: int = 8):
        self.c, self.params, self.a_bits = c, params, a_bits
        super().__init__({
            "a": In(stream.Signature(unsigned(c * a_bits))),
            "b": In(stream.Signature(unsigned(c * a_bits))),
            "o": Out(stream.Signature(unsigned(c * a_bits))),
        })

    def elaborate(self, platform):
        m = Module()
        c, a = self.c, self.a_bits
        with m.If(_join_beat(m, self.a, self.b, self.o)):
            for e in range(c):
                p = self.params
                xa, xb = _flat(self.a.payload, a, e), _flat(self.b.payload, a, e)
                if p.za:
                    xa = xa - Const(p.za, unsigned(a))
                if p.zb:
                    xb = xb - Const(p.zb, unsigned(a))
                v = xa * Const(p.ma, unsigned(16)) + xb * Const(p.mb, unsigned(16))
                r = round_shift(v, p.s)
                if p.z_out:
                    r = r + Const(p.z_out, unsigned(a))
                m.d.sync += _flat(self.o.payload, a, e).eq(clamp_unsigned(r, a, p.lo()))
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
