"""The layer engine's output path, for :mod:`formal.stream_props`.

:class:`OutputPath` is tile 0 of a small layer (``conv Cin=2 Cout=1 K=1 H=1 W=3``, two
replicas, the second with one output step fewer, so a step in which only one replica has a
pixel occurs; ``G = 8``: 2 words per step): the real :class:`hw.layer.OutputStage` inside an
``EnableInserter`` and a :class:`hw.interconnect.StreamFIFO` of
:data:`hw.layer.OUT_FIFO_DEPTH`, wired as :class:`hw.layer.EngineTail` wires them (the FIFO's
``i.ready`` is the engine's enable; a write is ``we & en``). In place of the rest of the engine, a post-stage stand-in under the
same enable: ``go`` and the ``y`` values are registers loaded from free inputs (``go_req``,
``y_next``), at most one step per ``gbus_out`` clocks; ``reset`` (the controller's
``finishing``) likewise.

The model owes, per step, the tile's ``out_words`` words of ``Cat(y)`` while any of the
tile's replicas still has an output pixel (``j < out_steps`` of the replica, ``j`` counted
from the last reset), one per enabled clock — counted from ``gen`` 's schedule, not from the
stage. ``broken=`` builds a faulty engine around the real stage:

* ``ungated``: the engine's enable ignores the FIFO (``en = 1``, not ``i.ready``): the stage
  runs on while the FIFO is full, and a word written then is lost (``lost``). (Letting only
  the write ignore the enable, ``valid = we``, breaks nothing: the FIFO ignores a write
  while full, and the stalled stage offers the word again.)
* ``extra_step``: the stage is built from a schedule whose replicas each have one output
  step more, so it writes words on a step without pixels (``created``).
"""
from __future__ import annotations

import dataclasses

from amaranth.hdl import Cat, EnableInserter, Elaboratable, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from formal.stream_props import StreamProps
from gen.config import ChipConfig, CrossbarConfig
from gen.layerspec import layer_plan, parse_layer_spec
from gen.schedule import schedule_layer
from hw.interconnect import StreamFIFO
from hw.layer import OUT_FIFO_DEPTH, OutputStage

SPEC = "conv Cin=2 Cout=1 K=1 H=1 W=3 stride=1 pad=0"
CHIP = ChipConfig(crossbar=CrossbarConfig(rows=16, cols=16, cell_bits=4, cols_per_adc=4), subarrays_per_pe=4,
                  pes_per_tile=9, global_bus_bits=8, tile_bus_bits=64, pe_bus_bits=32)
BROKEN = {"ungated": "lost", "extra_step": "created"}


def schedule():
    _, lp = layer_plan(parse_layer_spec(SPEC), CHIP, "conventional", 2, False)
    return schedule_layer(lp, CHIP)


class _Core(Elaboratable):
    """The stage and its stand-in environment, all under the engine's enable."""

    def __init__(self, sched, stage_sched):
        self.sched = sched
        sc = sched
        tile = sc.tiles[0]
        self.go_req, self.reset_req = Signal(), Signal()
        self.y_next = Signal(len(tile.replicas) * sc.cout * sc.a_out)
        self.y = [[Signal(sc.a_out, name=f"y_r{r}_{c}") for c in range(sc.cout)] for r in range(len(sc.replicas))]
        self.stage = OutputStage(stage_sched, 0, self.y)
        # the model's view
        self.exp_valid = Signal()
        self.exp_word = Signal(sc.bus_bits)

    def elaborate(self, platform):
        m = Module()
        sc, tile = self.sched, self.sched.tiles[0]
        G, d = sc.bus_bits, sc.stages["gbus_out"]
        m.submodules.stage = st = self.stage
        # the model's step clock: ``rem`` clocks of the current step after this one
        rem = Signal(range(d))
        go, reset = Signal(), Signal()
        free_next = Mux(go, d == 1, rem <= 1)          # the stage is idle next clock
        with m.If(go):
            m.d.sync += rem.eq(d - 1)
        with m.Elif(rem != 0):
            m.d.sync += rem.eq(rem - 1)
        # post-stage stand-in: a step (go, new y) or a reset only when the stage is idle
        take = self.go_req & ~self.reset_req & free_next
        m.d.sync += [go.eq(take), reset.eq(self.reset_req & free_next)]
        vec = Cat(*[self.y[r][c] for r in tile.replicas for c in range(sc.cout)])
        with m.If(take):
            m.d.sync += vec.eq(self.y_next)
        m.d.comb += [st.go.eq(go), st.reset.eq(reset)]
        # the words owed: tile.out_words per step while a replica of the tile has a pixel
        j = Signal(range(sc.out_steps + 2))     # steps since the last reset
        written = max(sc.replicas[r].out_steps for r in tile.replicas)
        has_l = Signal()
        widx = Signal(range(d + 1))
        nxt = Signal.like(widx)
        m.d.comb += widx.eq(Mux(go, 0, nxt))
        with m.If(go):
            m.d.sync += [j.eq(j + 1), has_l.eq(j < written)]
        with m.If(reset):
            m.d.sync += j.eq(0)
        m.d.sync += nxt.eq(widx + 1)
        running = go | (rem != 0)
        has = Mux(go, j < written, has_l)
        m.d.comb += [self.exp_valid.eq(running & has & (widx < tile.out_words)),
                     self.exp_word.eq(vec.word_select(widx, G))]
        return m


class OutputPath(wiring.Component):
    """The stand-in core, the stage and the output FIFO (module docstring)."""

    def __init__(self, broken: str | None = None):
        if broken is not None and broken not in BROKEN:
            raise ValueError(f"broken {broken!r}: one of {sorted(BROKEN)}")
        self.broken = broken
        self.sched = sc = schedule()
        stage_sched = sc
        if broken == "extra_step":
            stage_sched = dataclasses.replace(sc, replicas=tuple(
                dataclasses.replace(r, out_steps=r.out_steps + 1) for r in sc.replicas))
        self.core = _Core(sc, stage_sched)
        self.en = Signal()
        super().__init__({"o": Out(stream.Signature(sc.bus_bits)), "go_req": In(1), "reset_req": In(1),
                          "y_next": In(len(self.core.y_next))})

    def elaborate(self, platform):
        m = Module()
        core, en = self.core, self.en
        m.submodules.core = EnableInserter(en)(core)
        m.d.comb += [core.go_req.eq(self.go_req), core.reset_req.eq(self.reset_req), core.y_next.eq(self.y_next)]
        # as EngineTail wires its output FIFOs
        q = StreamFIFO(self.sched.bus_bits, OUT_FIFO_DEPTH)
        m.submodules.ofifo = q
        m.d.comb += [q.i.payload.eq(core.stage.data), q.i.valid.eq(core.stage.we & en)]
        wiring.connect(m, q.o, wiring.flipped(self.o))
        m.d.comb += en.eq(1 if self.broken == "ungated" else q.i.ready)
        return m


def checker(fault=None, only=None, broken=None):
    dut = OutputPath(broken)

    def model(m, beats):
        return dut.core.exp_valid & dut.en, [dut.core.exp_word]
    return StreamProps(dut, [], [dut.o], model=model, cap=OUT_FIFO_DEPTH, eager=True,
                       free=[dut.go_req, dut.reset_req, dut.y_next], fault=fault, only=only)
