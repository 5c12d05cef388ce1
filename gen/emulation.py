"""Geometry of the FPGA-emulated crossbar (DESIGN.md §10), in one home.

``hw.emu_crossbar.EmulatedCrossbar`` keeps a crossbar's cells in block RAM, **column-major**:
one memory word holds one column's cells for a group of ``rows_per_word`` consecutive rows
(row ``g·rows_per_word + p`` at bits ``p·cell_bits``), and the words of one column are
consecutive (address ``j·groups + g``). Only the columns that reach a result are stored,
in the order they are read: the reference column first (``j = 0``), then the data columns
``0 .. outputs·slices − 1`` (``j = 1 + c``); the unused columns between the last output's
slices and the reference column only ever hold level 0 and feed no output.

An MVM reads every stored word once (``reads`` host clocks, one word per clock) and computes
every input cycle's partial column sum from it in parallel; the host-clock latency is
``gen.timing.emulated_crossbar_host_clocks``. Pure Python: no ``hw``, ``sim`` or amaranth.
"""
from __future__ import annotations

from dataclasses import dataclass

from gen.cells import CellArray
from gen.config import CrossbarConfig

__all__ = ["EMU_WORD_BITS", "EMU_PIPELINE_CLOCKS", "EmulatedGeometry"]

#: Width of one block-RAM word: an ECP5 DP16KD is 36 bits wide as a pseudo-dual-port RAM
#: (512 words), so 32 bits (8 four-bit, 16 two-bit or 32 one-bit cells) fill one.
EMU_WORD_BITS = 32

#: Host clocks after the last word is read until the result can be taken: BRAM read,
#: products and partial sums of the word, sum over the column's words, ADC, shift-add over
#: the input cycles, output accumulation (the result is taken on the edge after that).
EMU_PIPELINE_CLOCKS = 6


@dataclass(frozen=True)
class EmulatedGeometry:
    """Where an emulated crossbar of ``cfg`` keeps its cells (see the module docstring)."""

    cfg: CrossbarConfig
    word_bits: int = EMU_WORD_BITS

    def __post_init__(self) -> None:
        if self.word_bits < self.cell_width:
            raise ValueError(f"word_bits={self.word_bits} is not allowed: a word holds at least one "
                             f"{self.cell_width}-bit cell")

    @property
    def frac_bits(self) -> int:
        """Fraction bits ``F`` of a cell's conductance (DESIGN.md §3 "Non-ideal cells"; 0 when
        the configuration has none)."""
        return getattr(self.cfg, "g_frac_bits", 0)

    @property
    def cell_width(self) -> int:
        """Bits per stored cell: ``cell_bits + F`` (a conductance ``g``; ideal ``level << F``)."""
        return self.cfg.cell_bits + self.frac_bits

    @property
    def cell_max(self) -> int:
        """The largest conductance a cell holds: ``2**cell_width − 1``."""
        return (1 << self.cell_width) - 1

    @property
    def rows_per_word(self) -> int:
        """Cells (rows) of one column per word: every row when they fit, else the largest
        power of two that fits ``word_bits`` (so a row splits into group and position by bits)."""
        per = self.word_bits // self.cell_width
        return self.cfg.rows if self.cfg.rows <= per else 1 << (per.bit_length() - 1)

    @property
    def groups(self) -> int:
        """Words per column: ``ceil(rows / rows_per_word)``."""
        return -(-self.cfg.rows // self.rows_per_word)

    @property
    def column_order(self) -> tuple[int, ...]:
        """Physical columns in memory (and read) order: the reference column, then the data columns."""
        return (self.cfg.ref_col, *range(self.cfg.outputs * self.cfg.slices))

    @property
    def reads(self) -> int:
        """Words read per MVM, the memory depth: ``(outputs·slices + 1) · groups``."""
        return len(self.column_order) * self.groups

    def memory_words(self, cells: CellArray) -> list[int]:
        """The block-RAM image of ``cells``, ``reads`` words (address ``j·groups + g``)."""
        cfg, rpw, width, mask = self.cfg, self.rows_per_word, self.cell_width, self.cell_max
        words = []
        for c in self.column_order:
            for g in range(self.groups):
                word = 0
                for p, r in enumerate(range(g * rpw, min(cfg.rows, (g + 1) * rpw))):
                    word |= ((cells.rows[r] >> (c * width)) & mask) << (p * width)
                words.append(word)
        return words
