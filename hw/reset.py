"""A design whose reset input crosses one register before it reaches any of its registers.

A chip's reset fans out to nearly every register it has. Registered once at the top, the
reset pin drives a single flip-flop, so neither an FPGA's router (the widest net after the
clock) nor a simulator sees the whole design hang on an input pin: Verilator evaluates the
logic that depends on its inputs on every call into the model (both clock edges), and with
the reset pin behind every register's next-state logic that was the whole chip.

The cost is one clock: the design leaves reset on the first rising edge after ``rst`` falls,
and is held in reset from power-up until then.
"""
from __future__ import annotations

from amaranth.hdl import ClockDomain, ClockSignal, DomainRenamer, Module, ResetSignal, Signal
from amaranth.lib import wiring

__all__ = ["RegisteredReset"]


class RegisteredReset(wiring.Component):
    """``inner`` (a component in the ``sync`` domain) with the same ports, its ``sync``
    domain clocked by the outer clock and reset by a register of the outer reset."""

    def __init__(self, inner: wiring.Component):
        self.inner = inner
        super().__init__(inner.signature)

    def elaborate(self, platform):
        m = Module()
        m.domains.core = core = ClockDomain("core", local=True)
        rst_q = Signal(init=1, reset_less=True)
        m.d.sync += rst_q.eq(ResetSignal("sync"))
        m.d.comb += [core.clk.eq(ClockSignal("sync")), core.rst.eq(rst_q)]
        m.submodules.core = DomainRenamer("core")(self.inner)
        wiring.connect(m, wiring.flipped(self), self.inner)
        return m
