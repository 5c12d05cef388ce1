"""Reusable cocotb stream drivers and monitors for ``amaranth.lib.stream`` ports.

Amaranth names a stream port ``<name>__valid``, ``<name>__ready`` and
``<name>__payload`` (the payload flattened to one vector, first field/element in the
least significant bits). Timing convention used by every class here: a beat is
transferred on the rising edge at which ``valid & ready`` is high; the transfer is
recorded with the index of that edge as counted by :class:`CycleCounter`, so a
difference of two records is a clock count.
"""
from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass
from typing import Any, Iterable

import cocotb
from cocotb.simtime import get_sim_time
from cocotb.triggers import Event, ReadOnly, RisingEdge
from cocotb.utils import get_sim_steps


@dataclass
class StreamPort:
    """The three signals of one stream port of a DUT."""

    valid: Any
    ready: Any
    payload: Any

    @classmethod
    def of(cls, dut, name: str) -> "StreamPort":
        return cls(getattr(dut, f"{name}__valid"), getattr(dut, f"{name}__ready"), getattr(dut, f"{name}__payload"))


class CycleCounter:
    """Counts rising edges since :meth:`start`, from the simulation time rather than by
    waking on every edge (a coroutine per clock costs more than the model itself). Read
    ``now`` in the ReadOnly phase: it is then the index of the edge that just happened."""

    def __init__(self, clk, period_ns: float = 10):
        self.clk = clk
        self.period = get_sim_steps(period_ns, "ns")
        self.t0: int | None = None

    def start(self) -> "CycleCounter":
        """Count from here (call it at a rising edge)."""
        self.t0 = get_sim_time("step")
        return self

    @property
    def now(self) -> int:
        return 0 if self.t0 is None else (get_sim_time("step") - self.t0) // self.period


class PortCounter:
    """A DUT's own clock count as the time stamp of transfers: ``now`` is the value of the
    counter port ``port`` (read it in the ReadOnly phase, like :class:`CycleCounter`). For a
    design whose clocks are not the simulator's edges: an emulation build counts target
    clocks (``hw.decoupled``), and its streams transfer only on target edges."""

    def __init__(self, port):
        self.port = port

    def start(self) -> "PortCounter":
        return self

    @property
    def now(self) -> int:
        return int(self.port.value)


def pack(values: Iterable[int], width: int) -> int:
    """Flatten element values (two's complement where negative) into one payload integer."""
    word, mask = 0, (1 << width) - 1
    for i, v in enumerate(values):
        word |= (int(v) & mask) << (i * width)
    return word


def unpack(word: int, width: int, count: int, signed: bool = False) -> list[int]:
    """Split a payload integer into ``count`` elements of ``width`` bits."""
    mask, out = (1 << width) - 1, []
    for i in range(count):
        v = (word >> (i * width)) & mask
        if signed and v >> (width - 1):
            v -= 1 << width
        out.append(v)
    return out


class _Count:
    """Events set once a list of transfers reaches a length (one wake for a waiter instead of
    one per transfer)."""

    def __init__(self):
        self._waits: list[tuple[int, Event]] = []

    def at(self, n: int, done: int) -> Event:
        ev = Event()
        if done >= n:
            ev.set()
        else:
            self._waits.append((n, ev))
        return ev

    def update(self, done: int) -> None:
        if self._waits:
            for w in [w for w in self._waits if done >= w[0]]:
                w[1].set()
                self._waits.remove(w)


class StreamDriver:
    """Drives beats into a stream sink port, honouring ``ready``.

    ``gap_prob`` is the probability of holding ``valid`` low for a cycle between beats
    (random gaps on the input). Once ``valid`` is raised with a payload it is held,
    unchanged, until the beat is taken, as the stream rules require. The driver sleeps
    while it has nothing to send and, holding a beat, until ``ready`` rises, so an idle or
    stalled port costs no Python per clock; the beats and their edges are the same as
    polling every clock would give. ``progress`` (if given) is set on every transfer.
    """

    def __init__(self, clk, port: StreamPort, counter: CycleCounter, *, gap_prob: float = 0.0,
                 rng: random.Random | None = None, progress: Event | None = None):
        self.clk, self.port, self.counter = clk, port, counter
        self.gap_prob, self.rng = gap_prob, rng or random.Random(0)
        self.queue: deque[int] = deque()
        self.accepted: list[tuple[int, int]] = []   # (edge index, payload)
        self.progress = progress
        self._count = _Count()
        self._wake = Event()
        self.port.valid.value = 0

    def send(self, payloads: Iterable[int]) -> None:
        self.queue.extend(int(p) for p in payloads)
        self._wake.set()

    def start(self) -> "StreamDriver":
        cocotb.start_soon(self._run())
        return self

    async def _run(self):
        holding = False
        while True:
            await RisingEdge(self.clk)
            if not holding and not self.queue:
                self.port.valid.value = 0
                self._wake.clear()
                await self._wake.wait()      # send() wakes us; the beat goes out on the next edge
                await RisingEdge(self.clk)
            if not holding:
                if self.queue and not (self.gap_prob and self.rng.random() < self.gap_prob):
                    self.port.payload.value = self.queue[0]
                    self.port.valid.value = 1
                    holding = True
                else:
                    self.port.valid.value = 0
            await ReadOnly()
            while holding and not int(self.port.ready.value):
                await RisingEdge(self.port.ready)   # stalled: sleep until the consumer is ready
                await ReadOnly()
            if holding:
                # seen now, transferred on the coming edge
                self.accepted.append((self.counter.now + 1, self.queue.popleft()))
                holding = False
                self._count.update(len(self.accepted))
                if self.progress is not None:
                    self.progress.set()

    @property
    def idle(self) -> bool:
        return not self.queue

    def reached(self, n: int) -> Event:
        """An event set once ``n`` beats have been accepted (already set if they have)."""
        return self._count.at(n, len(self.accepted))


class StreamSink:
    """Takes beats from a stream source port; ``ready_prob`` < 1 applies random back-pressure
    (a draw every clock). Always ready, the sink sleeps until ``valid`` rises, so a quiet
    port costs no Python per clock. ``progress`` (if given) is set on every transfer."""

    def __init__(self, clk, port: StreamPort, counter: CycleCounter, *, ready_prob: float = 1.0,
                 rng: random.Random | None = None, progress: Event | None = None):
        self.clk, self.port, self.counter = clk, port, counter
        self.ready_prob, self.rng = ready_prob, rng or random.Random(1)
        self.received: list[tuple[int, int]] = []   # (edge index, payload)
        self.progress = progress
        self._count = _Count()
        self.port.ready.value = 0

    def start(self) -> "StreamSink":
        cocotb.start_soon(self._run() if self.ready_prob < 1.0 else self._run_ready())
        return self

    def reached(self, n: int) -> Event:
        """An event set once ``n`` beats have been received (already set if they have)."""
        return self._count.at(n, len(self.received))

    def _take(self) -> None:
        self.received.append((self.counter.now + 1, int(self.port.payload.value)))
        self._count.update(len(self.received))
        if self.progress is not None:
            self.progress.set()

    async def _run(self):
        while True:
            await RisingEdge(self.clk)
            self.port.ready.value = int(self.rng.random() < self.ready_prob)
            await ReadOnly()
            if int(self.port.valid.value) and int(self.port.ready.value):
                self._take()

    async def _run_ready(self):
        await RisingEdge(self.clk)
        self.port.ready.value = 1
        while True:
            await ReadOnly()
            if int(self.port.valid.value):
                self._take()
                await RisingEdge(self.clk)
            else:
                await RisingEdge(self.port.valid)
