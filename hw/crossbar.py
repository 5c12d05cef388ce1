"""Behavioral RRAM crossbar: cell array, bit-serial DAC, shared ADCs, shift-add, offset correction.

The arithmetic is DESIGN.md §3, the same as ``sim.golden.crossbar_mvm``:

* cells hold the offset-binary slices of the weights (``u = w + 2**(w_bits-1)``, which
  for two's complement is ``w`` with its sign bit flipped), LSB slice first, one column
  per slice; the last column is the reference column, every cell at level 1. A cell is
  ``g_bits = cell_bits + g_frac_bits`` wide and holds a conductance ``g`` in units of
  ``2**-g_frac_bits`` of a level (an ideal cell ``level << g_frac_bits``; a device model's
  map comes in as initial contents, ``gen.cells.CellArray.from_conductances``);
* an MVM applies the input bit-serially, ``dac_bits`` per input cycle, LSB first;
* ``cols_per_adc`` columns share one ADC and are converted one after another, so an
  input cycle takes ``cols_per_adc`` clocks and all ADCs work in parallel;
* the ADC drops the ``g_frac_bits`` fraction with the coarse step: ``S >> (F + adc_shift)``;
* each converted value ``q`` is shifted into its output's accumulator
  (``<< t*dac_bits + k*cell_bits``), the reference column into its own, and the result
  is ``acc - 2**(w_bits-1) * acc_ref``.

Accumulating per output rather than per column is the same sum in another order
(integer addition, no rounding), so the result is bit-exact to the per-column
shift-add of the spec while needing ``outputs + 1`` accumulators instead of ``cols``.

Timing (``gen.timing.crossbar_latency``): accept on edge 0; one conversion per ADC on each
of the ``conversion_clocks`` clocks that follow, each passing ``CROSSBAR_PIPELINE_CLOCKS``
registers (products, partial sums, ADC code, shifted term, accumulator); the result is
offered from then on and the next input is taken on the edge it is handed over.

The pipeline is built from ``gen.timing.CROSSBAR_PIPELINE_CLOCKS`` (read at elaboration):
:data:`MIN_PIPELINE_CLOCKS` registers are structural, and every clock the constant adds
beyond them becomes one more register stage on the ADC codes (an ADC with a longer
conversion latency), with the tag and the sequencing following. A constant below the
structural minimum is refused at elaboration.
"""
from __future__ import annotations

import hashlib

from amaranth.hdl import Const, Module, Mux, Signal, unsigned, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from gen import timing
from gen.cells import CellArray, encode_row
from gen.config import CrossbarConfig

#: Rows summed per registered partial sum in the column adder tree.
PARTIAL_ROWS = 8

#: The crossbar's structural pipeline registers: products, partial row sums, ADC code,
#: routed/shifted term, accumulator. ``gen.timing.CROSSBAR_PIPELINE_CLOCKS`` must be at
#: least this; any clocks above it are extra registers on the ADC codes.
MIN_PIPELINE_CLOCKS = 5

# ``encode_row`` is re-exported: the cell encoding's home is ``gen.cells``.
__all__ = ["Crossbar", "crossbar_handshake", "crossbar_signature_layouts", "encode_row", "tree_sum"]


def crossbar_signature_layouts(cfg: CrossbarConfig):
    """Payload layouts of the crossbar's three streams: ``(input, output, write)``."""
    x = data.ArrayLayout(unsigned(cfg.a_bits), cfg.rows)
    y = data.ArrayLayout(signed(cfg.dot_bits), cfg.outputs)
    w = data.StructLayout({
        "row": unsigned(max(1, ceil_log2(cfg.rows))),
        "cells": data.ArrayLayout(unsigned(cfg.g_bits), cfg.cols),
    })
    return x, y, w


def crossbar_handshake(m: Module, xb: wiring.Component, idle, done, w_ready=None):
    """The stream rules every crossbar kind shares: a row write is taken only while ``idle``
    (and ``w_ready``, default ``idle``), ahead of a waiting input; an input is taken while
    idle or on the edge the waiting result (``done``) is handed over. Returns the
    input-accept condition."""
    m.d.comb += [
        xb.busy.eq(~idle),
        xb.w.ready.eq(idle if w_ready is None else w_ready),
        xb.i.ready.eq((idle & ~xb.w.valid) | (done & xb.o.ready)),
        xb.o.valid.eq(done),
    ]
    return xb.i.valid & xb.i.ready


def tree_sum(values, m=None, name=None):
    """Sum of ``values`` as a balanced adder tree (shorter carry paths than a chain); the
    sum is exact, Amaranth widening each addition.

    Given a module ``m`` and a ``name``, each two-input sum is a ``keep`` wire of its own
    (``{name}_{level}_{i}``, as wide as it needs): left to itself Yosys merges a many-input
    sum into one carry-save multi-operand adder in LUTs, about twice the logic of the
    carry-chain adders on an FPGA."""
    values, level = list(values), 0
    while len(values) > 1:
        nxt = []
        for i in range(0, len(values) - 1, 2):
            total = values[i] + values[i + 1]
            if m is not None:
                s = Signal(signed(len(total)), name=f"{name}_{level}_{i // 2}", attrs={"keep": 1})
                m.d.comb += s.eq(total)
                total = s
            nxt.append(total)
        if len(values) % 2:
            nxt.append(values[-1])
        values, level = nxt, level + 1
    return values[0]


class Crossbar(wiring.Component):
    """One RRAM crossbar with its periphery, generated from a :class:`CrossbarConfig`.

    Ports:
        i: stream in, one input vector of ``rows`` unsigned activations.
        o: stream out, the ``outputs`` signed dot products (``dot_bits`` wide each).
        w: stream in, programs one row: ``row`` and its ``cells[cols]`` conductances
           (``gen.cells.pack_row``: ideal cells ``level << g_frac_bits``, or a device model's
           map, reference column included); taken only while the crossbar is idle, ahead of a
           waiting input. The cells keep what was written through a reset, as RRAM does.
        busy: high while an MVM is in flight or its result is waiting.

    Args:
        cfg: the crossbar configuration.
        weights: the initial cell contents, a :class:`gen.cells.CellArray` (validated in
            ``gen``; ``CellArray.from_conductances`` for non-ideal cells), or a weight block ``[n_rows <= rows, n_out <= outputs]`` that
            ``gen.cells.CellArray.from_weights`` encodes (missing rows and outputs hold
            ``w = 0``); ``None`` means all zero. The component checks nothing itself:
            a block that does not fit is refused by ``gen.cells``.
    """

    def __init__(self, cfg: CrossbarConfig, weights=None):
        self.cfg = cfg
        cells = weights if isinstance(weights, CellArray) else CellArray.from_weights(weights, cfg)
        self.init_rows = list(cells.rows)
        super().__init__(self.signature_of(cfg))

    @staticmethod
    def module_name(cfg: CrossbarConfig) -> str:
        """The Verilog module name of an all-zero-weight crossbar of ``cfg`` (weights come
        through ``w``): its configuration and pipeline depth (``hw.blackbox``)."""
        key = repr((sorted(cfg.to_dict().items()), timing.CROSSBAR_PIPELINE_CLOCKS))
        return f"pimgen_crossbar_{hashlib.sha1(key.encode()).hexdigest()[:10]}"

    @staticmethod
    def signature_of(cfg: CrossbarConfig) -> wiring.Signature:
        """The ports of a crossbar of ``cfg`` (what :func:`hw.blackbox.instantiate` connects)."""
        x_layout, y_layout, w_layout = crossbar_signature_layouts(cfg)
        return wiring.Signature({"i": In(stream.Signature(x_layout)), "o": Out(stream.Signature(y_layout)),
                                 "w": In(stream.Signature(w_layout)), "busy": Out(1)})

    def elaborate(self, platform):
        cfg = self.cfg
        cb, cpa, n_steps = cfg.cell_bits, cfg.cols_per_adc, cfg.conversion_clocks
        gb, F = cfg.g_bits, cfg.g_frac_bits          # a cell's width and its fraction bits
        depth = timing.CROSSBAR_PIPELINE_CLOCKS     # read now, so the RTL follows the constant
        if depth < MIN_PIPELINE_CLOCKS:
            raise ValueError(
                f"gen.timing.CROSSBAR_PIPELINE_CLOCKS={depth} is below the crossbar's "
                f"{MIN_PIPELINE_CLOCKS} structural pipeline registers")
        adc_delay = depth - MIN_PIPELINE_CLOCKS     # extra registers on the ADC codes
        m = Module()

        # --- cell array: a memory of one word per row, g_bits per column, every row read at
        # once (the analog array sums all rows). A memory rather than a register per row: a row
        # write is one addressed store, where registers need a write multiplexer per row that
        # a simulator evaluates on every clock; and, like RRAM, the cells keep what was
        # written through a reset.
        m.submodules.cells = mem = Memory(shape=unsigned(cfg.cols * gb), depth=cfg.rows, init=self.init_rows)
        cells = []
        for r in range(cfg.rows):
            rp = mem.read_port(domain="comb")
            m.d.comb += rp.addr.eq(r)
            cells.append(rp.data)
        wp = mem.write_port()

        # --- control -------------------------------------------------------------------
        running = Signal()            # conversions and their pipeline in flight
        done = Signal()               # result waiting on `o`
        # Only the control flags above carry a reset. The position, the input and every
        # datapath register below are loaded before they are used (on `accept`, or under a
        # valid tag), so a reset would only put a multiplexer in front of each of them, which
        # costs LUTs on an FPGA and time in a simulator that evaluates it on every clock.
        step = Signal(range(n_steps + depth), reset_less=True)
        # Column within each ADC's group. With one ADC per column (cols_per_adc == 1) there is
        # no multiplexer and no such signal: a zero-width select would make `m.Switch` below
        # switch on a 0-bit value, whose only `Case` the RTLIL -> Verilog path (Yosys `proc`)
        # drops while Amaranth's simulator keeps it -- every term would read as 0 in Verilog.
        mux = Signal(range(cpa), reset_less=True) if cpa > 1 else None
        shift = Signal(range(cfg.a_bits + 1), reset_less=True)  # t * dac_bits of the current input cycle
        x = Signal(cfg.rows * cfg.a_bits, reset_less=True)      # input vector, shifted right each input cycle

        accept = crossbar_handshake(m, self, ~running & ~done, done)

        # --- programming: one row's conductances, as gen.cells encodes them ---------------
        m.d.comb += [wp.addr.eq(self.w.payload.row), wp.data.eq(self.w.payload.cells.as_value()),
                     wp.en.eq(self.w.valid & self.w.ready)]

        # --- analog part, pipelined ------------------------------------------------------
        # One column per ADC per clock, in `depth` registered stages so that the column
        # multiplexer, the row adder tree and the shift-add each get a clock of their own:
        #   1 products x_t[r] * level[r][c]     2 partial sums of PARTIAL_ROWS rows
        #   3 ADC code (sum, shift, saturate)   4 code routed and shifted to its output
        #   5 accumulate
        # plus `adc_delay` registers on the codes between 3 and 4 when `depth` asks for more.
        # The step's position (valid, shift, mux) travels alongside as a tag: tag[i] belongs to
        # the data leaving stage i + 1, so stage 4 reads tag[depth - 3] and stage 5 tag[depth - 2].
        # Each stage's registers load only when the data entering it is valid (`head` for stage
        # 1, tag[k - 2] for stage k): between MVMs an idle crossbar's products, sums and codes
        # hold still, as an idle array's columns carry no current and its ADCs convert nothing,
        # and a simulator skips their arithmetic.
        xt = [x.word_select(r, cfg.a_bits)[:cfg.dac_bits] for r in range(cfg.rows)]
        head = [running & (step < n_steps), shift] + ([mux] if mux is not None else [])
        tag = []
        for i in range(depth - 1):
            regs = [Signal(name=f"v{i}"), Signal.like(shift, name=f"sh{i}")]
            if mux is not None:
                regs.append(Signal.like(mux, name=f"mux{i}"))
            m.d.sync += [dst.eq(src) for dst, src in zip(regs, tag[-1] if tag else head)]
            tag.append(regs)

        groups = [range(g, min(cfg.rows, g + PARTIAL_ROWS)) for g in range(0, cfg.rows, PARTIAL_ROWS)]
        q_reg = []
        for a in range(cfg.num_adcs):
            lo, hi = a * cpa * gb, min(cfg.cols, (a + 1) * cpa) * gb
            prods = []
            for r in range(cfg.rows):
                g = cells[r][lo:hi]
                cell = g.word_select(mux, gb) if len(g) > gb else g       # (cpa == 1: always)
                p = Signal(cfg.dac_bits + gb, name=f"p{a}_{r}", reset_less=True)
                with m.If(head[0]):
                    m.d.sync += p.eq(xt[r] * cell)                               # stage 1
                prods.append(p)
            parts = []
            for gi, rows in enumerate(groups):
                ps = Signal(range(len(rows) * cfg.max_dac * cfg.g_max + 1), name=f"ps{a}_{gi}", reset_less=True)
                with m.If(tag[0][0]):
                    m.d.sync += ps.eq(tree_sum(prods[r] for r in rows))         # stage 2
                parts.append(ps)
            coarse = tree_sum(parts) >> (F + cfg.adc_shift)
            if cfg.column_sum_max >> (F + cfg.adc_shift) > cfg.adc_max_code:
                code = Mux(coarse > cfg.adc_max_code, cfg.adc_max_code, coarse)
            else:
                code = coarse   # the ADC cannot saturate: no comparator
            q = Signal(cfg.adc_out_bits, name=f"q{a}", reset_less=True)
            with m.If(tag[1][0]):
                m.d.sync += q.eq((code << cfg.adc_shift)[:cfg.adc_out_bits])    # stage 3
            for d in range(adc_delay):                                           # stage 3 + d + 1
                qd = Signal.like(q, name=f"q{a}_d{d + 1}")
                with m.If(tag[2 + d][0]):
                    m.d.sync += qd.eq(q)
                q = qd
            q_reg.append(q)

        # --- shift-add: route each code to its output, shift, accumulate -------------------
        acc_bits = cfg.dot_max.bit_length()
        acc = [Signal(acc_bits, name=f"acc{o}", reset_less=True) for o in range(cfg.outputs)]
        term = [Signal(acc_bits, name=f"term{o}", reset_less=True) for o in range(cfg.outputs)]
        # the reference column's cells may read anything a device model gives them (up to g_max)
        ref_bits = cfg.column_acc_max.bit_length()
        acc_ref = Signal(ref_bits, name="acc_ref", reset_less=True)
        term_ref = Signal(ref_bits, name="term_ref", reset_less=True)
        terms = {o: {mm: [] for mm in range(cpa)} for o in range(cfg.outputs)}
        ref_terms = {mm: [] for mm in range(cpa)}
        for a in range(cfg.num_adcs):
            for mm in range(cpa):
                c = a * cpa + mm
                if c == cfg.ref_col:
                    ref_terms[mm].append(q_reg[a])
                elif c < cfg.outputs * cfg.slices:
                    terms[c // cfg.slices][mm].append(q_reg[a] << ((c % cfg.slices) * cb))
        tag_route, tag_acc = tag[depth - 3], tag[depth - 2]
        sh_route = tag_route[1]

        def route(mm):
            """Stage 4 for column ``mm`` of every ADC group: each code to its output, shifted."""
            return ([term[o].eq(tree_sum(terms[o][mm]) << sh_route if terms[o][mm] else 0) for o in range(cfg.outputs)]
                    + [term_ref.eq(ref_terms[mm][0] << sh_route if ref_terms[mm] else 0)])

        with m.If(tag_route[0]):                                                # stage 4
            if mux is None:
                m.d.sync += route(0)    # one ADC per column: the routing is fixed
            else:
                with m.Switch(tag_route[2]):
                    for mm in range(cpa):
                        with m.Case(mm):
                            m.d.sync += route(mm)
                    with m.Default():
                        m.d.sync += [t.eq(0) for t in term] + [term_ref.eq(0)]
        with m.If(accept):                                                      # stage 5
            m.d.sync += [ac.eq(0) for ac in acc] + [acc_ref.eq(0)]
        with m.Elif(tag_acc[0]):
            m.d.sync += [ac.eq(ac + t) for ac, t in zip(acc, term)] + [acc_ref.eq(acc_ref + term_ref)]

        for o in range(cfg.outputs):
            m.d.comb += self.o.payload[o].eq(acc[o] - (acc_ref << (cfg.w_bits - 1)))

        # --- sequencing -------------------------------------------------------------------
        with m.If(accept):
            m.d.sync += [x.eq(self.i.payload.as_value()), running.eq(1), done.eq(0),
                         step.eq(0), shift.eq(0)]
            if mux is not None:
                m.d.sync += mux.eq(0)
        with m.Elif(running):
            with m.If(step == n_steps + depth - 2):
                # the last conversion's term is accumulated on this edge
                m.d.sync += [running.eq(0), done.eq(1)]
            with m.Else():
                m.d.sync += step.eq(step + 1)
                # the next input cycle starts after the group's last column
                with m.If(mux == cpa - 1 if mux is not None else Const(1)):
                    m.d.sync += shift.eq(shift + cfg.dac_bits)
                    m.d.sync += [x.word_select(r, cfg.a_bits).eq(x.word_select(r, cfg.a_bits) >> cfg.dac_bits)
                                 for r in range(cfg.rows)]
                    if mux is not None:
                        m.d.sync += mux.eq(0)
                if mux is not None:
                    with m.Else():
                        m.d.sync += mux.eq(mux + 1)
        with m.Elif(done & self.o.ready):
            m.d.sync += done.eq(0)
        return m
