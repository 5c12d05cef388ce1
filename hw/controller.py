"""Layer sequencing: fixed-duration stage timers and the ``LayerController`` FSM.

A layer engine (``hw.layer.ConvLayerEngine``) runs one *step* per output pixel (per
replica) through a chain of stages — FM-buffer fetch, tile bus, PE-to-PE pass, PE bus,
crossbar MVM, adder tree, post-processing, output — each with a fixed duration ``d_i``
taken from the layer's schedule (``gen.schedule.LayerSchedule.stages``). The controller starts step ``j``
at ``P + j*II`` with ``II = max_i d_i``; stage ``i`` starts a step exactly when stage
``i-1`` ends it (a registered ``done`` pulse), so with every stage's result held in its
own output register (double-buffered hand-off) step ``j`` is in stage ``i`` during
``[P + j*II + sum(d_<i), ... + d_i)`` and the last step leaves the last stage at
``P + sum(d) + (n-1)*II``. That is the cycle model, clock for clock.

Timing convention (used by every block of the engine): a stage that *starts at edge S*
is active in cycles ``S .. S+d-1`` (its ``go`` pulse is high in cycle ``S``) and its result
is registered on edge ``S+d``; its ``done`` pulse is high in cycle ``S+d``, which is the
next stage's ``go``.
"""
from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from gen.schedule import LayerSchedule

__all__ = ["StageTimer", "LayerController"]


class StageTimer:
    """Control of one fixed-duration stage, added to ``m``.

    ``go`` is a one-cycle pulse (cycle ``S``). Exposes ``run`` (active: cycles ``S..S+d-1``),
    ``idx`` (0 .. d-1 within the stage, valid while ``run``), ``last`` (cycle ``S+d-1``)
    and ``done`` (registered pulse in cycle ``S+d``). ``d == 0`` makes the stage a wire:
    ``done = go`` and it is never ``run``.
    """

    def __init__(self, m: Module, go, d: int, name: str):
        if d < 0:
            raise ValueError(f"stage {name}: duration {d} < 0")
        self.d = d
        self.go = go
        if d == 0:
            self.run = Signal(name=f"{name}_run")
            self.idx = Signal(1, name=f"{name}_idx")
            self.last = Signal(name=f"{name}_last")
            self.done = go
            return
        cnt = Signal(range(max(2, d)), name=f"{name}_cnt")
        busy = Signal(name=f"{name}_busy")
        self.idx = Signal(range(max(2, d)), name=f"{name}_idx")
        self.run = Signal(name=f"{name}_run")
        self.last = Signal(name=f"{name}_last")
        self.done = Signal(name=f"{name}_done")
        m.d.comb += [
            self.idx.eq(Mux(go, 0, cnt)),
            self.run.eq(go | busy),
            self.last.eq(self.run & (self.idx == d - 1)),
        ]
        m.d.sync += self.done.eq(self.last)
        with m.If(self.run):
            with m.If(self.idx == d - 1):
                m.d.sync += busy.eq(0)
            with m.Else():
                m.d.sync += [busy.eq(1), cnt.eq(self.idx + 1)]


class LayerController(wiring.Component):
    """The FSM sequencing one layer: its input banks fill, then prologue → steps → done.

    Every number comes from the schedule ``sched``: steps come in ``rows`` rows of
    ``row_steps``, each ``warmup`` warm-up steps (novel mapping: the window's first columns
    enter; no output) followed by ``cols`` output steps. The step after an output step
    starts ``interval`` clocks after it, the step after a warm-up step ``interval_warmup``
    clocks after it (a warm-up step only uses the input stages).

    The input feature map has ``banks`` banks (1: a stand-alone engine, which takes its next
    image only when idle; 2: a chip stage, which fills one bank while it computes on the
    other). A full bank starts as soon as the engine is idle and ``start_ok`` is high (in a
    chip: the consumer has a free bank for the outputs).

    Ports:
        load_beat: in, a feature-map word is written this cycle (input accepted).
        pro_done: in, pulse: the prologue (novel: line-buffer fill) has finished.
        last_done: in, pulse: the last stage finished an output step.
        start_ok: in, the engine may start an image.
        loading: out, the write bank takes input words.
        wr_bank, rd_bank: out, the bank being filled and the bank being computed on.
        pro_go: out, pulse starting the prologue.
        step_go: out, pulse starting a step (stage 0's ``go``).
        step: out, index of the step being started.
        started: out, pulse: an image starts (its first ``pro_go`` or ``step_go``).
        finishing: out, pulse: the image's last output step finishes (no step starts now, so
            per-image counters start over here).
        released: out, pulse after an image's last output step left (its bank is free again).
        busy: out, an image is in flight (first input word .. last output step done; 1 bank).
        done: out, pulse after the image's last output step has left the last stage.
        cycles: out, clocks of the current (or last) image, from the edge that takes its first
            input word to the edge after its last output step left the last stage — with the
            engine's one-word output FIFO, the engine's clocks (``engine_clocks``) when no
            back-pressure stalls it.
    """

    def __init__(self, sched: LayerSchedule, banks: int = 1):
        self.sched, self.banks = sched, banks
        super().__init__({
            "load_beat": In(1), "pro_done": In(1), "last_done": In(1), "start_ok": In(1, init=1),
            "loading": Out(1), "wr_bank": Out(1), "rd_bank": Out(1), "pro_go": Out(1), "step_go": Out(1),
            "step": Out(range(sched.steps + 1)), "started": Out(1), "finishing": Out(1), "released": Out(1),
            "busy": Out(1), "done": Out(1), "cycles": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        sc = self.sched
        per_row, n_steps, n_out, warmup = sc.row_steps, sc.steps, sc.out_steps, sc.warmup
        words = Signal(range(sc.load_words + 1))
        tick = Signal(range(max(sc.interval, sc.interval_warmup) + 1))
        gap = Signal.like(tick)
        tr = Signal(range(max(2, per_row)))
        issued = Signal(range(n_steps + 1))
        finished = Signal(range(n_out + 1))
        go = Signal()
        full = Signal(2)
        two = self.banks == 2
        m.d.comb += [self.step.eq(issued), self.step_go.eq(go)]
        m.d.sync += [self.done.eq(0), self.released.eq(0)]
        with m.If(self.busy):
            m.d.sync += self.cycles.eq(self.cycles + 1)
        with m.If(go):
            m.d.sync += [issued.eq(issued + 1), tick.eq(1),
                         gap.eq(Mux(tr < warmup, sc.interval_warmup, sc.interval) if warmup else sc.interval),
                         tr.eq(Mux(tr == per_row - 1, 0, tr + 1))]
        with m.Elif(issued != 0):
            m.d.sync += tick.eq(tick + 1)

        # --- write side: the input banks ------------------------------------------------------
        m.d.comb += self.loading.eq(~full.bit_select(self.wr_bank, 1))
        with m.If(self.load_beat):
            m.d.sync += words.eq(words + 1)
            with m.If((words == 0) & ~self.busy):
                m.d.sync += [self.busy.eq(1), self.cycles.eq(0)]
            with m.If(words == sc.load_words - 1):
                m.d.sync += [words.eq(0), full.bit_select(self.wr_bank, 1).eq(1)]
                if two:
                    m.d.sync += self.wr_bank.eq(~self.wr_bank)

        # --- run side (If chains rather than m.FSM: no incomplete case statements) ----------------
        IDLE, PROLOGUE, RUN = 0, 1, 2
        state = Signal(range(3), name="layer_state")
        with m.If(state == IDLE):
            with m.If(full.bit_select(self.rd_bank, 1) & self.start_ok):
                m.d.comb += self.started.eq(1)
                if sc.prologue:
                    m.d.comb += self.pro_go.eq(1)
                    m.d.sync += state.eq(PROLOGUE)
                else:
                    m.d.comb += go.eq(1)
                    m.d.sync += state.eq(RUN)
        with m.If(state == PROLOGUE):
            with m.If(self.pro_done):
                m.d.comb += go.eq(1)
                m.d.sync += state.eq(RUN)
        with m.If(state == RUN):
            with m.If((issued != 0) & (issued < n_steps) & (tick == gap)):
                m.d.comb += go.eq(1)
            with m.If(self.last_done):
                m.d.sync += finished.eq(finished + 1)
                with m.If(finished == n_out - 1):
                    m.d.comb += self.finishing.eq(1)
                    # every step was issued: the counters are idle and start over here
                    m.d.sync += [self.done.eq(1), self.released.eq(1), self.busy.eq(0), state.eq(IDLE),
                                 full.bit_select(self.rd_bank, 1).eq(0), issued.eq(0), finished.eq(0), tr.eq(0)]
                    if two:
                        m.d.sync += self.rd_bank.eq(~self.rd_bank)
        return m
