"""A serial line for cocotb: send bytes into a DUT's ``rx`` pin, collect bytes from its ``tx``
pin (8N1, ``clocks_per_bit`` DUT clocks per bit, like ``hw.uart``)."""
from __future__ import annotations

import cocotb
from cocotb.triggers import ClockCycles, Event, FallingEdge

__all__ = ["UartSource", "UartSink"]


class UartSource:
    """Drives the line ``pin`` (idle high from construction)."""

    def __init__(self, clk, pin, clocks_per_bit: int):
        self.clk, self.pin, self.n = clk, pin, clocks_per_bit
        pin.value = 1

    async def send(self, data: bytes) -> None:
        """Send ``data``, one frame after another (start, 8 bits LSB first, stop)."""
        for byte in data:
            for bit in [0, *((byte >> k) & 1 for k in range(8)), 1]:
                self.pin.value = bit
                await ClockCycles(self.clk, self.n)


class UartSink:
    """Collects the frames on the line ``pin`` into :attr:`received` once started."""

    def __init__(self, clk, pin, clocks_per_bit: int):
        self.clk, self.pin, self.n = clk, pin, clocks_per_bit
        self.received = bytearray()
        self.framing_errors = 0
        self.arrived = Event()

    def start(self) -> "UartSink":
        cocotb.start_soon(self._run())
        return self

    async def _run(self) -> None:
        while True:
            await FallingEdge(self.pin)
            await ClockCycles(self.clk, self.n // 2)
            if int(self.pin.value):
                continue                    # a glitch, not a start bit
            byte = 0
            for k in range(8):
                await ClockCycles(self.clk, self.n)
                byte |= int(self.pin.value) << k
            await ClockCycles(self.clk, self.n)
            if not int(self.pin.value):
                self.framing_errors += 1
            self.received.append(byte)
            self.arrived.set()

    async def wait_bytes(self, count: int, timeout_clocks: int) -> bool:
        """Wait until ``count`` bytes are in (or ``timeout_clocks`` clocks passed): whether they are."""
        from cocotb.triggers import First
        left = timeout_clocks
        step = max(1, 10 * self.n)
        while len(self.received) < count and left > 0:
            self.arrived.clear()
            await First(self.arrived.wait(), ClockCycles(self.clk, step))
            left -= step
        return len(self.received) >= count
