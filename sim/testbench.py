"""The one cocotb testbench harness every ``sim/tb/*`` module builds on.

:class:`TB` owns what each testbench used to repeat: the arguments handed over by
``sim.runner`` (:func:`sim.runner.tb_args`), a seeded random generator, the clock, the
reset, the edge counter, the stream drivers and sinks (with the run's random input gaps
``gap_prob`` and back-pressure ``ready_prob`` as defaults), waiting with a timeout, and
the report back to the runner (:func:`sim.runner.tb_report`)::

    @cocotb.test()
    async def my_test(dut):
        tb = TB(dut)                       # reads tb_args(); tb.rng is seeded by args["seed"]
        src, out = tb.driver("i"), tb.sink("o")
        await tb.start()                   # clock, reset, counter, drivers and sinks running
        src.send(payloads)
        await tb.wait_for(lambda: len(out.received) >= n, timeout=1000)
        tb.report({...})

Ports are named as Amaranth emits stream ports: ``<name>__valid`` / ``__ready`` /
``__payload``, with ``<name>`` e.g. ``i``, ``o3`` or, for an ``.array(n)`` port family,
``tx__2`` (see :func:`sim.stream.StreamPort.of`). Timing convention: see
:mod:`sim.stream` (records carry the index of the edge the beat was transferred on).
"""
from __future__ import annotations

import random
from typing import Any, Callable

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, Event, First, RisingEdge, Timer

from sim.runner import tb_args, tb_report
from sim.stream import CycleCounter, StreamDriver, StreamPort, StreamSink

__all__ = ["TB"]


class TB:
    """Clock, reset, stream drivers/monitors and reporting around one DUT.

    ``args``: the testbench arguments (default: :func:`sim.runner.tb_args`). ``rng`` is a
    ``random.Random`` seeded with ``args["seed"]`` (0 when absent). Unless one is passed,
    each driver and sink gets its own generator seeded by the seed and its port name, so
    adding a port or a draw from ``rng`` changes no other port's gaps or back-pressure.
    """

    def __init__(self, dut, args: dict[str, Any] | None = None, *, clock_ns: float = 10, reset_clocks: int = 2):
        self.dut = dut
        self.clk = dut.clk
        self.args = tb_args() if args is None else args
        self.seed = self.args.get("seed", 0)
        self.rng = random.Random(self.seed)
        self.clock_ns, self.reset_clocks = clock_ns, reset_clocks
        self.counter = CycleCounter(self.clk, clock_ns)
        # what drivers and sinks stamp transfers with: the simulator's clock edges, or a
        # DUT's own clock count (``sim.stream.PortCounter``: an emulation build's target clocks)
        self.stamps = self.counter
        self.progress = Event()        # set by every driver and sink on each transfer
        self.drivers: dict[str, StreamDriver] = {}
        self.sinks: dict[str, StreamSink] = {}
        self.started = False

    # --- stream ports ---------------------------------------------------------------------
    def member(self, family: str, k: int) -> str:
        """The port name of member ``k`` of a port family: ``<family>__<k>`` as Amaranth
        emits an ``.array(n)`` member, or the older flat ``<family><k>``."""
        name = f"{family}__{k}"
        return name if hasattr(self.dut, f"{name}__valid") else f"{family}{k}"

    def driver(self, name: str, *, gap_prob: float | None = None, rng: random.Random | None = None) -> StreamDriver:
        """A driver on the DUT's input stream ``name`` (``valid`` low from now on).
        ``gap_prob`` defaults to ``args["gap_prob"]`` (0 when absent)."""
        gap = self.args.get("gap_prob", 0.0) if gap_prob is None else gap_prob
        d = StreamDriver(self.clk, StreamPort.of(self.dut, name), self.stamps, gap_prob=gap,
                         rng=rng or self._port_rng(name), progress=self.progress)
        self.drivers[name] = d
        if self.started:
            d.start()
        return d

    def sink(self, name: str, *, ready_prob: float | None = None, rng: random.Random | None = None) -> StreamSink:
        """A sink on the DUT's output stream ``name`` (``ready`` low until started).
        ``ready_prob`` defaults to ``args["ready_prob"]`` (1 when absent)."""
        ready = self.args.get("ready_prob", 1.0) if ready_prob is None else ready_prob
        s = StreamSink(self.clk, StreamPort.of(self.dut, name), self.stamps, ready_prob=ready,
                       rng=rng or self._port_rng(name), progress=self.progress)
        self.sinks[name] = s
        if self.started:
            s.start()
        return s

    def _port_rng(self, name: str) -> random.Random:
        return random.Random(f"{self.seed}:{name}")

    # --- clock, reset, time ---------------------------------------------------------------
    async def start(self) -> None:
        """Start the clock, hold ``rst`` for ``reset_clocks`` edges, then start the edge
        counter and every driver and sink made so far (later ones start when made)."""
        cocotb.start_soon(Clock(self.clk, self.clock_ns, unit="ns").start())
        self.dut.rst.value = 1
        await ClockCycles(self.clk, self.reset_clocks)
        self.dut.rst.value = 0
        self.counter.start()
        for x in (*self.drivers.values(), *self.sinks.values()):
            x.start()
        self.started = True

    @property
    def now(self) -> int:
        """Index of the last rising edge since reset (read it in the ReadOnly phase for an
        exact edge; see :class:`sim.stream.CycleCounter`)."""
        return self.counter.now

    async def clocks(self, n: int) -> None:
        """Wait ``n`` rising edges."""
        await ClockCycles(self.clk, n)

    async def wait_for(self, done: Callable[[], bool], timeout: int) -> bool:
        """Wait until ``done()`` holds, at most ``timeout`` edges; returns whether it held (a
        timeout is left to the caller's checks to report). ``done`` is re-checked on every
        stream transfer (``progress``), not every clock; the call returns on the first edge
        at which it holds, as a clock-by-clock poll would."""
        deadline = self.now + timeout
        while not done():
            left = deadline - self.now
            if left <= 0:
                return False
            self.progress.clear()
            await First(self.progress.wait(), Timer(left * self.clock_ns, "ns"))
        await RisingEdge(self.clk)
        return True

    async def wait_count(self, stream: StreamDriver | StreamSink, n: int, timeout: int) -> bool:
        """:meth:`wait_for` ``n`` beats through ``stream`` (a driver or sink), the same edge,
        woken once rather than on every transfer."""
        reached = stream.reached(n)
        if not reached.is_set():
            await First(reached.wait(), Timer(timeout * self.clock_ns, "ns"))
            if not reached.is_set():
                return False
        await RisingEdge(self.clk)
        return True

    # --- results --------------------------------------------------------------------------
    def report(self, result: dict[str, Any]) -> None:
        """Hand measurements back to the runner (:func:`sim.runner.tb_report`)."""
        tb_report(result)
