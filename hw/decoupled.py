"""Decoupled target and host clocks: the chip's emulation build (DESIGN.md §10).

On an FPGA the crossbars are :class:`hw.emu_crossbar.EmulatedCrossbar` s, which need more
FPGA (host) clocks per MVM than the chip (target) clocks the cycle model counts. As in
FPGA-accelerated simulators (FireSim), host and target clocks are decoupled:

* :class:`TargetCrossbar` (a PE's crossbars as one bank of emulated crossbars sharing a
  datapath, forming one input cycle's partial sums per read,
  ``gen.emulation.CHIP_PARALLEL_CYCLES``: the least logic) presents, at target-clock
  edges, the timing of flip-flop :class:`hw.crossbar.Crossbar` s (accept
  on target edge 0, result offered from
  target edge ``gen.timing.crossbar_latency − 1``, handed over on the edge it is taken, a
  row write taken in one edge while idle), and lets its emulated crossbar work between target
  edges on host clocks. Its ``ok`` says the next host edge may be a target edge: the emulated
  result is in when the target timing needs it, and no row write is still being written.
  Its results stay in a small memory, read one at a time;
* :class:`SerialAccumulate` sums a layer's partial sums one output at a time on host clocks
  while the target clock stands on the edge the crossbars hand them over, and registers the
  sums on that edge, as the flip-flop chip's adder trees (one per output) do: one tree per
  layer, and no bus of every crossbar's results;
* :class:`EmulatedChip` is :class:`hw.chip.Chip` with those crossbars under one
  ``EnableInserter``: every other register of the chip (engines, buffers, post units, FIFOs,
  links, its clock counter) advances only on host edges where ``tick`` = every crossbar's
  and accumulator's ``ok`` is high. The chip's own ``cycles`` therefore counts target clocks, and per-image
  latency and interval in target clocks equal ``gen.perf.chip_timing``; ``host_cycles``
  counts host clocks, for the host-per-target ratio.

The target-clock enable reaches every crossbar and accumulator as a port (``tick``): they are black
boxes to their parents (``hw.blackbox``), emitted once, so no enable can be inserted into
them from outside. Outside the chip, a transfer on ``i``, ``o`` or ``prog`` happens only on a
target edge: their handshakes are gated with ``tick`` here.
"""
from __future__ import annotations

import hashlib

from amaranth.hdl import Cat, EnableInserter, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from gen import timing
from gen.config import CrossbarConfig
from gen.emulation import (CHIP_PARALLEL_CYCLES, EMU_PIPELINE_CLOCKS, EMU_WORD_BITS, SERIAL_POST_PIPELINE_CLOCKS,
                           SERIAL_SUM_PIPELINE_CLOCKS)
from hw.crossbar import crossbar_handshake, tree_sum
from hw.emu_crossbar import EmulatedCrossbar, bank_signature

__all__ = ["TargetClock", "TargetCrossbar", "SerialAccumulate", "SerialPost", "EmulatedChip", "bank_kinds",
           "bank_kind"]


def bank_kinds(cp) -> tuple[tuple[int, bool], ...]:
    """The distinct banks of the chip ``cp``'s emulation build, one :class:`TargetCrossbar`
    module each: ``(crossbars of a PE, whether they all read the same rows)``."""
    return tuple(sorted({bank_kind([p.rows for p in pls]) for lp in cp.plan.layers
                         for pls in lp.per_pe().values()}))


def bank_kind(row_ranges) -> tuple[int, bool]:
    """``(n, shared_input)`` of the bank holding the crossbars of one PE, given the input rows
    ``(r0, r1)`` each reads."""
    return len(row_ranges), len(set(row_ranges)) == 1


def cells_key(preload) -> str | None:
    """A short digest of crossbars' cells (``gen.cells.CellArray`` each), for module names of
    blocks that hold them as initial contents (``None``: programmed, no cells)."""
    if preload is None:
        return None
    return hashlib.sha1(repr([c.rows for c in preload]).encode()).hexdigest()[:16]


class TargetClock:
    """The target-clock enable of an emulation build, as the chip's parts see it: ``tick``
    (this host edge is a target edge), one ``ok`` per crossbar of the chip, which that
    crossbar's PE drives (the crossbar may take a target edge now; a PE's crossbars share one
    :class:`TargetCrossbar`, which drives its first crossbar's, the others' are high), and one
    ``acc_ok`` and one ``post_ok`` per layer of ``layers``, which its :class:`SerialAccumulate`
    and :class:`SerialPost` drive (high where nothing drives them: a layer without crossbars, a
    raw layer's post stage). ``cells``: every crossbar's cells (``gen.cells.cells_from_beats``)
    for a build that holds them from the start instead of being programmed (``hw.board``), or
    ``None``."""

    def __init__(self, n_xbars: int, layers=(), cells=None):
        if cells is not None and len(cells) != n_xbars:
            raise ValueError(f"cells: one CellArray per crossbar ({n_xbars}) is allowed, got {len(cells)}")
        self.cells = None if cells is None else tuple(cells)
        self.tick = Signal(name="target_tick")
        self.ok = [Signal(name=f"xbar_ok{n}") for n in range(n_xbars)]
        self.acc_ok = {name: Signal(init=1, name=f"acc_ok_{name}") for name in layers}
        self.post_ok = {name: Signal(init=1, name=f"post_ok_{name}") for name in layers}

    def all_ok(self):
        """Every crossbar and serial sweep may take the next target edge (one reduction: a chain
        of two-input ANDs over a few hundred crossbars is deeper than Python's recursion limit)."""
        return Cat(*self.ok, *self.acc_ok.values(), *self.post_ok.values()).all()


class TargetCrossbar(wiring.Component):
    """A bank of ``n_xbars`` emulated crossbars (:class:`EmulatedCrossbar`, one datapath for
    all of them) behind the flip-flop crossbars' target-clock timing: to its PE it is that
    many crossbars running in lockstep.

    Ports: those of :func:`hw.emu_crossbar.bank_signature` (their handshakes count only on
    host edges where ``tick`` is high), plus
        tick: in, this host edge is a target edge.
        ok: out, the next target edge may come: the emulated result is in if that edge is the
            one the flip-flop crossbar's result appears on, and no row write is in progress.

    Target state: ``running`` and ``done`` as in the flip-flop crossbar, and ``count``, the
    target edges since the accept. The input reaches the emulated crossbar on the accept edge
    and the result leaves it on the hand-over edge. Nothing is latched twice: the PE holds the
    input for all of its crossbars until the result is handed over (``hw.pe.PE``), and a row
    write is written on host clocks before the target edge that takes it (``ok`` low), while
    the programming source still holds the beat.
    """

    #: input cycles per block-RAM read of the emulated crossbar (``gen.emulation``)
    parallel_cycles = CHIP_PARALLEL_CYCLES

    def __init__(self, cfg: CrossbarConfig, n_xbars: int = 1, shared_input: bool = False,
                 word_bits: int = EMU_WORD_BITS, preload=None):
        self.cfg, self.n_xbars, self.shared_input, self.word_bits = cfg, n_xbars, shared_input, word_bits
        self.preload = None if preload is None else tuple(preload)     # cells as initial contents
        super().__init__(self.signature_of(cfg, n_xbars, shared_input))

    @staticmethod
    def signature_of(cfg: CrossbarConfig, n_xbars: int = 1, shared_input: bool = False) -> wiring.Signature:
        """The bank's ports plus ``tick`` and ``ok``."""
        members = dict(bank_signature(cfg, n_xbars, shared_input).members.items())
        return wiring.Signature({**members, "tick": In(1), "ok": Out(1)})

    @staticmethod
    def module_name(cfg: CrossbarConfig, n_xbars: int = 1, shared_input: bool = False,
                    word_bits: int = EMU_WORD_BITS, preload=None) -> str:
        """The Verilog module name of a bank of ``n_xbars`` target-timed emulated crossbars of
        ``cfg`` (reading one input vector if ``shared_input``; holding ``preload``'s cells from
        the start, if given: one module per content)."""
        key = repr((sorted(cfg.to_dict().items()), word_bits, EMU_PIPELINE_CLOCKS, timing.CROSSBAR_PIPELINE_CLOCKS,
                    TargetCrossbar.parallel_cycles, n_xbars, shared_input, cells_key(preload)))
        kind = f"{n_xbars}s" if shared_input else f"{n_xbars}"
        return f"pimgen_target_crossbar{kind}_{hashlib.sha1(key.encode()).hexdigest()[:10]}"

    def elaborate(self, platform):
        m = Module()
        latency = timing.crossbar_latency(self.cfg)
        nb = self.n_xbars
        m.submodules.emu = emu = EmulatedCrossbar(self.cfg, word_bits=self.word_bits,
                                                  parallel_cycles=self.parallel_cycles, held=True, n_xbars=nb,
                                                  shared_input=self.shared_input, preload=self.preload)
        running, done = Signal(), Signal()
        count = Signal(range(max(2, latency)))
        tick = self.tick
        idle = ~running & ~done
        # a row write is done on host clocks *before* the target edge that takes it, while the
        # target clock stands still: its source holds the beat (not yet taken) for the emulated
        # crossbar to read column by column, so no copy of the row is latched
        wrote, writing = Signal(), Signal()
        accept = crossbar_handshake(m, self, idle, done, w_ready=idle & wrote)
        completes = running & (count == latency - 2)     # the next target edge raises `done`
        want_write = self.w.valid & idle & ~wrote
        m.d.comb += [
            self.ok.eq(~(completes & ~emu.o.valid) & ~want_write),
            emu.i.valid.eq(accept & tick), emu.i.payload.as_value().eq(self.i.payload.as_value()),
            emu.w.valid.eq(want_write & ~writing),
            emu.w.payload.row.eq(self.w.payload.row), emu.w.payload.cells.eq(self.w.payload.cells),
            emu.o.ready.eq(done & self.o.ready & tick),
            emu.o_addr.eq(self.o_addr), self.o.payload.eq(emu.o.payload),
        ]
        if nb > 1:
            m.d.comb += emu.w.payload.xbar.eq(self.w.payload.xbar)
        with m.If(emu.w.valid & emu.w.ready):
            m.d.sync += writing.eq(1)
        with m.Elif(writing & ~emu.busy):
            m.d.sync += [writing.eq(0), wrote.eq(1)]
        with m.If(tick & self.w.valid & self.w.ready):
            m.d.sync += wrote.eq(0)
        with m.If(tick):
            with m.If(accept):
                m.d.sync += [running.eq(1), done.eq(0), count.eq(0)]
            with m.Elif(running):
                with m.If(completes):
                    m.d.sync += [running.eq(0), done.eq(1)]
                with m.Else():
                    m.d.sync += count.eq(count + 1)
            with m.Elif(done & self.o.ready):
                m.d.sync += done.eq(0)
        return m


class SerialPost(wiring.Component):
    """A requantizing layer's post stage in the emulation build, one output at a time.

    The flip-flop chip requantizes every output in parallel (:class:`hw.layer.PostStage`: a
    multiplier each, 80 DSP blocks for the digits chip). This block computes the same
    ``y = requant(acc + bias)`` (DESIGN.md §3, with ``hw.layer.post_operands``' centring) for
    one output per host clock through one multiplier while the target clock stands on the
    stage's last clock (``take``), and registers every ``y`` on that target edge, as the
    parallel units do. ``ok`` is low until it is done (``gen.timing.serial_post_host_clocks``).

    Ports:
        take: in, the post stage's last target clock.
        tick: in, this host edge is a target edge.
        ok: out, the next target edge may come.
        acc: in, the accumulators (replica-major), unchanged since the stage began.
        y: out, the activations, updated on the target edge of ``take``.
    """

    def __init__(self, acc_bits: int, a_bits: int, bias, rq):
        self.acc_bits, self.a_bits, self.bias, self.rq = acc_bits, a_bits, tuple(int(b) for b in bias), rq
        super().__init__(self.signature_of(acc_bits, a_bits, self.bias, rq))

    @staticmethod
    def signature_of(acc_bits: int, a_bits: int, bias, rq) -> wiring.Signature:
        """The ports for ``len(bias)`` accumulators of ``acc_bits`` into ``a_bits`` activations."""
        n = len(bias)
        return wiring.Signature({"take": In(1), "tick": In(1), "ok": Out(1),
                                 "acc": In(data.ArrayLayout(signed(acc_bits), n)),
                                 "y": Out(data.ArrayLayout(unsigned(a_bits), n))})

    @staticmethod
    def module_name(acc_bits: int, a_bits: int, bias, rq) -> str:
        """The Verilog module name: its widths, biases and requantization constants."""
        key = repr((acc_bits, a_bits, tuple(int(b) for b in bias), rq, SERIAL_POST_PIPELINE_CLOCKS))
        return f"pimgen_serial_post_{hashlib.sha1(key.encode()).hexdigest()[:10]}"

    def elaborate(self, platform):
        from hw.layer import bias_offsets, post_operands
        from hw.post import requant_tail, saturate
        m = Module()
        n, rq = len(self.bias), self.rq
        centre, mul_in, m_const = post_operands(rq, self.a_bits)
        offs, off_bits = bias_offsets(self.bias, rq, self.a_bits)
        step, sweeping = _sweep(m, self, timing.serial_post_host_clocks(n))
        # stage 1: one accumulator and its bias; 2: centred and saturated; 3: times M; 4: stored
        # (gen.emulation.SERIAL_POST_PIPELINE_CLOCKS after stage 1)
        a1 = Signal(signed(self.acc_bits), name="acc1")
        b1 = Signal(signed(off_bits), name="bias1")
        dest1, dest2, dest3 = (Signal(range(max(2, n)), name=f"dest{i}") for i in (1, 2, 3))
        v1, v2, v3 = Signal(name="valid1"), Signal(name="valid2"), Signal(name="valid3")
        m.d.sync += v1.eq(0)
        with m.If(sweeping):
            with m.Switch(step):
                for c in range(n):
                    with m.Case(c):
                        m.d.sync += [a1.eq(self.acc[c]), b1.eq(offs[c]), dest1.eq(c), v1.eq(1)]
        x2 = Signal(signed(mul_in), name="centred")
        m.d.sync += [x2.eq(saturate(a1 + b1, mul_in)), dest2.eq(dest1), v2.eq(v1)]
        prod = x2 * m_const
        p3 = Signal(signed(len(prod)), name="product")
        m.d.sync += [p3.eq(prod), dest3.eq(dest2), v3.eq(v2)]
        val = requant_tail(p3, rq, self.a_bits, offset=centre * rq.m)
        shadow = [Signal(self.a_bits, name=f"y{c}") for c in range(n)]
        with m.If(v3):
            with m.Switch(dest3):
                for c in range(n):
                    with m.Case(c):
                        m.d.sync += shadow[c].eq(val)
        with m.If(self.tick & self.take):
            m.d.sync += [self.y[c].eq(shadow[c]) for c in range(n)]
        return m


class EmulatedChip(wiring.Component):
    """The emulation build of a chip: :class:`hw.chip.Chip` of ``cp`` with target-timed
    emulated crossbars, advanced one target clock at a time (module docstring).

    Ports: those of :class:`hw.chip.Chip` (``cycles`` counts target clocks; ``i``, ``o``,
    ``prog`` and the taps transfer only on target edges), plus
        host_cycles: out, host clocks since reset.

    ``cells``: every crossbar's cells (:func:`gen.cells.cells_from_beats`) as the banks'
    initial contents, for a board that has no programming source (``hw.board``; ``prog`` is
    then left idle, and each PE is its own module); ``None``: programmed through ``prog``.
    """

    def __init__(self, cp, cells=None):
        from hw.chip import Chip
        self.cp = cp
        self.target = TargetClock(cp.n_xbars, [lp.name for lp in cp.plan.layers], cells)
        self.core = Chip(cp, target=self.target)
        super().__init__(wiring.Signature({**dict(self.core.signature.members.items()), "host_cycles": Out(32)}))

    def elaborate(self, platform):
        m = Module()
        tick = self.target.tick
        m.submodules.chip = EnableInserter(tick)(self.core)
        chip = self.core
        m.d.comb += tick.eq(self.target.all_ok())
        for name in ("i", "prog"):
            outer, inner = getattr(self, name), getattr(chip, name)
            m.d.comb += [inner.valid.eq(outer.valid), inner.payload.eq(outer.payload),
                         outer.ready.eq(inner.ready & tick)]
        m.d.comb += [self.o.valid.eq(chip.o.valid & tick), self.o.payload.eq(chip.o.payload),
                     chip.o.ready.eq(self.o.ready),
                     self.cycles.eq(chip.cycles), self.status.eq(chip.status),
                     self.tap_valid.eq(chip.tap_valid & tick.replicate(len(chip.tap_valid)))]
        m.d.comb += [getattr(self.tap_data, k).eq(getattr(chip.tap_data, k)) for k in chip.tap_data.signature.members]
        m.d.sync += self.host_cycles.eq(self.host_cycles + 1)
        return m


def _sweep(m, block, clocks: int):
    """The control a serial sweep (:class:`SerialAccumulate`, :class:`SerialPost`) runs on:
    ``step`` counts host clocks while ``block.take`` is high, ``clocks`` of them (its last
    result is stored on the last), with ``block.ok`` low meanwhile, and starts over from the
    target edge of ``take``. Returns ``(step, sweeping)``."""
    step = Signal(range(clocks + 1), name="step")
    swept = Signal(name="swept")
    sweeping = block.take & ~swept
    m.d.comb += block.ok.eq(~sweeping)
    with m.If(sweeping):
        m.d.sync += step.eq(step + 1)
        with m.If(step == clocks - 1):
            m.d.sync += swept.eq(1)
    with m.If(block.tick & block.take):
        m.d.sync += [swept.eq(0), step.eq(0)]
    return step, sweeping


class SerialAccumulate(wiring.Component):
    """The sums of a layer's partial sums in the emulation build, one output at a time.

    The flip-flop chip adds every output's partial sums in parallel on the clock the crossbars
    hand them over (:class:`hw.layer.Accumulate`: one adder tree per output, fed by every
    crossbar's whole result vector). Emulated crossbar banks keep their results in a small
    memory instead (``hw.emu_crossbar.bank_signature``), and this block sweeps them on host
    clocks while the target clock stands still on that hand-over edge: each step
    (``gen.emulation.serial_sum_steps``) reads one result of every PE (``addr``/``data``),
    adds them in one adder tree and stores the sum; on the target edge (``tick`` with ``take``)
    the stored sums become ``total``, as the parallel trees' sums would. ``ok`` is low until
    the sweep is done (``gen.timing.serial_sum_host_clocks``). So a layer has one adder tree
    and the results of its PEs meet on one result-wide bus each, not on all of them at once:
    on an FPGA that is what lets a chip route.

    Ports:
        take: in, the target clock on which the crossbars hand their results over (their
            results are in the banks' memories while it is high).
        tick: in, this host edge is a target edge.
        ok: out, the next target edge may come.
        addr: out, per PE, the result it offers on ``data``.
        data: in, per PE, its result at ``addr`` (read asynchronously).
        total: out, the sums, updated on the target edge of ``take``.
    """

    def __init__(self, dot_bits: int, acc_bits: int, addr_bits: int, steps):
        self.dot_bits, self.acc_bits, self.addr_bits, self.steps = dot_bits, acc_bits, addr_bits, tuple(steps)
        super().__init__(self.signature_of(dot_bits, acc_bits, addr_bits, self.steps))

    @staticmethod
    def signature_of(dot_bits: int, acc_bits: int, addr_bits: int, steps) -> wiring.Signature:
        """The ports of a sweep ``steps`` over PEs with results of ``dot_bits`` at addresses of
        ``addr_bits``, into sums of ``acc_bits``."""
        n_pe, n_out = len(steps[0].addrs), steps[-1].dest + 1
        return wiring.Signature({
            "take": In(1), "tick": In(1), "ok": Out(1),
            "addr": Out(data.ArrayLayout(unsigned(addr_bits), n_pe)),
            "data": In(data.ArrayLayout(signed(dot_bits), n_pe)),
            "total": Out(data.ArrayLayout(signed(acc_bits), n_out))})

    @staticmethod
    def module_name(dot_bits: int, acc_bits: int, addr_bits: int, steps) -> str:
        """The Verilog module name of a sweep: layers with the same sweep share one module."""
        key = repr((dot_bits, acc_bits, addr_bits, SERIAL_SUM_PIPELINE_CLOCKS, tuple(steps)))
        return f"pimgen_serial_acc_{hashlib.sha1(key.encode()).hexdigest()[:10]}"

    def elaborate(self, platform):
        m = Module()
        steps, n_pe = self.steps, len(self.steps[0].addrs)
        n_out = len(self.total)
        step, sweeping = _sweep(m, self, timing.serial_sum_host_clocks(len(steps)))

        # stage 1: every PE's read address and the step's control
        inc1, dest1 = Signal(n_pe), Signal(range(max(2, n_out)))
        first1, last1 = Signal(), Signal()
        m.d.sync += last1.eq(0)
        with m.If(sweeping):
            with m.Switch(step):
                for s, st in enumerate(steps):
                    with m.Case(s):
                        mask = sum(1 << p for p, a in enumerate(st.addrs) if a is not None)
                        m.d.sync += [*(self.addr[p].eq(a) for p, a in enumerate(st.addrs) if a is not None),
                                     inc1.eq(mask), dest1.eq(st.dest), first1.eq(st.first), last1.eq(st.last)]
        # stage 2: the PEs' results; stage 3: their sum; then into the step's sum
        d2 = [Signal(signed(self.dot_bits), name=f"part{p}") for p in range(n_pe)]
        m.d.sync += [d2[p].eq(Mux(inc1[p], self.data[p], 0)) for p in range(n_pe)]
        t3 = Signal(signed(self.acc_bits), name="step_sum")
        m.d.sync += t3.eq(tree_sum(d2, m, "tree"))
        dest2, first2, last2 = Signal.like(dest1), Signal(), Signal()
        dest3, first3, last3 = Signal.like(dest1), Signal(), Signal()
        m.d.sync += [dest2.eq(dest1), first2.eq(first1), last2.eq(last1),
                     dest3.eq(dest2), first3.eq(first2), last3.eq(last2)]
        run = Signal(signed(self.acc_bits), name="run")
        run_next = Signal(signed(self.acc_bits), name="run_next")
        m.d.comb += run_next.eq(Mux(first3, 0, run) + t3)
        m.d.sync += run.eq(run_next)
        shadow = [Signal(signed(self.acc_bits), name=f"sum{i}") for i in range(n_out)]
        with m.If(last3):
            with m.Switch(dest3):
                for i in range(n_out):
                    with m.Case(i):
                        m.d.sync += shadow[i].eq(run_next)

        # the target edge of the hand-over: the sums are the layer's
        with m.If(self.tick & self.take):
            m.d.sync += [self.total[i].eq(shadow[i]) for i in range(n_out)]
        return m
