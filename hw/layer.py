"""Layer engine generator: one conv (or linear) layer in RTL, built from its schedule.

``ConvLayerEngine(lp, chip, params)`` builds, from the layer's plan entry ``lp`` and its
schedule ``gen.schedule.schedule_layer(lp, chip)`` (every count and duration used here is the
schedule's), for ``lp.mapping`` ``"conventional"`` or ``"novel"`` and every replica of ``lp``:

* a :class:`hw.buffers.FeatureMapBuffer` (one memory, ``hw.sram``) that the input stream
  ``i`` fills, one global-bus word per beat, with one read port per tile;
* per tile, the fetch stage: :class:`hw.buffers.WindowGenerator` (conventional: the
  ``K*K*Cin`` im2col window, every pixel re-read for every window it belongs to) or
  :class:`hw.buffers.InputDistributor` (novel: each input pixel read once, line buffers,
  pixels passed between the ``K x K`` PEs);
* :class:`PEArray`: the PEs of the plan (:class:`hw.pe.PE`, one crossbar per placement,
  weights as initial cell contents) behind the PE-bus and MVM stages;
* :class:`Accumulate`: the partial-sum adder trees (a multicycle path of the
  ``accumulate`` stage's clocks);
* :class:`PostStage`: bias + requantization + ReLU clamp (``hw.post.requant_expr``'s
  arithmetic over ``gen.timing.POST_CLOCKS`` registers), or ``acc + bias`` for a raw layer;
* :class:`OutputStage` per tile: the tile's output words, ``G`` bits per clock, into a FIFO
  drained by the output stream ``o[t]``;
* the :class:`hw.controller.LayerController`.

Everything before the post stage is the engine's :class:`EngineDatapath`, which a chip emits
once per layer shape (``hw.blackbox``); inside it, a novel layer's tiles that complete their
own sums are :class:`EngineTile` modules, alike tiles one module. The post and output stages
and the output FIFOs hold the layer's constants: they are the engine's :class:`EngineTail`,
one module per layer of a chip; the post stage's :class:`PostChannel` is one module per
layer, its channels' biases ports.

From the first input word accepted to the last output word delivered:
``sched.engine_clocks`` clocks, with no back-pressure. Back-pressure: when any output FIFO
is full, the whole engine (crossbars included) holds its state for that clock
(``EnableInserter``), so nothing is lost, duplicated or reordered.

Output words of tile ``t`` per step: the values of the column blocks whose sums leave from
the tile (``TileSchedule.out_cols``: replica-major, then channel; all ``Cout`` of each of its
replicas when a replica sits in one tile), ``a_out`` bits each (``a_bits`` unsigned, or
32-bit signed for a raw layer), flattened, cut into ``G``-bit words (the last one
zero-padded). A tile whose column blocks all leave from other tiles writes nothing. A step in which none of the tile's
replicas has an output pixel writes nothing (warm-up steps never reach the output stage); a
replica without a pixel in a written step contributes don't-care values.

The engine builds what ``sched.engine_refusal()`` accepts; ``flow`` checks that first.
"""
from __future__ import annotations

import hashlib
from dataclasses import replace

import numpy as np
from amaranth.hdl import Cat, Const, Elaboratable, EnableInserter, Module, Signal, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from gen import timing
from gen.config import ChipConfig
from gen.emulation import serial_sum_steps
from gen.params import WeightParams
from gen.schedule import LayerSchedule, schedule_layer
from hw.buffers import FeatureMapBuffer, InputDistributor, WindowGenerator, read_port_signature
from hw.blackbox import instantiate
from hw.controller import LayerController, StageTimer
from hw.crossbar import tree_sum
from hw.interconnect import StreamFIFO
from hw.pe import PE, PEBlock, prog_layout
from hw.post import requant_tail, saturate, sext

__all__ = ["ConvLayerEngine", "EngineDatapath", "EngineTile", "EngineTail", "tile_plan", "PEArray", "Accumulate",
           "PostStage", "PostChannel", "OutputStage", "OUT_FIFO_DEPTH", "acc_bits", "acc_bus"]

OUT_FIFO_DEPTH = 4

#: Registers the post arithmetic needs (``acc + bias``, ``* M``, round/shift/clamp); the
#: schedule's ``POST_CLOCKS`` may add plain delay registers behind them, never fewer.
_POST_REGISTERS = 3


class PEArray(Elaboratable):
    """The PEs of a layer behind the ``pbus_in`` and ``mvm`` stages.

    ``go`` (the fetch stage's done pulse) and ``go_next`` (high the clock before) start a
    step; ``inputs[(tile, replica, kpos)]`` are the PE input vectors the tiles' fetch
    stages hold. The
    crossbars' handshakes are driven from a register per PE (set the clock before), so no
    single net fans out to them all. ``psums[(replica, cols)]`` are the partial-sum vectors
    (one list of signed values per contributing crossbar): the crossbars' outputs, valid while
    ``take`` (the MVM's last clock, when they are handed over); ``done`` pulses after it. In
    the emulation build (``target``) the PEs offer one result at a time instead:
    ``results`` holds each PE's ``(result, address)`` pair, in ``lp.per_pe()`` order, for
    :class:`hw.decoupled.SerialAccumulate`, and the psums are not wired.
    """

    def __init__(self, lp, sched: LayerSchedule, xb, params: WeightParams, inputs: dict, prog=None, target=None):
        self.lp, self.sched, self.xb, self.params, self.inputs = lp, sched, xb, params, inputs
        # (programming stream, first crossbar id, crossbars on the chip) or None; the stream's
        # crossbar numbers are the layer's own (0 = its first placement): the engine rebases them
        self.prog = prog
        self.target = target        # hw.decoupled.TargetClock of an emulation build, or None
        self.go = Signal()
        self.go_next = Signal()
        self.take = Signal()
        self.done = Signal()
        self.psums: dict[tuple[int, tuple[int, int]], list] = {}
        # emulation build: each PE's result read port (result, address), in lp.per_pe() order,
        # for hw.decoupled.SerialAccumulate; the psums are then not wired
        self.results: list[tuple] = [] if target is None else [
            (Signal(signed(xb.dot_bits), name=f"result_t{tile}_{pe_i}"),
             Signal(range(max(2, len(pls) * xb.outputs)), name=f"result_addr_t{tile}_{pe_i}"))
            for (tile, pe_i), pls in lp.per_pe().items()]
        for (tile, pe_i), pls in lp.per_pe().items():
            for b, p in enumerate(pls):
                self.psums.setdefault((p.replica, p.cols), []).append(
                    [Signal(signed(xb.dot_bits), name=f"psum_t{tile}_{pe_i}_{b}_{o}") for o in range(p.cols[1] - p.cols[0])])

    def elaborate(self, platform):
        m = Module()
        d, xb = self.sched.stages, self.xb
        pbus = StageTimer(m, self.go, d["pbus_in"], "pbus")
        pbus_last_next = self.go_next if d["pbus_in"] == 1 else pbus.run & (pbus.idx == d["pbus_in"] - 2)
        mvm = StageTimer(m, pbus.done, d["mvm"], "mvm")
        mvm_last_next = mvm.run & (mvm.idx == d["mvm"] - 2)
        m.d.comb += [self.done.eq(mvm.done), self.take.eq(mvm.last)]
        taken: dict[tuple[int, tuple[int, int]], int] = {}
        taken_pes: list[str] = []
        index = {p: n for n, p in enumerate(self.lp.placements)}
        t_index = {t.chip_tile: t.index for t in self.sched.tiles}
        for (tile, pe_i), pls in self.lp.per_pe().items():
            kpos, rep = pls[0].kpos, pls[0].replica
            src = self.inputs[(t_index[tile], rep, kpos)]
            n_in = len(src) // xb.a_bits
            name = f"pe_t{tile}_{pe_i}"
            if self.prog is None:
                pe = PE(xb, n_in, [PEBlock(p.rows[0], self.params.block(p)) for p in pls])
                m.submodules[name] = pe
            else:       # programmed: one module per PE kind (hw.blackbox)
                stream_, base, n_xbars = self.prog
                rows, emulated = [p.rows for p in pls], self.target is not None
                ids = [base + index[p] for p in pls]        # chip-wide: the emulation build's arrays
                # a board without a programming source: this PE's cells from the start
                pre = tuple(self.target.cells[i] for i in ids) if emulated and self.target.cells else None
                pe = instantiate(m, name, PE.module_name(xb, n_in, rows, n_xbars, emulated, pre),
                                 PE.signature_of(xb, n_in, len(pls), n_xbars, emulated),
                                 lambda: PE(xb, n_in, [PEBlock(r0, np.zeros((r1 - r0, 1), np.int64))
                                                       for r0, r1 in rows],
                                            programmed=True, n_xbars=n_xbars, emulated=emulated, preload=pre))
                m.d.comb += [pe.prog.valid.eq(stream_.valid), pe.prog.payload.eq(stream_.payload),
                             *[pe.sel[b].eq(stream_.payload.xbar == index[p]) for b, p in enumerate(pls)]]
                if emulated:    # the bank drives its first crossbar's ok, the others' are high
                    m.d.comb += [pe.tick.eq(self.target.tick), self.target.ok[ids[0]].eq(pe.ok),
                                 *[self.target.ok[i].eq(1) for i in ids[1:]]]
            pv = Signal(name=f"pvalid_t{tile}_{pe_i}")
            po = Signal(name=f"pready_t{tile}_{pe_i}")
            m.d.sync += [pv.eq(pbus_last_next), po.eq(mvm_last_next)]
            m.d.comb += [pe.i.payload.eq(src), pe.i.valid.eq(pv), pe.o.ready.eq(po)]
            if self.target is not None:
                value, addr = self.results[len(taken_pes)]
                taken_pes.append(name)
                m.d.comb += [value.eq(pe.o.payload), pe.o_addr.eq(addr)]
                continue
            for b, p in enumerate(pls):
                key = (p.replica, p.cols)
                dst = self.psums[key][taken.get(key, 0)]
                taken[key] = taken.get(key, 0) + 1
                for o, sig in enumerate(dst):
                    off = (b * xb.outputs + o) * xb.dot_bits
                    m.d.comb += sig.eq(pe.o.payload[off:off + xb.dot_bits].as_signed())
        return m


def acc_bits(sched: LayerSchedule, dot_bits: int) -> int:
    """Width of a layer's accumulators: a partial sum's ``dot_bits``, one bit per level of
    its adder tree (no more than the accumulate stage's clocks) and a sign bit."""
    return dot_bits + sched.stages["accumulate"] + 1


class Accumulate(Elaboratable):
    """The sums of each column block's partial sums, over ``sched.stages["accumulate"]``
    clocks; ``acc[replica][output]`` are the sums, ``done`` pulses after them.

    The adder tree is a multicycle path rather than a pipeline of registered levels: its sum
    is registered once, on ``take`` (the crossbars hand their outputs over on that clock), and
    moved to ``acc`` on the stage's last clock, so ``acc`` changes on exactly the clocks a
    tree of ``levels`` registered levels would make it change. That is two registers per
    output instead of one per partial sum and tree node: on an FPGA emulation build the
    registers are what limits the chip (``docs/fpga.md``). With ``levels == 0`` (one partial
    sum) the registered sum is ``acc``.

    ``serial`` (the emulation build: ``(gen.emulation.serial_sum_steps, the PEs' result
    ports, tick, the layer's ok)``): the registered sums come from one
    :class:`hw.decoupled.SerialAccumulate`, which adds them one output at a time on host
    clocks while the target clock stands on ``take``, and registers them on that target
    edge, as the trees would; ``acc`` follows on the same clocks as without it.
    """

    def __init__(self, sched: LayerSchedule, psums: dict, dot_bits: int, serial=None):
        self.sched, self.psums, self.dot_bits, self.serial = sched, psums, dot_bits, serial
        self.levels = sched.stages["accumulate"]
        self.acc_bits = acc_bits(sched, dot_bits)
        self.go = Signal()
        self.take = Signal()
        self.done = Signal()
        self.acc = [[Signal(signed(self.acc_bits), name=f"acc_r{r}_{c}") for c in range(sched.cout)]
                    for r in range(len(sched.replicas))]

    def elaborate(self, platform):
        m = Module()
        st = StageTimer(m, self.go, self.levels, "accumulate")
        m.d.comb += self.done.eq(st.done)
        totals = self._serial(m) if self.serial is not None else None
        dest = 0
        for (r, (c0, c1)), parts in sorted(self.psums.items()):
            need = timing.adder_tree_clocks(len(parts))
            if self.levels < need:
                raise ValueError(f"{len(parts)} partial sums need {need} accumulate clocks, the schedule has "
                                 f"{self.levels}")
            for o in range(c1 - c0):
                acc = self.acc[r][c0 + o]
                if totals is not None:      # summed on host clocks, registered on the take edge
                    total = totals[dest]
                    dest += 1
                    if not self.levels:
                        m.d.comb += acc.eq(total)
                else:
                    total = acc if self.levels == 0 else Signal(signed(self.acc_bits), name=f"sum_r{r}_{c0 + o}")
                    tree = tree_sum([part[o] for part in parts], m, f"sum_r{r}_{c0 + o}")   # outside the If
                    with m.If(self.take):
                        m.d.sync += total.eq(tree)
                if self.levels:
                    with m.If(st.last):
                        m.d.sync += acc.eq(total)
        return m

    def _serial(self, m):
        """The emulation build's sums (:class:`hw.decoupled.SerialAccumulate`, a black box on
        host clocks), in sorted column-block order: ``serial`` is ``(steps, the PEs' result
        ports, the target clock's tick, this layer's ok)``."""
        from hw.decoupled import SerialAccumulate
        steps, results, tick, ok = self.serial
        abits = max(len(a) for _, a in results)
        args = (self.dot_bits, self.acc_bits, abits, steps)
        sa = instantiate(m, "serial", SerialAccumulate.module_name(*args), SerialAccumulate.signature_of(*args),
                         lambda: SerialAccumulate(*args))
        m.d.comb += [sa.take.eq(self.take), sa.tick.eq(tick), ok.eq(sa.ok)]
        for p, (value, addr) in enumerate(results):
            m.d.comb += [sa.data[p].eq(value), addr.eq(sa.addr[p])]
        return [sa.total[i] for i in range(len(sa.total))]


def tile_plan(lp, sched: LayerSchedule, t: int):
    """Tile ``t`` of ``lp`` as a plan of its own: ``(its placements' plan, the index of its
    first placement in the layer, its column blocks (sorted))``, or ``None`` when the tile
    cannot be a module of its own (:class:`EngineTile`): a conventional layer, a block whose
    partial sums are added across tiles, or placements not numbered one after another."""
    if not sched.novel:
        return None
    chip_tile = sched.tiles[t].chip_tile
    where = {}
    for p in lp.placements:
        where.setdefault((p.replica, p.cols), set()).add(p.tile)
    idx = [n for n, p in enumerate(lp.placements) if p.tile == chip_tile]
    blocks = sorted(b for b, tiles in where.items() if chip_tile in tiles)
    if not idx or idx != list(range(idx[0], idx[0] + len(idx))) or any(len(where[b]) > 1 for b in blocks):
        return None
    return replace(lp, placements=[lp.placements[n] for n in idx], tiles=[chip_tile]), idx[0], blocks


class EngineTile(wiring.Component):
    """One tile of a novel-mapped engine whose column blocks all complete in it: its input
    distributor (:class:`hw.buffers.InputDistributor`), its PEs (:class:`PEArray`,
    programmed) and the adder trees of its blocks (:class:`Accumulate`), holding its state
    while ``en`` is low.

    The tiles of a wide layer (ResNet-34's ``layer4`` convolution: 35 tiles, each reading the
    whole pixel into 9 PEs and completing 15 channels) differ only in which channels they hold,
    which the weights programmed into them decide, so a datapath makes each tile one instance
    of a module per :meth:`module_name`: the Verilog of a layer grows with its kinds of tiles.

    Ports: ``en``; ``go``, ``pro_go``, ``y``, ``t``, ``act``, ``rd`` and ``z_in`` as the
    distributor's (its pad value); ``fetch_done``/``fetch_done_next`` (the distributor's
    output-step ``done`` and the clock before); ``pe_go``/``pe_go_next`` (the first tile's
    ``fetch_done``/``fetch_done_next``, which start every tile's PEs); ``acc_done``; ``prog``
    (crossbars numbered from the tile's first); ``acc``: the sums of its blocks, in sorted
    block order.
    """

    def __init__(self, lp, chip: ChipConfig, sched: LayerSchedule, t: int, prog_xbars: int):
        self.chip, self.sched, self.index, self.prog_xbars = chip, sched, t, prog_xbars
        self.tlp, _, self.blocks = tile_plan(lp, sched, t)
        super().__init__(self.signature_of(sched, t, chip, prog_xbars, self.blocks))

    @staticmethod
    def signature_of(sched: LayerSchedule, t: int, chip: ChipConfig, prog_xbars: int, blocks) -> wiring.Signature:
        """The ports of tile ``t`` of ``sched`` holding column blocks ``blocks``."""
        rep = sched.replicas[sched.tiles[t].replicas[0]]
        n_out = sum(c1 - c0 for _, (c0, c1) in blocks)
        return wiring.Signature({
            "en": In(1), "go": In(1), "pro_go": In(1), "y": In(range(max(2, sched.out_shape[1]))),
            "t": In(range(max(2, rep.row_steps + 1))), "act": In(1), "rd": In(read_port_signature(sched.fm)),
            "z_in": In(sched.a_bits), "fetch_done": Out(1), "fetch_done_next": Out(1),
            "pe_go": In(1), "pe_go_next": In(1), "acc_done": Out(1),
            "prog": In(stream.Signature(prog_layout(chip.crossbar, prog_xbars))),
            "acc": Out(signed(acc_bits(sched, chip.crossbar.dot_bits))).array(n_out)})

    @staticmethod
    def module_name(datapath: str, lp, sched: LayerSchedule, t: int) -> str:
        """The Verilog module name of tile ``t`` of the datapath module ``datapath``: the tiles of
        a layer share it when they read the same words and hold PEs and blocks of the same form."""
        tlp, _, blocks = tile_plan(lp, sched, t)
        tile = sched.tiles[t]
        bidx = {b: i for i, b in enumerate(blocks)}
        pes = tuple(tuple((p.kpos, p.replica, p.rows, bidx[(p.replica, p.cols)]) for p in pls)
                    for pls in tlp.per_pe().values())
        key = repr((datapath, tile.replicas, tile.reads, tile.prologue_reads, pes,
                    tuple(c1 - c0 for _, (c0, c1) in blocks)))
        return f"pimgen_tile_{hashlib.sha1(key.encode()).hexdigest()[:10]}"

    def elaborate(self, platform):
        m = Module()
        sc, t, k, fm = self.sched, self.index, self.sched.k, self.sched.fm
        r = sc.tiles[t].replicas[0]
        m.submodules.dist = dist = InputDistributor(sc, r, self.z_in, tile=t)
        m.d.comb += [dist.go.eq(self.go), dist.pro_go.eq(self.pro_go), dist.y.eq(self.y), dist.t.eq(self.t),
                     dist.act.eq(self.act), self.fetch_done.eq(dist.done & dist.real),
                     self.fetch_done_next.eq(dist.real_next)]
        wiring.connect(m, wiring.flipped(self.rd), dist.rd)
        inputs = {(t, r, (i, j)): dist.grid[(i * k + j) * fm.pix_bits:(i * k + j + 1) * fm.pix_bits]
                  for i in range(k) for j in range(k)}
        xb = self.chip.crossbar
        m.submodules.pes = pes = PEArray(self.tlp, sc, xb, None, inputs, (self.prog, 0, self.prog_xbars))
        m.submodules.acc = acc = Accumulate(sc, pes.psums, xb.dot_bits)
        m.d.comb += [pes.go.eq(self.pe_go), pes.go_next.eq(self.pe_go_next), acc.go.eq(pes.done),
                     acc.take.eq(pes.take), self.acc_done.eq(acc.done), self.prog.ready.eq(1)]
        outs = [acc.acc[r_][c] for r_, (c0, c1) in self.blocks for c in range(c0, c1)]
        m.d.comb += [self.acc[n].eq(a) for n, a in enumerate(outs)]
        return EnableInserter(self.en)(m)


def post_operands(rq, a_bits: int) -> tuple[int, int, Const]:
    """``(centre, mul_in, M)`` of a requantizing post stage: ``acc + bias`` is centred and
    saturated to a power-of-two range that holds ``Requant.input_range`` (beyond it the output
    clamps anyway), so the multiplier is as narrow as the layer's scale allows (one DSP block
    on an FPGA, not two) and the clamp needs no comparator; the centre's product returns as a
    constant (``requant_tail(..., offset=centre * M)``)."""
    v_lo, v_hi = rq.input_range(a_bits)
    centre = (v_lo + v_hi) // 2
    mul_in = max(v_hi - centre, centre - v_lo).bit_length() + 1
    return centre, mul_in, Const(rq.m, unsigned(17)).as_signed()


def bias_offsets(bias, rq, a_bits: int) -> tuple[list[int], int]:
    """Each channel's ``bias - centre`` (:func:`post_operands`; ``bias`` itself for a raw layer,
    ``rq`` None) and the signed width that holds every one of them."""
    centre = 0 if rq is None else post_operands(rq, a_bits)[0]
    offs = [int(b) - centre for b in bias]
    return offs, max(2, max(o.bit_length() for o in offs) + 1)


class PostChannel(wiring.Component):
    """One output channel's post arithmetic (:class:`PostStage`), holding its state while
    ``en`` is low: ``acc + off`` (saturated to ``mul_in`` bits and times ``M``, then rounded,
    shifted, offset by ``z_out`` and clamped: :func:`hw.post.requant_tail`; or, raw, as
    ``a_out``-bit two's complement), through ``delays`` plain registers, into ``y`` on an
    enabled clock with ``last``.

    ``off`` is the channel's ``bias - centre`` (``bias`` for a raw layer), a port, so every
    channel of a layer is one module (:meth:`module_name`) whose constants are the layer's
    requantization and widths: a chip's Verilog grows with its layers, not with its channels.
    """

    def __init__(self, acc_bits: int, off_bits: int, a_out: int, a_bits: int, rq, delays: int):
        self.acc_bits, self.off_bits, self.a_out, self.a_bits = acc_bits, off_bits, a_out, a_bits
        self.rq, self.delays = rq, delays
        super().__init__(self.signature_of(acc_bits, off_bits, a_out))

    @staticmethod
    def signature_of(acc_bits: int, off_bits: int, a_out: int) -> wiring.Signature:
        """The ports of a channel with ``acc_bits`` accumulators, ``off_bits`` offsets and ``a_out`` outputs."""
        return wiring.Signature({"en": In(1), "last": In(1), "acc": In(signed(acc_bits)),
                                 "off": In(signed(off_bits)), "y": Out(a_out)})

    @staticmethod
    def module_name(*args) -> str:
        """The Verilog module name: the constructor's arguments (widths, requantization, delays)."""
        return f"pimgen_post_{hashlib.sha1(repr(args).encode()).hexdigest()[:10]}"

    def elaborate(self, platform):
        m = Module()
        v = self.acc + self.off
        if self.rq is None:
            v1 = Signal(signed(len(v)), name="pv")
            m.d.sync += v1.eq(v)
            v2 = Signal.like(v1, name="pp")
            m.d.sync += v2.eq(v1)
            val = sext(v2, self.a_out)
        else:
            centre, mul_in, m_const = post_operands(self.rq, self.a_bits)
            v1 = Signal(signed(mul_in), name="pv")
            m.d.sync += v1.eq(saturate(v, mul_in))
            prod = v1 * m_const
            v2 = Signal(signed(len(prod)), name="pp")
            m.d.sync += v2.eq(prod)
            val = requant_tail(v2, self.rq, self.a_bits, offset=centre * self.rq.m)   # round, shift, + z_out, clamp
        for i in range(self.delays):     # delay registers up to the schedule's count
            q = Signal(self.a_out, name=f"pd{i}")
            m.d.sync += q.eq(val)
            val = q
        with m.If(self.last):
            m.d.sync += self.y.eq(val)
        return EnableInserter(self.en)(m)


class PostStage(Elaboratable):
    """Bias + requantization + ReLU clamp of every accumulator (DESIGN.md §3), or
    ``acc + bias`` as ``a_out``-bit two's complement for a raw layer, over
    ``timing.POST_CLOCKS`` registers: ``acc + bias``, ``* M``, round/shift/clamp, then plain
    delay registers up to the schedule's count. ``y[replica][output]``, ``done`` after.
    Each output is a :class:`PostChannel`, one module per layer (``hw.blackbox``) whose
    instances differ in their ``off`` (the channel's bias) alone.

    ``en``: the engine's global enable, which reaches into the channel modules as a port
    (an ``EnableInserter`` stops at a black box).

    ``target`` (the emulation build, a requantizing layer: ``(tick, the layer's ok)``): one
    :class:`hw.decoupled.SerialPost` computes every ``y`` with one multiplier, one output per
    host clock, while the target clock stands on the stage's last clock, and registers them on
    that edge, as the parallel units do. The accumulators it reads have not changed since the
    stage began (they change once per MVM, which is longer than the stage)."""

    def __init__(self, sched: LayerSchedule, acc: list, params: WeightParams, target=None):
        if timing.POST_CLOCKS < _POST_REGISTERS:
            raise ValueError(f"gen.timing.POST_CLOCKS = {timing.POST_CLOCKS}: the post arithmetic needs "
                             f"{_POST_REGISTERS} registers")
        if target is not None and sched.stages["mvm"] < sched.stages["post"]:
            raise ValueError(f"a serial post stage reads the accumulators on its last clock: the MVM "
                             f"({sched.stages['mvm']} clocks) must outlast it ({sched.stages['post']})")
        self.sched, self.acc, self.params, self.target = sched, acc, params, target
        self.go = Signal()
        self.en = Signal()
        self.done = Signal()
        self.y = [[Signal(sched.a_out, name=f"y_r{r}_{c}") for c in range(sched.cout)]
                  for r in range(len(sched.replicas))]

    def elaborate(self, platform):
        m = Module()
        sc = self.sched
        n = sc.stages["post"]
        st = StageTimer(m, self.go, n, "post")
        m.d.comb += self.done.eq(st.done)
        if self.target is not None and not sc.raw:
            return self._serial(m, st)
        rq = None if sc.raw else self.params.requant
        offs, off_bits = bias_offsets(self.params.bias_or_zeros, rq, sc.a_bits)
        args = (len(self.acc[0][0]), off_bits, sc.a_out, sc.a_bits, rq, n - _POST_REGISTERS)
        sig = PostChannel.signature_of(*args[:2], sc.a_out)
        for r, accs in enumerate(self.acc):
            for c, acc in enumerate(accs):
                if self.target is None:
                    ch = instantiate(m, f"ch_r{r}_{c}", PostChannel.module_name(*args), sig, lambda: PostChannel(*args))
                else:   # the emulation build's target-clock enable reaches no black box
                    m.submodules[f"ch_r{r}_{c}"] = ch = PostChannel(*args)
                m.d.comb += [ch.en.eq(self.en), ch.last.eq(st.last), ch.acc.eq(acc),
                             ch.off.eq(Const(offs[c], signed(off_bits))), self.y[r][c].eq(ch.y)]
        return m

    def _serial(self, m, st):
        from hw.decoupled import SerialPost
        sc, tick, ok = self.sched, *self.target
        accs = [a for row in self.acc for a in row]
        bias = [int(b) for b in self.params.bias_or_zeros] * len(self.acc)
        args = (len(accs[0]), sc.a_bits, tuple(bias), self.params.requant)
        sp = instantiate(m, "serial", SerialPost.module_name(*args), SerialPost.signature_of(*args),
                         lambda: SerialPost(*args))
        m.d.comb += [sp.take.eq(st.last), sp.tick.eq(tick), ok.eq(sp.ok),
                     *(sp.acc[i].eq(a) for i, a in enumerate(accs)),
                     *(y.eq(sp.y[i]) for i, y in enumerate(y for row in self.y for y in row))]
        return m


class OutputStage(Elaboratable):
    """Tile ``t``'s ``gbus_out`` stage: the values of its column blocks (``tile.out_cols``,
    in that order) as ``out_words`` words of ``G`` bits, one per clock, written
    (``we``/``data``) when any of its replicas has a pixel."""

    def __init__(self, sched: LayerSchedule, t: int, y: list):
        self.sched, self.tile, self.y = sched, sched.tiles[t], y
        self.go = Signal()
        self.done = Signal()
        self.reset = Signal()
        self.we = Signal(name=f"out_we{t}")
        self.data = Signal(sched.bus_bits, name=f"out_data{t}")

    def elaborate(self, platform):
        m = Module()
        sc, tile = self.sched, self.tile
        G = sc.bus_bits
        st = StageTimer(m, self.go, sc.stages["gbus_out"], "out")
        m.d.comb += self.done.eq(st.done)
        vec = Cat(*[self.y[r][c] for r, c0, c1 in tile.out_cols for c in range(c0, c1)])
        words = [vec[q * G:(q + 1) * G] for q in range(tile.out_words)]
        # output step counter: which of the tile's replicas still has a pixel
        j = Signal(range(sc.out_steps + 2))
        with m.If(self.reset):
            m.d.sync += j.eq(0)
        with m.Elif(st.go):
            m.d.sync += j.eq(j + 1)
        has = Signal()
        has_l = Signal()
        any_px = 0
        for r in tile.replicas:
            any_px = any_px | (j < sc.replicas[r].out_steps)
        with m.If(st.go):
            m.d.comb += has.eq(any_px)
            m.d.sync += has_l.eq(any_px)
        with m.Else():
            m.d.comb += has.eq(has_l)
        with m.If(st.run):
            for q in range(tile.out_words):
                with m.If(st.idx == q):
                    m.d.comb += [self.data.eq(words[q]), self.we.eq(has)]
        return m


class _Core(Elaboratable):
    """The datapath's logic (:class:`EngineDatapath`), under the engine's global enable."""

    def __init__(self, lp, chip: ChipConfig, sched: LayerSchedule, params: WeightParams | None, banks: int, prog,
                 z_in, target, en):
        self.lp, self.chip, self.sched, self.params, self.banks, self.prog = lp, chip, sched, params, banks, prog
        self.z_in, self.target, self.en = z_in, target, en
        fm = sched.fm
        self.start_ok = Signal(init=1)
        self.started = Signal()
        self.released = Signal()
        self.in_valid = Signal()
        self.in_payload = Signal(fm.word_bits)
        self.in_ready = Signal()
        self.busy = Signal()
        self.done = Signal()
        self.cycles = Signal(32)
        self.fm_reads = Signal(32)
        self.finishing = Signal()
        self.last_done = Signal()
        self.acc_done = Signal()
        bits = acc_bits(sched, chip.crossbar.dot_bits)
        self.acc = [[Signal(signed(bits), name=f"acc{r}_{c}") for c in range(sched.cout)]
                    for r in range(len(sched.replicas))]

    def elaborate(self, platform):
        m = Module()
        sc = self.sched
        k = sc.k
        fm = sc.fm

        # --- feature-map buffer and controller ------------------------------------------
        # the emulation build's target-clock enable must reach the memory: no shared macros there
        fmb = FeatureMapBuffer(fm, n_read=len(sc.tiles), banks=self.banks, shared=self.target is None)
        m.submodules.fmbuf = fmb
        m.d.comb += fmb.ce.eq(self.en)
        m.submodules.ctrl = ctrl = LayerController(sc, banks=self.banks)
        beat = self.in_valid & ctrl.loading
        m.d.comb += [fmb.wr_bank.eq(ctrl.wr_bank), fmb.rd_bank.eq(ctrl.rd_bank), ctrl.start_ok.eq(self.start_ok),
                     self.started.eq(ctrl.started), self.released.eq(ctrl.released)]
        m.d.comb += [self.in_ready.eq(ctrl.loading), ctrl.load_beat.eq(beat), fmb.w.valid.eq(beat),
                     fmb.w.payload.eq(self.in_payload), self.busy.eq(ctrl.busy), self.done.eq(ctrl.done),
                     self.cycles.eq(ctrl.cycles), self.fm_reads.eq(fmb.reads),
                     self.finishing.eq(ctrl.finishing), ctrl.last_done.eq(self.last_done)]
        if sc.prologue:
            pro = StageTimer(m, ctrl.pro_go, sc.prologue, "prologue")
            m.d.comb += ctrl.pro_done.eq(pro.done)

        # --- per-replica step positions (advance with every step) ------------------------
        pos = []
        for rep in sc.replicas:
            r = rep.index
            y0, _, x0, _ = rep.region
            py = Signal(range(max(2, sc.out_shape[1] + 1)), name=f"py{r}", init=y0)
            pc = Signal(range(max(2, rep.row_steps + 1)), name=f"pc{r}")
            with m.If(ctrl.finishing):         # the image's last step has left: start over
                m.d.sync += [py.eq(y0), pc.eq(0)]
            with m.Elif(ctrl.step_go):
                with m.If(pc == rep.row_steps - 1):
                    m.d.sync += [pc.eq(0), py.eq(py + 1)]
                with m.Else():
                    m.d.sync += pc.eq(pc + 1)
            pos.append((py, pc, ctrl.step < rep.steps, x0))

        # --- tiles as modules (EngineTile): fetch, PEs, adder trees ---------------------------
        if self.prog is not None and self.target is None and all(
                tile_plan(self.lp, sc, t) is not None for t in range(len(sc.tiles))):
            return self._tiles(m, ctrl, fmb, pos)

        # --- fetch stage, one per tile ------------------------------------------------------
        fetch_done = fetch_done_next = None     # done, and high the clock before it
        pe_inputs = {}                          # (replica, kpos or None) -> the PE input vector
        for t, tile in enumerate(sc.tiles):
            if sc.novel:
                r = tile.replicas[0]
                dist = InputDistributor(sc, r, self.z_in, tile=t)
                m.submodules[f"dist{t}"] = dist
                py, pc, act, _ = pos[r]
                m.d.comb += [dist.go.eq(ctrl.step_go), dist.pro_go.eq(ctrl.pro_go), dist.y.eq(py), dist.t.eq(pc),
                             dist.act.eq(act)]
                reader, done, done_next = dist, dist.done & dist.real, dist.real_next
                for i in range(k):
                    for j in range(k):
                        q = i * k + j
                        pe_inputs[(t, r, (i, j))] = dist.grid[q * fm.pix_bits:(q + 1) * fm.pix_bits]
            else:
                wg = WindowGenerator(sc, t, self.z_in)
                m.submodules[f"wgen{t}"] = wg
                m.d.comb += wg.go.eq(ctrl.step_go)
                for n, r in enumerate(tile.replicas):
                    py, pc, act, x0 = pos[r]
                    m.d.comb += [wg.pos[n].y.eq(py), wg.pos[n].x.eq(pc + x0), wg.pos[n].act.eq(act)]
                # tile bus: the window moves into the tile's PE-side register
                tb = StageTimer(m, wg.done, sc.stages["tbus_in"], f"tbus{t}")
                win = Signal(len(wg.window), name=f"win{t}")
                with m.If(tb.last):
                    m.d.sync += win.eq(wg.window)
                reader, done, done_next = wg, tb.done, tb.last
                wbits = k * k * fm.pix_bits
                for n, r in enumerate(tile.replicas):
                    pe_inputs[(t, r, None)] = win[n * wbits:(n + 1) * wbits]
            wiring.connect(m, fmb.rd[t], reader.rd)
            if fetch_done is None:
                fetch_done, fetch_done_next = done, done_next

        # --- PEs, adder trees ---------------------------------------------------------------
        xb = self.chip.crossbar
        m.submodules.pes = pes = PEArray(self.lp, sc, xb, self.params, pe_inputs, self.prog, self.target)
        m.d.comb += [pes.go.eq(fetch_done), pes.go_next.eq(fetch_done_next)]
        serial = None
        if self.target is not None:     # the emulation build sums the partial sums serially
            serial = (serial_sum_steps(self.lp, xb.outputs), pes.results, self.target.tick,
                      self.target.acc_ok[self.lp.name])
        m.submodules.acc = acc = Accumulate(sc, pes.psums, xb.dot_bits, serial)
        m.d.comb += [acc.go.eq(pes.done), acc.take.eq(pes.take), self.acc_done.eq(acc.done)]
        m.d.comb += [dst.eq(src) for drow, srow in zip(self.acc, acc.acc) for dst, src in zip(drow, srow)]
        return m

    def _tiles(self, m, ctrl, fmb, pos):
        """Every tile one :class:`EngineTile` instance; the first tile's fetch starts them all."""
        sc, stream_, _, n_xbars = self.sched, *self.prog
        datapath = EngineDatapath.module_name(self.lp, self.chip, self.banks, n_xbars)
        first = None
        for t in range(len(sc.tiles)):
            _, base, blocks = tile_plan(self.lp, sc, t)
            tl = instantiate(m, f"tile{t}", EngineTile.module_name(datapath, self.lp, sc, t),
                             EngineTile.signature_of(sc, t, self.chip, n_xbars, blocks),
                             lambda: EngineTile(self.lp, self.chip, sc, t, n_xbars))
            py, pc, act, _ = pos[sc.tiles[t].replicas[0]]
            m.d.comb += [tl.en.eq(self.en), tl.go.eq(ctrl.step_go), tl.pro_go.eq(ctrl.pro_go), tl.y.eq(py),
                         tl.t.eq(pc), tl.act.eq(act), tl.z_in.eq(self.z_in),
                         # the tile numbers its crossbars from its first (wrapping, as the engine does)
                         tl.prog.valid.eq(stream_.valid), tl.prog.payload.eq(stream_.payload),
                         tl.prog.payload.xbar.eq(stream_.payload.xbar - base)]
            wiring.connect(m, fmb.rd[t], tl.rd)
            if first is None:
                first = tl
            m.d.comb += [tl.pe_go.eq(first.fetch_done), tl.pe_go_next.eq(first.fetch_done_next)]
            outs = [self.acc[r][c] for r, (c0, c1) in blocks for c in range(c0, c1)]
            m.d.comb += [dst.eq(tl.acc[n]) for n, dst in enumerate(outs)]
        m.d.comb += self.acc_done.eq(first.acc_done)
        return m


class EngineDatapath(wiring.Component):
    """A layer engine's feature-map buffer, controller, fetch stages, PEs and adder trees
    (everything before the post stage), holding its state while ``en`` is low.

    Nothing in it depends on the layer's name, its weights (programmed), its bias,
    requantization or ReLU (the post stage's), its input zero point (the ``z_in`` port pads the
    windows) or where on the chip its tiles sit, so a chip makes it one module per
    :meth:`module_name` (``hw.blackbox``): the layers of one shape mapped alike share it, and
    generating a network costs its distinct layer shapes, not its layers. ``lp`` is then
    :meth:`gen.mapping.LayerPlan.shape_only`.

    Ports: ``en``; ``in_valid``/``in_payload``/``in_ready`` (the input words, taken while
    ``in_valid & in_ready & en``); ``start_ok``, ``started``, ``released``, ``busy``, ``done``,
    ``cycles``, ``fm_reads`` as :class:`ConvLayerEngine`'s; ``prog`` (programmed: the
    programming stream, crossbars numbered from the layer's first); ``z_in``; ``acc``: the
    accumulators on one bus (:func:`acc_bus`), ``acc_done`` after them; ``finishing``
    (the image's last step has left) and ``last_done`` (the output stage's last ``done``)
    between the controller and the output stages.
    """

    def __init__(self, lp, chip: ChipConfig, banks: int, prog_xbars: int | None, params: WeightParams | None = None,
                 target=None, xbar_base: int = 0):
        self.lp, self.chip, self.banks, self.params, self.target = lp, chip, banks, params, target
        self.prog_xbars, self.xbar_base = prog_xbars, xbar_base
        self.sched = schedule_layer(lp, chip)
        super().__init__(self.signature_of(self.sched, chip, prog_xbars))

    @staticmethod
    def signature_of(sched: LayerSchedule, chip: ChipConfig, prog_xbars: int | None) -> wiring.Signature:
        """The ports of a datapath of ``sched`` (what :func:`hw.blackbox.instantiate` connects)."""
        ports = {"en": In(1), "in_valid": In(1), "in_payload": In(sched.fm.word_bits), "in_ready": Out(1),
                 "start_ok": In(1), "started": Out(1), "released": Out(1), "busy": Out(1), "done": Out(1),
                 "cycles": Out(32), "fm_reads": Out(32), "z_in": In(sched.a_bits),
                 "acc": Out(len(sched.replicas) * sched.cout * acc_bits(sched, chip.crossbar.dot_bits)),
                 "acc_done": Out(1), "finishing": Out(1), "last_done": In(1)}
        if prog_xbars is not None:
            ports["prog"] = In(stream.Signature(prog_layout(chip.crossbar, prog_xbars)))
        return wiring.Signature(ports)

    @staticmethod
    def module_name(lp, chip: ChipConfig, banks: int, prog_xbars: int) -> str:
        """The Verilog module name of a programmed datapath: its shape-only plan, the chip
        configuration, its input banks, the programming bus and the timing constants it is
        built from."""
        consts = sorted((k, v) for k, v in vars(timing).items() if k.isupper() and isinstance(v, int))
        key = repr((lp, sorted(chip.to_dict().items()), banks, prog_xbars, consts))
        return f"pimgen_engine_{hashlib.sha1(key.encode()).hexdigest()[:10]}"

    def elaborate(self, platform):
        m = Module()
        prog = None if self.prog_xbars is None else (self.prog, self.xbar_base, self.prog_xbars)
        core = _Core(self.lp, self.chip, self.sched, self.params, self.banks, prog, self.z_in, self.target, self.en)
        m.submodules.core = EnableInserter(self.en)(core)
        m.d.comb += [core.in_valid.eq(self.in_valid), core.in_payload.eq(self.in_payload),
                     self.in_ready.eq(core.in_ready), core.start_ok.eq(self.start_ok),
                     self.started.eq(core.started), self.released.eq(core.released), self.busy.eq(core.busy),
                     self.done.eq(core.done), self.cycles.eq(core.cycles), self.fm_reads.eq(core.fm_reads),
                     self.acc_done.eq(core.acc_done), self.finishing.eq(core.finishing),
                     core.last_done.eq(self.last_done)]
        if prog is not None:
            m.d.comb += self.prog.ready.eq(1)
        m.d.comb += self.acc.eq(Cat(*(a for row in core.acc for a in row)))
        return m


def acc_bus(sched: LayerSchedule, bus, bits: int) -> list:
    """The accumulators on ``bus`` (:class:`EngineDatapath`'s ``acc``): ``[replica][channel]``,
    ``bits``-bit signed each, replica-major from the lowest bits."""
    return [[bus[(r * sched.cout + c) * bits:(r * sched.cout + c + 1) * bits].as_signed() for c in range(sched.cout)]
            for r in range(len(sched.replicas))]


class EngineTail(wiring.Component):
    """A layer engine's post stage, output stages and output FIFOs: everything after the
    accumulators, holding its state while ``en`` is low. It holds the layer's constants
    (requantization, biases), so a chip makes it one module per layer (:meth:`module_name`,
    ``hw.blackbox``), and the per-channel wiring of a layer is written in that module, not in
    the chip's top level.

    Ports: ``en``; ``go`` (the accumulators are in: the datapath's ``acc_done``); ``acc`` (the
    datapath's accumulator bus, :func:`acc_bus`); ``finishing`` and ``last_done`` (between the
    datapath's controller and the output stages); ``o[t]``: tile ``t``'s output stream, from a
    FIFO of :data:`OUT_FIFO_DEPTH` words; ``room``: every output FIFO can take a word (the
    engine's global enable).

    ``target`` (the emulation build): ``(tick, the layer's post ok)``, for :class:`PostStage`;
    its FIFOs and channels are then submodules of their own, which the target clock reaches."""

    def __init__(self, sched: LayerSchedule, chip: ChipConfig, params: WeightParams, target=None):
        self.sched, self.chip, self.params, self.target = sched, chip, params, target
        super().__init__(self.signature_of(sched, chip))

    @staticmethod
    def signature_of(sched: LayerSchedule, chip: ChipConfig) -> wiring.Signature:
        """The ports of the tail of ``sched``."""
        bits = acc_bits(sched, chip.crossbar.dot_bits)
        return wiring.Signature({"en": In(1), "go": In(1), "finishing": In(1), "last_done": Out(1),
                                 "acc": In(len(sched.replicas) * sched.cout * bits),
                                 "o": Out(stream.Signature(unsigned(sched.bus_bits))).array(len(sched.tiles)),
                                 "room": Out(1)})

    @staticmethod
    def module_name(lp, chip: ChipConfig, params: WeightParams) -> str:
        """The Verilog module name: the layer's plan, the chip, its requantization and biases
        and the timing constants."""
        consts = sorted((k, v) for k, v in vars(timing).items() if k.isupper() and isinstance(v, int))
        key = repr((lp, sorted(chip.to_dict().items()), params.requant, [int(b) for b in params.bias_or_zeros],
                    consts))
        return f"pimgen_tail_{hashlib.sha1(key.encode()).hexdigest()[:10]}"

    def elaborate(self, platform):
        m = Module()
        sc = self.sched
        core = Module()     # the stages, under the engine's enable
        post = PostStage(sc, acc_bus(sc, self.acc, acc_bits(sc, self.chip.crossbar.dot_bits)), self.params,
                         self.target)
        core.submodules.post = post
        core.d.comb += [post.go.eq(self.go), post.en.eq(self.en)]
        outs = []
        for t in range(len(sc.tiles)):
            out = OutputStage(sc, t, post.y)
            core.submodules[f"out{t}"] = out
            core.d.comb += out.go.eq(post.done)
            core.d.comb += out.reset.eq(self.finishing)
            outs.append(out)
        core.d.comb += self.last_done.eq(outs[0].done)
        m.submodules.stages = EnableInserter(self.en)(core)
        room = 1
        args = (sc.bus_bits, OUT_FIFO_DEPTH)
        for t, (o, out) in enumerate(zip(self.o, outs)):
            if self.target is None:     # one module for every output FIFO of the chip
                q = instantiate(m, f"ofifo{t}", StreamFIFO.module_name(*args), StreamFIFO.signature_of(*args),
                                lambda: StreamFIFO(*args))
            else:       # the emulation build's target-clock enable reaches no black box
                m.submodules[f"ofifo{t}"] = q = StreamFIFO(*args)
            m.d.comb += [q.i.payload.eq(out.data), q.i.valid.eq(out.we & self.en)]
            wiring.connect(m, q.o, wiring.flipped(o))
            room = room & q.i.ready
        m.d.comb += self.room.eq(room)
        return m


class ConvLayerEngine(wiring.Component):
    """One conv / linear layer as RTL, from its plan entry ``lp`` on ``chip``.

    Args:
        lp: a :class:`gen.mapping.LayerPlan` of a ``Conv2d`` or ``Linear`` layer whose
            schedule the engine accepts (``schedule_layer(lp, chip).engine_refusal()`` is None).
        chip: the :class:`gen.config.ChipConfig` of the plan.
        params: the layer's :class:`gen.params.WeightParams` (checked in ``gen``:
            ``params.check_for(layer, raw=...)``).
        chip_stage: ``None`` for a stand-alone engine (one input bank), or ``(first crossbar
            id, crossbars on the chip)`` for a stage of a chip: two input banks, crossbars
            programmed through ``prog``.
        programmed: a stand-alone engine's crossbars are programmed through ``prog`` too
            (ids ``0 ..``, in ``lp.placements`` order), so they are one shared module whatever
            the weights; otherwise the weights are the crossbars' initial contents.
        target: a chip stage's :class:`hw.decoupled.TargetClock` in the chip's emulation build
            (target-timed emulated crossbars), else ``None``.

    Ports:
        i: stream in, the input feature map, ``sched.load_words`` words of
           ``sched.fm.word_bits`` bits (``gen.schedule.FMLayout``).
        o: ``o[t]``, one output stream per tile, ``G``-bit words (module docstring).
        busy, done: an image is in flight / pulse when its last step has left the engine.
        cycles: clocks of the current/last image (first input word .. done).
        fm_reads: feature-map buffer words read since reset (all read ports).
        prog (chip stage or ``programmed``): the programming stream (``hw.pe.prog_layout``).
        start_ok, started, released (chip stage): may-start (the consumer has a free bank), and
           pulses when an image starts and when its input bank is free again.
    """

    def __init__(self, lp, chip: ChipConfig, params: WeightParams, chip_stage: tuple[int, int] | None = None, *,
                 programmed: bool = False, target=None):
        self.lp, self.chip, self.params, self.chip_stage = lp, chip, params, chip_stage
        self.target = target
        self.xbars = chip_stage or ((0, len(lp.placements)) if programmed else None)
        self.sched = sched = schedule_layer(lp, chip)
        ports = {"i": In(stream.Signature(unsigned(sched.fm.word_bits))),
                 "o": Out(stream.Signature(unsigned(sched.bus_bits))).array(len(sched.tiles)),
                 "busy": Out(1), "done": Out(1), "cycles": Out(32), "fm_reads": Out(32)}
        if self.xbars is not None:
            ports["prog"] = In(stream.Signature(prog_layout(chip.crossbar, self.xbars[1])))
        if chip_stage is not None:
            ports.update({"start_ok": In(1), "started": Out(1), "released": Out(1)})
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        sc = self.sched
        staged = self.chip_stage is not None
        banks = 2 if staged else 1
        prog_xbars = None if self.xbars is None else self.xbars[1]
        if staged and self.target is None:      # a chip's stage: one module per layer shape
            lp = self.lp.shape_only()
            dp = instantiate(m, "datapath", EngineDatapath.module_name(lp, self.chip, banks, prog_xbars),
                             EngineDatapath.signature_of(sc, self.chip, prog_xbars),
                             lambda: EngineDatapath(lp, self.chip, banks, prog_xbars))
        else:
            dp = EngineDatapath(self.lp, self.chip, banks, prog_xbars, self.params, self.target,
                                0 if self.xbars is None else self.xbars[0])
            m.submodules.datapath = dp
        if staged and self.target is None:      # a chip's stage: the layer's constants in a module of its own
            tl = instantiate(m, "tail", EngineTail.module_name(self.lp, self.chip, self.params),
                             EngineTail.signature_of(sc, self.chip), lambda: EngineTail(sc, self.chip, self.params))
        else:
            tl = EngineTail(sc, self.chip, self.params,
                            None if self.target is None else (self.target.tick, self.target.post_ok[self.lp.name]))
            m.submodules.tail = tl
        en = Signal()
        m.d.comb += [dp.en.eq(en), tl.en.eq(en), dp.z_in.eq(self.params.z_in), tl.go.eq(dp.acc_done),
                     tl.acc.eq(dp.acc), tl.finishing.eq(dp.finishing), dp.last_done.eq(tl.last_done)]
        for t, o in enumerate(self.o):
            wiring.connect(m, tl.o[t], wiring.flipped(o))
        m.d.comb += [en.eq(tl.room),
                     dp.in_valid.eq(self.i.valid), dp.in_payload.eq(self.i.payload),
                     self.i.ready.eq(dp.in_ready & en),
                     self.busy.eq(dp.busy), self.done.eq(dp.done), self.cycles.eq(dp.cycles),
                     self.fm_reads.eq(dp.fm_reads)]
        if self.xbars is not None:
            # the datapath numbers its crossbars from the layer's first (wrapping: a beat for
            # another layer's crossbar reads as a number past the layer's last)
            m.d.comb += [dp.prog.valid.eq(self.prog.valid), dp.prog.payload.eq(self.prog.payload),
                         dp.prog.payload.xbar.eq(self.prog.payload.xbar - self.xbars[0]),
                         self.prog.ready.eq(1)]
        if staged:
            # pulses count once even while a full output FIFO holds the engine
            m.d.comb += [dp.start_ok.eq(self.start_ok),
                         self.started.eq(dp.started & en), self.released.eq(dp.released & en)]
        else:
            m.d.comb += dp.start_ok.eq(1)
        return m
