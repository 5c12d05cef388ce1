"""8N1 UART receiver and transmitter as byte streams (the board top's serial line).

``clocks_per_bit`` = clock frequency / baud rate (e.g. 25 MHz / 115 200 = 217), fixed at
elaboration. The receiver samples each bit in its middle (after a start bit that is still low
there), the transmitter sends start, eight data bits LSB first, stop.
"""
from __future__ import annotations

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

__all__ = ["UartRx", "UartTx"]


def _check(clocks_per_bit: int) -> int:
    if isinstance(clocks_per_bit, bool) or not isinstance(clocks_per_bit, int) or clocks_per_bit < 4:
        raise ValueError(f"clocks_per_bit={clocks_per_bit!r} is not allowed: it must be an integer >= 4")
    return clocks_per_bit


class UartRx(wiring.Component):
    """Serial line in, bytes out.

    Ports:
        rx: in, the line (idle high); synchronized here.
        o: stream out, the received bytes. A byte is offered until taken; one that arrives
           while the last is still untaken is dropped and ``overrun`` goes high (until reset).
    """

    def __init__(self, clocks_per_bit: int):
        self.clocks_per_bit = _check(clocks_per_bit)
        super().__init__({"rx": In(1, init=1), "o": Out(stream.Signature(8)), "overrun": Out(1)})

    def elaborate(self, platform):
        m = Module()
        n = self.clocks_per_bit
        rx = Signal(init=1)
        m.submodules.sync = FFSynchronizer(self.rx, rx, init=1)
        timer = Signal(range(n + n // 2 + 1))
        bit = Signal(range(10))
        shreg = Signal(8)
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.FSM():
            with m.State("idle"):
                with m.If(~rx):
                    m.d.sync += timer.eq(n // 2 - 1)
                    m.next = "start"
            with m.State("start"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Elif(rx):            # a glitch, not a start bit
                    m.next = "idle"
                with m.Else():
                    m.d.sync += [timer.eq(n - 1), bit.eq(0)]
                    m.next = "data"
            with m.State("data"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Else():
                    m.d.sync += [shreg.eq(Cat(shreg[1:], rx)), timer.eq(n - 1),
                                 bit.eq(bit + 1)]
                    with m.If(bit == 7):
                        m.next = "stop"
            with m.State("stop"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Else():
                    with m.If(rx):          # a good stop bit: the byte is in
                        with m.If(self.o.valid & ~self.o.ready):
                            m.d.sync += self.overrun.eq(1)
                        with m.Else():
                            m.d.sync += [self.o.payload.eq(shreg), self.o.valid.eq(1)]
                    m.next = "idle"
        return m


class UartTx(wiring.Component):
    """Bytes in, serial line out.

    Ports:
        i: stream in, the bytes to send (taken when the line is idle).
        tx: out, the line (idle high).
    """

    def __init__(self, clocks_per_bit: int):
        self.clocks_per_bit = _check(clocks_per_bit)
        super().__init__({"i": In(stream.Signature(8)), "tx": Out(1, init=1)})

    def elaborate(self, platform):
        m = Module()
        n = self.clocks_per_bit
        timer = Signal(range(n))
        bits = Signal(10)           # stop, data (MSB .. LSB), start: shifted out LSB first
        left = Signal(range(11))
        m.d.comb += self.i.ready.eq(left == 0)
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [bits.eq((1 << 9) | (self.i.payload << 1)), left.eq(10), timer.eq(0)]
        with m.Elif(left != 0):
            with m.If(timer == 0):
                m.d.sync += [self.tx.eq(bits[0]), bits.eq(bits >> 1), timer.eq(n - 1)]
            with m.Else():
                m.d.sync += timer.eq(timer - 1)
                with m.If(timer == 1):
                    m.d.sync += left.eq(left - 1)
        with m.Else():
            m.d.sync += self.tx.eq(1)
        return m
