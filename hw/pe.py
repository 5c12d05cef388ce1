"""Processing element: a group of crossbars (``hw.crossbar.Crossbar``) fed by one input
vector.

A PE holds the weight blocks the plan placed on its subarrays (``gen.mapping.Placement``):
conventional — row-blocks / column-blocks of the unrolled ``(K*K*Cin) x Cout`` matrix;
novel — blocks of the ``Cin x Cout`` matrix of its kernel position. Every block reads the
rows ``[r0, r1)`` of the PE's input vector (conventional: the im2col window; novel: the
channels of the pixel the PE holds). All crossbars of a PE start together and finish
together (same configuration, same latency), so the PE is one stream stage.
"""
from __future__ import annotations

import hashlib

import numpy as np
from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from gen.config import CrossbarConfig
from hw.blackbox import instantiate
from hw.crossbar import Crossbar, crossbar_signature_layouts
from hw.decoupled import TargetCrossbar, bank_kind

__all__ = ["PEBlock", "PE", "prog_layout"]


def prog_layout(cfg: CrossbarConfig, n_xbars: int) -> data.StructLayout:
    """One programming beat: crossbar ``xbar`` (chip-wide index), its row ``row`` and that
    row's ``cells`` (conductances, as the crossbar's write port takes them)."""
    xb_layout = crossbar_signature_layouts(cfg)[2]
    return data.StructLayout({"xbar": unsigned(max(1, ceil_log2(max(2, n_xbars)))),
                              "row": xb_layout["row"].shape, "cells": xb_layout["cells"].shape})


def pack_program(beats, cfg: CrossbarConfig, n_xbars: int) -> list[int]:
    """Programming beats ``(crossbar, row, cells word)`` (``gen.chipplan.programming_beats``)
    packed as :func:`prog_layout` payloads."""
    lay = prog_layout(cfg, n_xbars)
    fx, fr, fc = lay["xbar"].offset, lay["row"].offset, lay["cells"].offset
    return [(x << fx) | (r << fr) | (word << fc) for x, r, word in beats]


class PEBlock:
    """One weight block of a PE: input rows ``[r0, r1)`` of the PE vector, weights ``[r1-r0, n_out]``."""

    def __init__(self, r0: int, weights):
        self.weights = np.asarray(weights, dtype=np.int64)
        self.r0 = int(r0)
        self.r1 = self.r0 + self.weights.shape[0]

    @property
    def n_out(self) -> int:
        return self.weights.shape[1]


class PE(wiring.Component):
    """Crossbars of one PE sharing an input vector.

    Ports:
        i: stream, ``n_in`` unsigned ``a_bits`` values (element ``e`` at bits ``[e*a, (e+1)*a)``).
        o: stream, ``len(blocks) * cfg.outputs`` signed ``dot_bits`` partial sums, block
           ``b``'s output ``o`` at index ``b*outputs + o`` (outputs beyond a block's width are 0).

    ``i`` is taken when every crossbar can take it; ``o`` is offered when every crossbar
    has its result (they run in lockstep), and taken from all of them together.

    ``programmed`` (a chip): the crossbars hold no weights of their own: each is one instance
    of the shared crossbar module (``hw.blackbox``), programmed through ``prog`` (layout
    :func:`prog_layout`, broadcast to every PE) while idle, before any image; ``sel[b]`` says
    the beat on ``prog`` is for crossbar ``b`` (the parent decodes the chip-wide crossbar
    index). Nothing of a programmed PE depends on where it sits or on its weights, so it is
    itself a black box, one module per :meth:`module_name` (its crossbar configuration, input
    width and the rows each crossbar reads). With ``emulated`` (the chip's emulation build)
    its crossbars are one bank of ``len(blocks)`` target-timed emulated crossbars sharing a
    datapath (:class:`hw.decoupled.TargetCrossbar`): the PE takes the target-clock enable
    ``tick``, drives the bank's ``ok``, holds the input from its accept on, and offers its
    results one at a time (``o.payload`` is the one at ``o_addr``, ``b*outputs + o``; the
    engine sums them serially, ``hw.decoupled.SerialAccumulate``). ``preload`` (emulated
    only): its crossbars' cells (a ``gen.cells.CellArray`` each) as the bank's initial contents,
    for a board with no programming source; the PE is then a module of its own.
    """

    def __init__(self, cfg: CrossbarConfig, n_in: int, blocks: list[PEBlock], *, programmed: bool = False,
                 n_xbars: int = 0, emulated: bool = False, preload=None):
        if emulated and not programmed:
            raise ValueError("an emulated PE is programmed: emulated=True needs programmed=True")
        if preload is not None and (not emulated or len(preload) != len(blocks)):
            raise ValueError(f"preload: the cells of an emulated PE's {len(blocks)} crossbars are allowed, got "
                             f"{'a PE that is not emulated' if not emulated else len(preload)}")
        self.cfg, self.n_in, self.blocks = cfg, n_in, blocks
        self.programmed, self.emulated = programmed, emulated
        self.preload = None if preload is None else tuple(preload)
        super().__init__(self.signature_of(cfg, n_in, len(blocks), n_xbars if programmed else None, emulated))

    @staticmethod
    def signature_of(cfg: CrossbarConfig, n_in: int, n_blocks: int, n_xbars: int | None = None,
                     emulated: bool = False) -> wiring.Signature:
        """The ports of a PE of ``n_blocks`` crossbars of ``cfg`` reading ``n_in`` values; with
        ``n_xbars`` (programmed, crossbars on the chip) ``prog`` and ``sel``; ``emulated``:
        ``tick`` and ``ok``."""
        ports = {"i": In(stream.Signature(unsigned(n_in * cfg.a_bits)))}
        if emulated:    # the bank's results one at a time (hw.emu_crossbar.bank_signature)
            ports.update(o=Out(stream.Signature(signed(cfg.dot_bits))),
                         o_addr=In(range(max(2, n_blocks * cfg.outputs))))
        else:
            ports["o"] = Out(stream.Signature(unsigned(n_blocks * cfg.outputs * cfg.dot_bits)))
        if n_xbars is not None:
            ports["prog"] = In(stream.Signature(prog_layout(cfg, n_xbars)))
            ports["sel"] = In(n_blocks)
        if emulated:
            ports.update(tick=In(1), ok=Out(1))
        return wiring.Signature(ports)

    @staticmethod
    def module_name(cfg: CrossbarConfig, n_in: int, rows, n_xbars: int, emulated: bool = False,
                    preload=None) -> str:
        """The Verilog module name of a programmed PE: crossbars of ``cfg`` (the module of
        each, which carries its own pipeline and emulation constants), ``n_in`` input values,
        ``rows`` (``(r0, r1)`` per crossbar), programmed over a bus of ``n_xbars`` crossbars."""
        rows = tuple((int(r0), int(r1)) for r0, r1 in rows)
        xb = (TargetCrossbar.module_name(cfg, *bank_kind(rows), preload=preload) if emulated
              else Crossbar.module_name(cfg))
        key = repr((xb, n_in, rows, prog_layout(cfg, n_xbars).size, emulated))
        return f"pimgen_pe_{hashlib.sha1(key.encode()).hexdigest()[:10]}"

    def elaborate(self, platform):
        m = Module()
        cfg, a = self.cfg, self.cfg.a_bits
        ready_terms, valid_terms = [], []
        xbars = []
        if self.emulated:
            # the emulated crossbars read their input over many host clocks: it is held here,
            # once for all of them, from the accept (a target edge) until the next one (their
            # result has been handed over by then)
            x = Signal(len(self.i.payload), name="x_held")
            with m.If(self.i.valid & self.i.ready & self.tick):
                m.d.sync += x.eq(self.i.payload)
            bank = self._bank(m, x)
            xbars, ready_terms, valid_terms = [bank], [bank.i.ready], [bank.o.valid]
        for n, b in enumerate(self.blocks if not self.emulated else ()):
            if not self.programmed:         # stand-alone: the weights are initial cell contents
                xb = Crossbar(cfg, b.weights)
                m.submodules[f"xbar{n}"] = xb
                m.d.comb += xb.w.valid.eq(0)
            else:                           # programmed through `prog`: one module for all
                xb = instantiate(m, f"xbar{n}", Crossbar.module_name(cfg), Crossbar.signature_of(cfg),
                                 lambda: Crossbar(cfg))
                p = self.prog
                m.d.comb += [xb.w.valid.eq(p.valid & self.sel[n]),
                             xb.w.payload.row.eq(p.payload.row), xb.w.payload.cells.eq(p.payload.cells)]
            xbars.append(xb)
            for r in range(b.r1 - b.r0):
                m.d.comb += xb.i.payload[r].eq(self.i.payload[(b.r0 + r) * a:(b.r0 + r + 1) * a])
            ready_terms.append(xb.i.ready)
            valid_terms.append(xb.o.valid)
            base = n * cfg.outputs * cfg.dot_bits
            for o in range(cfg.outputs):
                m.d.comb += self.o.payload[base + o * cfg.dot_bits:base + (o + 1) * cfg.dot_bits].eq(
                    xb.o.payload[o])
        if self.programmed:
            m.d.comb += self.prog.ready.eq(1)     # programmed while idle: every crossbar takes it
        all_ready = Signal()
        all_valid = Signal()
        m.d.comb += [all_ready.eq(Cat(*ready_terms).all()), all_valid.eq(Cat(*valid_terms).all())]
        m.d.comb += [self.i.ready.eq(all_ready), self.o.valid.eq(all_valid)]
        for xb in xbars:
            m.d.comb += [xb.i.valid.eq(self.i.valid & all_ready), xb.o.ready.eq(self.o.ready & all_valid)]
        return m

    def _bank(self, m, x):
        """An emulation build's crossbars: one :class:`hw.decoupled.TargetCrossbar` bank of them
        all (they run in lockstep), inputs from the held vector ``x``, outputs in block order."""
        cfg, a = self.cfg, self.cfg.a_bits
        n, shared = bank_kind([(b.r0, b.r1) for b in self.blocks])
        pre = self.preload
        xb = instantiate(m, "xbars", TargetCrossbar.module_name(cfg, n, shared, preload=pre),
                         TargetCrossbar.signature_of(cfg, n, shared), lambda: TargetCrossbar(cfg, n, shared, preload=pre))
        p, mine = self.prog, [self.sel[k] for k in range(n)]
        which = 0
        for k in range(n - 1, 0, -1):
            which = Mux(mine[k], k, which)
        m.d.comb += [xb.tick.eq(self.tick), self.ok.eq(xb.ok),
                     xb.w.valid.eq(p.valid & self.sel.any()), xb.w.payload.xbar.eq(which),
                     xb.w.payload.row.eq(p.payload.row), xb.w.payload.cells.eq(p.payload.cells),
                     self.o.payload.eq(xb.o.payload), xb.o_addr.eq(self.o_addr)]
        for n_, b in enumerate(self.blocks[:1] if shared else self.blocks):
            for r in range(b.r1 - b.r0):
                m.d.comb += xb.i.payload[n_][r].eq(x[(b.r0 + r) * a:(b.r0 + r + 1) * a])
        return xb
