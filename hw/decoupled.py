"""Decoupled target and host clocks: the chip's emulation build (DESIGN.md §10).

On an FPGA the crossbars are :class:`hw.emu_crossbar.EmulatedCrossbar` s, which need more
FPGA (host) clocks per MVM than the chip (target) clocks the cycle model counts. As in
FPGA-accelerated simulators (FireSim), host and target clocks are decoupled:

* :class:`TargetCrossbar` (a PE's crossbars as one bank of emulated crossbars sharing a
  datapath, forming one input cycle's partial sums per read,
  ``gen.emulation.CHIP_PARALLEL_CYCLES``: the least logic) presents, at target-clock
  edges, exactly the ports and timing of flip-flop :class:`hw.crossbar.Crossbar` s (accept
  on target edge 0, result offered from
  target edge ``gen.timing.crossbar_latency − 1``, handed over on the edge it is taken, a
  row write taken in one edge while idle), and lets its emulated crossbar work between target
  edges on host clocks. Its ``ok`` says the next host edge may be a target edge: the emulated
  result is in when the target timing needs it, and no row write is still being written;
* :class:`EmulatedChip` is :class:`hw.chip.Chip` with those crossbars under one
  ``EnableInserter``: every other register of the chip (engines, buffers, post units, FIFOs,
  links, its clock counter) advances only on host edges where ``tick`` = every crossbar's
  ``ok`` is high. The chip's own ``cycles`` therefore counts target clocks, and per-image
  latency and interval in target clocks equal ``gen.perf.chip_timing``; ``host_cycles``
  counts host clocks, for the host-per-target ratio.

The target-clock enable reaches every crossbar as a port (``tick``): crossbars are black
boxes to their parents (``hw.blackbox``), emitted once, so no enable can be inserted into
them from outside. Outside the chip, a transfer on ``i``, ``o`` or ``prog`` happens only on a
target edge: their handshakes are gated with ``tick`` here.
"""
from __future__ import annotations

import hashlib

from amaranth.hdl import Cat, EnableInserter, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from gen import timing
from gen.config import CrossbarConfig
from gen.emulation import CHIP_PARALLEL_CYCLES, EMU_PIPELINE_CLOCKS, EMU_WORD_BITS
from hw.crossbar import crossbar_handshake
from hw.emu_crossbar import EmulatedCrossbar, bank_signature

__all__ = ["TargetClock", "TargetCrossbar", "EmulatedChip", "bank_kinds", "bank_kind"]


def bank_kinds(cp) -> tuple[tuple[int, bool], ...]:
    """The distinct banks of the chip ``cp``'s emulation build, one :class:`TargetCrossbar`
    module each: ``(crossbars of a PE, whether they all read the same rows)``."""
    return tuple(sorted({bank_kind([p.rows for p in pls]) for lp in cp.plan.layers
                         for pls in lp.per_pe().values()}))


def bank_kind(row_ranges) -> tuple[int, bool]:
    """``(n, shared_input)`` of the bank holding the crossbars of one PE, given the input rows
    ``(r0, r1)`` each reads."""
    return len(row_ranges), len(set(row_ranges)) == 1


class TargetClock:
    """The target-clock enable of an emulation build, as the chip's parts see it: ``tick``
    (this host edge is a target edge) and one ``ok`` per crossbar of the chip, which that
    crossbar's PE drives (the crossbar may take a target edge now; a PE's crossbars share one
    :class:`TargetCrossbar`, which drives its first crossbar's, the others' are high)."""

    def __init__(self, n_xbars: int):
        self.tick = Signal(name="target_tick")
        self.ok = [Signal(name=f"xbar_ok{n}") for n in range(n_xbars)]

    def all_ok(self):
        """Every crossbar may take the next target edge (one reduction: a chain of two-input
        ANDs over a few hundred crossbars is deeper than Python's recursion limit)."""
        return Cat(*self.ok).all()


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
                 word_bits: int = EMU_WORD_BITS):
        self.cfg, self.n_xbars, self.shared_input, self.word_bits = cfg, n_xbars, shared_input, word_bits
        super().__init__(self.signature_of(cfg, n_xbars, shared_input))

    @staticmethod
    def signature_of(cfg: CrossbarConfig, n_xbars: int = 1, shared_input: bool = False) -> wiring.Signature:
        """The bank's ports plus ``tick`` and ``ok``."""
        members = dict(bank_signature(cfg, n_xbars, shared_input).members.items())
        return wiring.Signature({**members, "tick": In(1), "ok": Out(1)})

    @staticmethod
    def module_name(cfg: CrossbarConfig, n_xbars: int = 1, shared_input: bool = False,
                    word_bits: int = EMU_WORD_BITS) -> str:
        """The Verilog module name of a bank of ``n_xbars`` target-timed emulated crossbars of
        ``cfg`` (reading one input vector if ``shared_input``)."""
        key = repr((sorted(cfg.to_dict().items()), word_bits, EMU_PIPELINE_CLOCKS, timing.CROSSBAR_PIPELINE_CLOCKS,
                    TargetCrossbar.parallel_cycles, n_xbars, shared_input))
        kind = f"{n_xbars}s" if shared_input else f"{n_xbars}"
        return f"pimgen_target_crossbar{kind}_{hashlib.sha1(key.encode()).hexdigest()[:10]}"

    def elaborate(self, platform):
        m = Module()
        latency = timing.crossbar_latency(self.cfg)
        nb = self.n_xbars
        m.submodules.emu = emu = EmulatedCrossbar(self.cfg, word_bits=self.word_bits,
                                                  parallel_cycles=self.parallel_cycles, held=True, n_xbars=nb,
                                                  shared_input=self.shared_input)
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
            self.o.payload.as_value().eq(emu.o.payload.as_value()),
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


class EmulatedChip(wiring.Component):
    """The emulation build of a chip: :class:`hw.chip.Chip` of ``cp`` with target-timed
    emulated crossbars, advanced one target clock at a time (module docstring).

    Ports: those of :class:`hw.chip.Chip` (``cycles`` counts target clocks; ``i``, ``o``,
    ``prog`` and the taps transfer only on target edges), plus
        host_cycles: out, host clocks since reset.
    """

    def __init__(self, cp):
        from hw.chip import Chip
        self.cp = cp
        self.target = TargetClock(cp.n_xbars)
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
        m.d.comb += [dst.eq(src) for dst, src in zip(self.tap_data, chip.tap_data)]
        m.d.sync += self.host_cycles.eq(self.host_cycles + 1)
        return m
