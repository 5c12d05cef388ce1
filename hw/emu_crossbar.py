"""FPGA-emulated RRAM crossbar: the cells in block RAM, column sums over several host clocks.

A drop-in for :class:`hw.crossbar.Crossbar` (the same ports, :meth:`Crossbar.signature_of`,
and the same DESIGN.md §3 arithmetic, bit for bit) whose cell array is an
``amaranth.lib.memory.Memory`` instead of flip-flops, laid out column-major as
:mod:`gen.emulation` describes: one word = ``rows_per_word`` cells of one column.

An MVM reads the stored words one per clock, reference column first, then the data
columns in order, each column's words (row groups) one after another, once per pass
(``parallel_cycles``). From each word it forms the partial column sum of the pass's input
cycles at once (one pass of all of them by default) (``x_t[r] · level[r][c]`` summed
over the word's rows, ``t = 0 .. input_cycles − 1``), adds the partial sums of the column's
words, and converts each input cycle's full column sum with the ADC
(``min(S >> adc_shift, 2**adc_bits − 1) << adc_shift``) -- the same per-column, per-input-cycle
conversion as a shared ADC makes, only in another order (integer sums, so the result is the
same). The shift-add follows: ``P[c] = Σ_t q_t[c] << t·dac_bits``, the reference column's
``P`` is kept, and each output is ``Σ_k P[o·slices + k] << k·cell_bits − 2**(w_bits−1)·P[ref]``,
accumulated slice by slice and shifted into the result registers (a bank: written into a small
result memory, read one result at a time).

Timing (``gen.timing.emulated_crossbar_host_clocks``): accept on edge 0, reads on the
``reads`` clocks that follow, ``EMU_PIPELINE_CLOCKS`` more to the edge the result is taken;
the next input is taken on the edge this one is handed over, as with the flip-flop crossbar.

A bank (``n_xbars > 1``, the chip's emulation build, ``hw.decoupled``) holds several
crossbars' cells in one memory, crossbar after crossbar, and runs their MVMs one after the
other through the one datapath: ``n_xbars`` times the reads, results in crossbar order. Its
inputs are held by the parent (``held``) rather than latched here, and its results stay in a
memory the parent reads one at a time (``o_addr``, :func:`bank_signature`; LUT RAM on an
FPGA), since ``hw.decoupled.SerialAccumulate`` sums them one output at a time.

Programming (``w``, one row's conductances as for the flip-flop crossbar): column-major
storage makes it a read-modify-write of the row's word in every stored column, one column
per clock (``gen.timing.emulated_row_write_host_clocks``, busy meanwhile). Like the flip-flop
crossbar it is taken only while idle, ahead of a waiting input.
"""
from __future__ import annotations

import hashlib

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from gen.cells import CellArray
from gen.config import CrossbarConfig
from gen.emulation import EMU_PIPELINE_CLOCKS, EMU_WORD_BITS, EmulatedGeometry
from hw.crossbar import Crossbar, crossbar_handshake, crossbar_signature_layouts, tree_sum

__all__ = ["EmulatedCrossbar", "bank_signature"]


def bank_signature(cfg: CrossbarConfig, n: int, shared_input: bool = False) -> wiring.Signature:
    """The ports of a bank of ``n`` crossbars of ``cfg`` sharing one emulated datapath: those
    of :meth:`Crossbar.signature_of` with one input vector per crossbar (one for all with
    ``shared_input``), the crossbar a row write is for (``w.xbar``), and the results read one
    at a time: ``o.payload`` is result ``o_addr`` (crossbar ``b``'s output ``o`` at
    ``b * cfg.outputs + o``), read asynchronously from a small memory rather than offered
    all at once (``hw.decoupled.SerialAccumulate`` sweeps them)."""
    x, y, w = crossbar_signature_layouts(cfg)
    wl = data.StructLayout({"xbar": unsigned(max(1, ceil_log2(n))), "row": w["row"].shape, "cells": w["cells"].shape})
    return wiring.Signature({"i": In(stream.Signature(data.ArrayLayout(x, 1 if shared_input else n))),
                             "o": Out(stream.Signature(y.elem_shape)), "o_addr": In(range(max(2, n * cfg.outputs))),
                             "w": In(stream.Signature(wl)), "busy": Out(1)})


class EmulatedCrossbar(wiring.Component):
    """A crossbar of ``cfg`` with its cells in block RAM (see the module docstring).

    Args:
        cfg: the crossbar configuration.
        weights: initial cells, as for :class:`hw.crossbar.Crossbar` (a
            :class:`gen.cells.CellArray`, a weight block, or ``None`` for all zero); they
            become the memory's initial contents.
        word_bits: block-RAM word width (``gen.emulation.EMU_WORD_BITS``).
        parallel_cycles: input cycles whose partial sums one read forms (``None``: all of them,
            one pass over the words; fewer: less logic, more passes, ``gen.emulation``).
        ram_style: the Yosys ``ram_style`` attribute of the cell memory (``"block"``:
            block RAM even where distributed RAM would be chosen; ``None``: Yosys decides).
        held: the parent holds ``i.payload`` from the input's accept until its result is
            handed over, and ``w.payload`` from the row write's handshake until ``busy``
            falls, so neither is copied into registers here (``hw.decoupled``: a PE holds its
            crossbars' input once for all of them, and the target clock stands still during a
            row write); the ports are then a bank's (:func:`bank_signature`, results read one
            at a time). ``False``: the flip-flop crossbar's ports and stream rules, payloads
            latched on their handshakes.
        n_xbars: crossbars in the bank (``held`` only, above 1): ``n_xbars`` crossbars of
            ``cfg`` whose cells share one memory (crossbar-major) and whose MVMs, started
            together, share this datapath one after the other (``bank_signature``); so a PE's
            crossbars, which run in lockstep, cost one datapath on an FPGA, not one each.
        shared_input: the bank's crossbars read the same input vector (one ``i`` vector).
        preload: ``held`` only: the bank's crossbars' cells (one :class:`gen.cells.CellArray`
            each) as the memory's initial contents, for a build with no programming source
            (``hw.board``); ``None``: all zero until rows are written.
    """

    def __init__(self, cfg: CrossbarConfig, weights=None, *, word_bits: int = EMU_WORD_BITS,
                 ram_style: str | None = "block", parallel_cycles: int | None = None, held: bool = False,
                 n_xbars: int = 1, shared_input: bool = False, preload=None):
        if held and weights is not None:
            raise ValueError("a bank of emulated crossbars (held inputs) takes no initial weights (preload: its cells)")
        if preload is not None and (not held or len(preload) != n_xbars):
            raise ValueError(f"preload: {n_xbars} CellArrays of a bank (held inputs) are allowed, "
                             f"got {'unheld crossbar' if not held else len(preload)}")
        if n_xbars > 1 and not held:
            raise ValueError(f"n_xbars={n_xbars}: a bank of emulated crossbars takes held inputs")
        self.cfg, self.held, self.n_xbars = cfg, held, n_xbars
        self.n_inputs = 1 if shared_input else n_xbars
        self.geometry = EmulatedGeometry(cfg, word_bits, parallel_cycles)
        cells = weights if isinstance(weights, CellArray) else CellArray.from_weights(weights, cfg)
        if held:
            self.init_words = [] if preload is None else [w for c in preload for w in self.geometry.memory_words(c)]
        else:
            self.init_words = self.geometry.memory_words(cells)
        self.ram_style = ram_style
        super().__init__(bank_signature(cfg, n_xbars, shared_input) if held else Crossbar.signature_of(cfg))

    @staticmethod
    def module_name(cfg: CrossbarConfig, word_bits: int = EMU_WORD_BITS, parallel_cycles: int | None = None) -> str:
        """The Verilog module name of an all-zero-weight emulated crossbar of ``cfg``."""
        key = repr((sorted(cfg.to_dict().items()), word_bits, EMU_PIPELINE_CLOCKS, parallel_cycles))
        return f"pimgen_emu_crossbar_{hashlib.sha1(key.encode()).hexdigest()[:10]}"

    def elaborate(self, platform):
        cfg, geo = self.cfg, self.geometry
        nb = self.n_xbars
        cb, cw, rpw, n_groups, n_reads = cfg.cell_bits, geo.cell_width, geo.rows_per_word, geo.groups, nb * geo.reads
        n_cols, n_t, dac = len(geo.column_order), geo.cycles_per_read, cfg.dac_bits
        n_pass = geo.passes
        drop = geo.frac_bits + cfg.adc_shift     # the ADC drops F + adc_shift bits
        m = Module()

        m.submodules.cells = mem = Memory(
            shape=unsigned(rpw * cw), depth=nb * geo.words, init=self.init_words,
            attrs={"ram_style": self.ram_style} if self.ram_style else None)
        rd, wr = mem.read_port(), mem.write_port()

        # --- control ---------------------------------------------------------------------
        running, done = Signal(), Signal()
        writing, wr_pending = Signal(), Signal()
        step = Signal(range(n_reads + EMU_PIPELINE_CLOCKS))
        accept = crossbar_handshake(m, self, ~running & ~done & ~writing & ~wr_pending, done)

        # --- read sequence: crossbar b, column j (reference first), slice k, pass sp, row
        # group g; the memory is crossbar-major, so the address just runs on from one to the next
        b = Signal(range(nb), name="xbar")
        j = Signal(range(n_cols), name="column")
        g = Signal(range(n_groups), name="group")
        k = Signal(range(cfg.slices), name="slice")
        sp = Signal(range(n_pass), name="pass")
        addr = Signal(range(nb * geo.words), name="addr")
        is_ref = Signal()
        first_g = (g == 0) if n_groups > 1 else Const(1)
        last_g = (g == n_groups - 1) if n_groups > 1 else Const(1)
        last_k = (k == cfg.slices - 1) if cfg.slices > 1 else Const(1)
        last_sp = (sp == n_pass - 1) if n_pass > 1 else Const(1)
        issue = running & (step < n_reads)

        # the input vector, padded to whole words; rotated one word of rows per read so that
        # its low rows are the group being read (back where it started after each column)
        x_word = rpw * cfg.a_bits
        x = None if self.held else Signal(n_groups * x_word)
        xg = Signal(x_word)     # the rows of the word arriving from the memory

        # tag[i]: the read's position, aligned with the data leaving stage i + 1
        head = [issue, first_g, last_g, is_ref, k, sp]
        tag = []
        for i in range(EMU_PIPELINE_CLOCKS - 1):
            regs = [Signal(name=f"v{i}"), Signal(name=f"first{i}"), Signal(name=f"last{i}"),
                    Signal(name=f"ref{i}"), Signal.like(k, name=f"k{i}"), Signal.like(sp, name=f"sp{i}")]
            m.d.sync += [dst.eq(src) for dst, src in zip(regs, tag[-1] if tag else head)]
            tag.append(regs)

        # --- stage 1: the word (synchronous read) and its rows' inputs ----------------------
        if self.held:           # the held inputs, padded; crossbar and group read on the clock before
            g1, b1 = Signal.like(g), Signal.like(b)
            m.d.sync += [g1.eq(g), b1.eq(b)]
            flat, vec = self.i.payload.as_value(), cfg.rows * cfg.a_bits
            ni = self.n_inputs
            xin = Cat(*(Cat(flat[n * vec:(n + 1) * vec], Const(0, n_groups * x_word - vec)) for n in range(ni)))
            sel = (b1 * n_groups + g1) if ni > 1 else g1
            m.d.comb += xg.eq(xin.word_select(sel, x_word) if ni * n_groups > 1 else xin)
        else:
            m.d.sync += xg.eq(x[:x_word])
        word = rd.data

        # --- stage 2: products and partial sums of this pass's input cycles ----------------
        col_max = cfg.rows * cfg.max_dac * geo.cell_max
        sp1 = tag[0][5]

        def bits(p):
            """Row ``p``'s input bits of this pass's input cycles (``dac_bits`` divides ``a_bits``)."""
            row = xg.word_select(p, cfg.a_bits)
            return row.word_select(sp1, n_t * dac) if n_pass > 1 else row

        ps = []
        for t in range(n_t):
            prods = [bits(p)[t * dac:(t + 1) * dac] * word.word_select(p, cw) for p in range(rpw)]
            s = Signal(range(rpw * cfg.max_dac * geo.cell_max + 1), name=f"ps{t}")
            m.d.sync += s.eq(tree_sum(prods))
            ps.append(s)

        # --- stage 3: column sums over the column's words ----------------------------------
        cs = []
        for t in range(n_t):
            s = Signal(range(col_max + 1), name=f"cs{t}")
            m.d.sync += s.eq(Mux(tag[1][1], 0, s) + ps[t] if n_groups > 1 else ps[t])
            cs.append(s)

        # --- stage 4: ADC --------------------------------------------------------------------
        q = []
        for t in range(n_t):
            coarse = cs[t] >> drop
            code = Mux(coarse > cfg.adc_max_code, cfg.adc_max_code, coarse) \
                if col_max >> drop > cfg.adc_max_code else coarse
            qt = Signal(cfg.adc_out_bits, name=f"q{t}")
            m.d.sync += qt.eq((code << cfg.adc_shift)[:cfg.adc_out_bits])
            q.append(qt)

        # --- stage 5: shift-add over this pass's input cycles --------------------------------
        term = Signal(cfg.adc_out_bits + cfg.input_cycles * dac, name="term")
        pass_sum = tree_sum([qt << (t * dac) for t, qt in enumerate(q)])
        m.d.sync += term.eq(pass_sum << (tag[3][5] * (n_t * dac)) if n_pass > 1 else pass_sum)

        # --- stage 6: P[c] over the passes; reference kept; outputs accumulated slice by slice
        v5, _, last5, ref5, k5, sp5 = tag[4]
        if n_pass > 1:
            pacc = Signal.like(term, name="pass_acc")
            full = Signal.like(term, name="column_sum")
            m.d.comb += full.eq(Mux(sp5 == 0, 0, pacc) + term)
            last_pass5 = sp5 == n_pass - 1
            with m.If(v5 & last5 & ~last_pass5):
                m.d.sync += pacc.eq(full)
        else:
            full, last_pass5 = term, Const(1)
        acc_ref = Signal.like(term, name="acc_ref")  # non-ideal reference cells may read up to cell_max
        cur = Signal(signed(cfg.dot_bits), name="cur")
        if self.held:
            # a bank's results in a small memory (LUT RAM on an FPGA), read one at a time: the
            # parent sums them serially, so neither registers nor wires for all of them at once
            m.submodules.results = res = Memory(shape=signed(cfg.dot_bits), depth=max(2, nb * cfg.outputs), init=[])
            res_w, res_r = res.write_port(), res.read_port(domain="comb")
            widx = Signal(range(max(2, nb * cfg.outputs)), name="result_index")
            m.d.comb += [res_r.addr.eq(self.o_addr), self.o.payload.eq(res_r.data),
                         res_w.addr.eq(widx)]
        else:
            out = [Signal(signed(cfg.dot_bits), name=f"out{o}") for o in range(cfg.outputs)]
        base = Mux(k5 == 0, -(acc_ref << (cfg.w_bits - 1)), cur) if cfg.slices > 1 else -(acc_ref << (cfg.w_bits - 1))
        nxt = Signal(signed(cfg.dot_bits), name="cur_next")
        m.d.comb += nxt.eq(base + (full << (k5 * cb) if cfg.slices > 1 else full))
        with m.If(v5 & last5 & last_pass5):
            with m.If(ref5):
                m.d.sync += acc_ref.eq(full)
            with m.Else():
                m.d.sync += cur.eq(nxt)
                with m.If((k5 == cfg.slices - 1) if cfg.slices > 1 else Const(1)):
                    # results arrive in output order, crossbar by crossbar
                    if self.held:
                        m.d.comb += res_w.en.eq(1)
                        m.d.sync += widx.eq(widx + 1)
                    else:       # shifted in from the top
                        m.d.sync += [dst.eq(src) for dst, src in zip(out, [*out[1:], nxt])]
        if self.held:
            m.d.comb += res_w.data.eq(nxt)
        else:
            m.d.comb += self.o.payload.as_value().eq(Cat(*out))

        # --- re-programming: read-modify-write of the row's word in every column ------------
        row_group = Signal(range(n_groups))
        row_pos = Signal(range(rpw))
        row_cells = Cat(*(self.w.payload.cells[c] for c in geo.column_order))   # in memory-column order
        levels = None if self.held else Signal(n_cols * cw)     # a latched copy of row_cells, shifted
        waddr = Signal(range(nb * geo.words + n_groups))
        first_word = self.w.payload.xbar * geo.words if nb > 1 else 0     # the crossbar's cells
        wcount = Signal(range(n_cols))
        wr_addr, wr_level = Signal.like(rd.addr), Signal(cw)
        row = self.w.payload.row
        with m.If(self.w.valid & self.w.ready):
            m.d.sync += [writing.eq(1), wcount.eq(0)]
            if not self.held:
                m.d.sync += levels.eq(row_cells)
            if n_groups > 1:
                shift = rpw.bit_length() - 1          # rows_per_word is a power of two here
                m.d.sync += [row_group.eq(row >> shift), row_pos.eq(row[:shift]), waddr.eq(first_word + (row >> shift))]
            else:
                m.d.sync += [row_pos.eq(row), waddr.eq(first_word)]
        with m.Elif(writing):
            m.d.sync += [waddr.eq(waddr + n_groups), wcount.eq(wcount + 1)]
            if not self.held:
                m.d.sync += levels.eq(levels >> cw)
            with m.If(wcount == n_cols - 1):
                m.d.sync += writing.eq(0)
        m.d.sync += [wr_pending.eq(writing), wr_addr.eq(waddr),
                     wr_level.eq(row_cells.word_select(wcount, cw) if self.held else levels[:cw])]
        mask = Const((1 << cw) - 1, rpw * cw)
        m.d.comb += [
            rd.addr.eq(Mux(writing, waddr, addr)),
            wr.en.eq(wr_pending),
            wr.addr.eq(wr_addr),
            wr.data.eq((word & ~(mask << (row_pos * cw))) | (wr_level << (row_pos * cw))),
        ]

        # --- sequencing ------------------------------------------------------------------
        with m.If(accept):
            m.d.sync += [running.eq(1), done.eq(0), step.eq(0), g.eq(0), k.eq(0), is_ref.eq(1), sp.eq(0),
                         addr.eq(0)]
            if nb > 1:
                m.d.sync += [b.eq(0), j.eq(0)]
            if self.held:
                m.d.sync += widx.eq(0)
            if not self.held:
                m.d.sync += x.eq(self.i.payload.as_value())
        with m.Elif(running):
            with m.If(step == n_reads + EMU_PIPELINE_CLOCKS - 2):
                # the last column's result is accumulated on this edge
                m.d.sync += [running.eq(0), done.eq(1)]
            with m.Else():
                m.d.sync += step.eq(step + 1)
            with m.If(issue):
                if n_groups > 1:
                    if not self.held:
                        m.d.sync += x.eq(Cat(x[x_word:], x[:x_word]))
                    m.d.sync += g.eq(Mux(last_g, 0, g + 1))
                # the next word: the column's next group, its first again for the next pass,
                # or the next column's first
                m.d.sync += addr.eq(Mux(last_g & ~last_sp, addr - (n_groups - 1), addr + 1))
                if n_pass > 1:
                    with m.If(last_g):
                        m.d.sync += sp.eq(Mux(last_sp, 0, sp + 1))
                with m.If(last_g & last_sp):
                    with m.If(is_ref):
                        m.d.sync += is_ref.eq(0)
                    if cfg.slices > 1:
                        with m.Else():
                            m.d.sync += k.eq(Mux(last_k, 0, k + 1))
                    if nb > 1:      # the crossbar's last column: the next one's reference column
                        with m.If(j == n_cols - 1):
                            m.d.sync += [j.eq(0), b.eq(b + 1), is_ref.eq(1)]
                        with m.Else():
                            m.d.sync += j.eq(j + 1)
        with m.Elif(done & self.o.ready):
            m.d.sync += done.eq(0)
        return m
