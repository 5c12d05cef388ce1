"""The blocks proven with :mod:`formal.stream_props`: each entry of :data:`BLOCKS` builds the
checker top of one block (small parameters, so that a bounded proof of 8-14 clocks covers
at least one whole frame; depths and times in docs/formal.md) with its model of the beats it owes.

* ``requantize``: :class:`hw.post.Requantize` (2 elements, zero point ``z_out``): 1 in -> 1 out.
* ``maxpool``: :class:`hw.post.MaxPoolUnit` 3x4 map, k = 2, 2-bit pixels (a trailing row dropped): a
  pooled pixel is due on the beat that completes its window, the frame's last one on the
  frame's last beat (held over the dropped row), the max of its 4 pixels.
* ``avgpool``: :class:`hw.post.GlobalAvgPoolUnit` 3 pixels, ``z_in`` and ``z_out``: 3 in -> 1 out.
* ``residual``: :class:`hw.post.ResidualAddUnit` (zero points): ``a`` and ``b`` joined.
* ``words2pixel`` / ``pixel2words``: :mod:`hw.links` (3 words of 4 bits <-> a 10-bit pixel).
* ``router``: :class:`hw.interconnect.Router` at a corner of a 2x2 mesh (LOCAL, EAST, SOUTH),
  1-deep input FIFOs: beats conserved, each output only carries flits that XY routing sends there.
* ``layer_out``: the layer engine's output path, :class:`formal.layer_output.OutputPath`.

``python -m formal.blocks [BLOCK ...] [--depth N] [--fault F]`` runs them and prints a table.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from amaranth.hdl import Cat, Const, Mux, Signal, signed, unsigned  # noqa: E402
from amaranth.lib import data  # noqa: E402

from formal.stream_props import FAULTS, StreamProps, bmc  # noqa: E402
from gen.params import AddParams, Requant  # noqa: E402
from hw.interconnect import Dir, Router, flit_layout  # noqa: E402
from hw.links import PixelToWords, WordsToPixel  # noqa: E402
from hw.post import MaxPoolUnit, GlobalAvgPoolUnit, Requantize, ResidualAddUnit, requant_expr, requant_tail, \
    clamp_unsigned, round_shift  # noqa: E402

A = 4  # activation bits in the small instances
MAXPOOL_BITS = 2  # the max-pool's: its data property compares 4 window pixels; 2 bits keep z3 fast


def _flat(v, w, e):
    return v[e * w:(e + 1) * w]


def _one_to_one(f):
    """Model of a block that owes ``f(payload)`` for every input beat."""
    def model(m, beats):
        (t, p), = beats[:1]
        return t, [f(p)]
    return model


def _periodic(period: int, emit):
    """Model over frames of ``period`` input beats: ``hist[q]`` holds beat ``q`` of the frame;
    ``emit(pos, payload, hist) -> [(pos_q, [expr ...])]`` says at which position ``pos_q``
    which beats fall due (the payload of the current beat is ``payload``)."""
    def model(m, beats):
        (t, p), = beats
        pos = Signal(range(max(2, period)), name="model_pos")
        hist = [Signal(len(p), name=f"model_hist{q}") for q in range(period)]
        with m.If(t):
            m.d.sync += pos.eq(Mux(pos == period - 1, 0, pos + 1))
            with m.Switch(pos):
                for q in range(period):
                    with m.Case(q):
                        m.d.sync += hist[q].eq(p)
        cur = [Mux(pos == q, p, hist[q]) for q in range(period)]   # this frame so far, current beat included
        outs = emit(cur)
        first = next(iter(outs.values()))
        valid = Signal(name="model_due")
        vals = [Signal(len(Cat(first[0])), name=f"model_out{e}") for e in range(len(first))]
        for q, exprs in outs.items():
            with m.If(pos == q):
                m.d.comb += valid.eq(t)
                m.d.comb += [v.eq(x) for v, x in zip(vals, exprs)]
        return valid, vals
    return model


# --- the blocks -------------------------------------------------------------------------------
def requantize(fault=None, only=None):
    rq, acc_bits, bias = Requant(m=3, s=2, z_out=2, relu=True), 6, [1, -2]
    dut = Requantize(acc_bits, bias, rq, a_bits=A)
    ref = lambda p: Cat(*[requant_expr(_flat(p, acc_bits, e), bias[e], rq, A) for e in range(2)])  # noqa: E731
    return StreamProps(dut, [dut.i], [dut.o], model=_one_to_one(ref), cap=1, eager=True, fault=fault, only=only)


def maxpool(fault=None, only=None, a_bits=MAXPOOL_BITS):
    c, h, w, k = 1, 3, 4, 2
    dut = MaxPoolUnit(c, h, w, k, a_bits=a_bits)

    def emit(cur):
        outs = {}
        for yo in range(h // k):
            for xo in range(w // k):
                win = [cur[(yo * k + i) * w + xo * k + j] for i in range(k) for j in range(k)]
                mx = win[0]
                for x in win[1:]:
                    mx = Mux(x > mx, x, mx)
                outs[(yo * k + k - 1) * w + xo * k + k - 1] = [mx]
        last = max(outs)        # the frame's last output is held until its last beat
        outs[h * w - 1] = outs.pop(last)
        return outs
    return StreamProps(dut, [dut.i], [dut.o], model=_periodic(h * w, emit), cap=1, eager=True, fault=fault, only=only)


def avgpool(fault=None, only=None):
    n, rq, z_in = 3, Requant(m=5, s=3, z_out=1, relu=False), 2
    dut = GlobalAvgPoolUnit(1, 1, n, rq, a_bits=A, z_in=z_in)

    def emit(cur):
        tot = sum(cur) - n * z_in
        return {n - 1: [requant_tail(tot * Const(rq.m, unsigned(17)).as_signed(), rq, A)]}
    return StreamProps(dut, [dut.i], [dut.o], model=_periodic(n, emit), cap=1, eager=True, fault=fault, only=only)


def residual(fault=None, only=None):
    pa = AddParams(ma=3, mb=5, s=2, za=1, zb=2, z_out=1, relu=True)
    dut = ResidualAddUnit(1, pa, a_bits=A)

    def model(m, beats):
        (t, a), (_, b) = beats
        v = (a - pa.za) * pa.ma + (b - pa.zb) * pa.mb
        return t, [clamp_unsigned(round_shift(v, pa.s) + pa.z_out, A, pa.lo())]
    return StreamProps(dut, [dut.a, dut.b], [dut.o], model=model, cap=1, eager=True, join=True, fault=fault, only=only)


WORD, WORDS, PIX = 4, 3, 10


def words2pixel(fault=None, only=None):
    dut = WordsToPixel(WORD, WORDS, PIX)
    return StreamProps(dut, [dut.i], [dut.o], model=_periodic(WORDS, lambda cur: {WORDS - 1: [Cat(*cur)[:PIX]]}),
                       cap=1, eager=True, fault=fault, only=only)


def pixel2words(fault=None, only=None):
    dut = PixelToWords(PIX, WORD, WORDS)

    def model(m, beats):
        (t, p), = beats
        full = Cat(p, Const(0, WORDS * WORD - PIX))
        return t, [full[q * WORD:(q + 1) * WORD] for q in range(WORDS)]
    return StreamProps(dut, [dut.i], [dut.o], model=model, cap=WORDS, eager=True, fault=fault, only=only)


def router(fault=None, only=None):
    # a corner of a 2x2 mesh (LOCAL, EAST, SOUTH); XY routing tables as gen.topology makes them.
    # Three ports and 1-deep input FIFOs, not the five ports and 2-deep FIFOs of a 3x3 centre:
    # conservation of beats is a counting argument that z3 did not finish past step 3 (centre)
    # or step 6 (corner, depth 2) in minutes; this instance proves depth 8 in under a minute.
    x0, y0, rows, cols = 0, 0, 2, 2
    lay = flit_layout(2, 2, rows, cols)
    route_x = {1: Dir.EAST}
    route_y = {1: Dir.SOUTH}
    ports = [Dir.EAST, Dir.SOUTH]
    dut = Router(lay, x0, y0, ports, route_x, route_y, fifo_depth=1)
    order = [Dir.LOCAL, *ports]

    def goes(d):
        def accept(p):
            f = data.View(lay, p)
            want = {Dir.LOCAL: (f.x == x0) & (f.y == y0), Dir.EAST: f.x == 1,
                    Dir.SOUTH: (f.x == x0) & (f.y == 1)}
            return want[d]
        return accept
    return StreamProps(dut, [dut.i[d] for d in order], [dut.o[d] for d in order], model=None,
                       cap=len(order), accept=[goes(d) for d in order], fault=fault, only=only)


def layer_out(fault=None, only=None, broken: str | None = None):
    from formal.layer_output import checker
    return checker(fault=fault, only=only, broken=broken)


BLOCKS = {"requantize": requantize, "maxpool": maxpool, "avgpool": avgpool, "residual": residual,
          "words2pixel": words2pixel, "pixel2words": pixel2words, "router": router, "layer_out": layer_out}


def faults_for(block: str) -> dict[str, str]:
    """fault -> the property it must break, for the properties ``block`` has: the router has no
    positional data (``corrupt`` breaks ``route`` there) and no ``eager``; only the residual
    adder joins two inputs; the layer output path has no input (``lost``: its ``ungated``
    engine, :data:`formal.layer_output.BROKEN`)."""
    f = dict(FAULTS)
    if block == "router":
        f["corrupt"] = "route"
        del f["lazy"]
    if block != "residual":
        del f["unjoin"]
    if block == "layer_out":   # no input stream for ``drop`` to break: its ``lost`` has ``ungated``
        del f["drop"]
    return f


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="bounded stream-handshake proofs (yowasp-sby, smtbmc z3)")
    ap.add_argument("blocks", nargs="*", default=list(BLOCKS), help=f"any of {', '.join(BLOCKS)}")
    ap.add_argument("--depth", type=int, default=12, help="BMC steps [12]")
    ap.add_argument("--fault", choices=sorted(FAULTS), help="check the block behind a broken shim")
    ap.add_argument("--faults", action="store_true", help="also run every fault (each must fail)")
    ap.add_argument("--workdir", type=Path, help="keep the sby folders here")
    a = ap.parse_args(argv)
    ok = True
    for b in a.blocks:
        runs = [a.fault] + (sorted(faults_for(b)) if a.faults else [])
        for f in dict.fromkeys(runs):
            only = None if f is None else faults_for(b)[f]
            r = bmc(BLOCKS[b](fault=f, only=only), f"{b}_{f or 'real'}", a.depth, a.workdir, cover=f is None)
            want = "pass" if f is None else f"fail [{faults_for(b)[f]}]"
            good = r.passed if f is None else (not r.passed and faults_for(b)[f] in r.failed)
            ok &= good
            got = "pass" if r.passed else f"fail {r.failed}"
            print(f"{b:12s} {f or 'real':10s} depth {a.depth:3d}  {got:24s} want {want:16s} "
                  f"{'ok' if good else 'WRONG'}  {r.seconds:6.1f} s", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
