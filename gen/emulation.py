"""Geometry of the FPGA-emulated crossbar (DESIGN.md §10), in one home.

``hw.emu_crossbar.EmulatedCrossbar`` keeps a crossbar's cells in block RAM, **column-major**:
one memory word holds one column's cells for a group of ``rows_per_word`` consecutive rows
(row ``g·rows_per_word + p`` at bits ``p·cell_bits``), and the words of one column are
consecutive (address ``j·groups + g``). Only the columns that reach a result are stored,
in the order they are read: the reference column first (``j = 0``), then the data columns
``0 .. outputs·slices − 1`` (``j = 1 + c``); the unused columns between the last output's
slices and the reference column only ever hold level 0 and feed no output.

An MVM reads every stored word ``passes`` times (``reads`` host clocks, one word per clock):
each read computes the partial column sums of ``parallel_cycles`` input cycles at once, so a
column takes ``input_cycles / parallel_cycles`` passes over its words. All input cycles at once
is the fastest and largest; one at a time the smallest (the chip's emulation build,
:data:`CHIP_PARALLEL_CYCLES`). The host-clock latency is
``gen.timing.emulated_crossbar_host_clocks``. Pure Python: no ``hw``, ``sim`` or amaranth.
"""
from __future__ import annotations

from dataclasses import dataclass

from gen.cells import CellArray
from gen.config import CrossbarConfig

__all__ = ["EMU_WORD_BITS", "EMU_PIPELINE_CLOCKS", "CHIP_PARALLEL_CYCLES", "SERIAL_SUM_PIPELINE_CLOCKS",
           "SERIAL_POST_PIPELINE_CLOCKS",
           "EmulatedGeometry", "SumStep", "serial_sum_steps"]

#: Width of one block-RAM word: an ECP5 DP16KD is 36 bits wide as a pseudo-dual-port RAM
#: (512 words), so 32 bits (8 four-bit, 16 two-bit or 32 one-bit cells) fill one.
EMU_WORD_BITS = 32

#: Host clocks after the last word is read until the result can be taken: BRAM read,
#: products and partial sums of the word, sum over the column's words, ADC, shift-add over
#: the input cycles, output accumulation (the result is taken on the edge after that).
EMU_PIPELINE_CLOCKS = 6

#: Input cycles per read in the chip's emulation build (``hw.decoupled``): one partial-sum tree
#: per crossbar, the least logic, so that a whole network fits an FPGA; a board is bound by its
#: serial line long before its crossbars.
CHIP_PARALLEL_CYCLES = 1

#: Host clocks from a serial sum step's read addresses to its sum being stored
#: (``hw.decoupled.SerialAccumulate``: addresses, the PEs' results, their adder tree).
SERIAL_SUM_PIPELINE_CLOCKS = 3

#: Host clocks from a serial post stage's output being selected to its activation being stored
#: (``hw.decoupled.SerialPost``: ``acc + bias`` centred and saturated, times ``M``, requantized).
SERIAL_POST_PIPELINE_CLOCKS = 3


@dataclass(frozen=True)
class EmulatedGeometry:
    """Where an emulated crossbar of ``cfg`` keeps its cells (see the module docstring)."""

    cfg: CrossbarConfig
    word_bits: int = EMU_WORD_BITS
    #: input cycles whose partial sums one read forms (``None``: all of them)
    parallel_cycles: int | None = None

    def __post_init__(self) -> None:
        if self.word_bits < self.cell_width:
            raise ValueError(f"word_bits={self.word_bits} is not allowed: a word holds at least one "
                             f"{self.cell_width}-bit cell")
        p, n = self.parallel_cycles, self.cfg.input_cycles
        if p is not None and (isinstance(p, bool) or not isinstance(p, int) or p < 1 or n % p):
            raise ValueError(f"parallel_cycles={p!r} is not allowed: it must divide the {n} input cycles")

    @property
    def cycles_per_read(self) -> int:
        """Input cycles whose partial column sums one read forms."""
        return self.cfg.input_cycles if self.parallel_cycles is None else self.parallel_cycles

    @property
    def passes(self) -> int:
        """Reads of each word per MVM: ``input_cycles / cycles_per_read``."""
        return self.cfg.input_cycles // self.cycles_per_read

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
    def words(self) -> int:
        """The memory depth: ``(outputs·slices + 1) · groups`` words."""
        return len(self.column_order) * self.groups

    @property
    def reads(self) -> int:
        """Words read per MVM: ``words · passes`` (column by column, each column's words once per pass)."""
        return self.words * self.passes

    def memory_words(self, cells: CellArray) -> list[int]:
        """The block-RAM image of ``cells``, ``words`` words (address ``j·groups + g``)."""
        cfg, rpw, width, mask = self.cfg, self.rows_per_word, self.cell_width, self.cell_max
        words = []
        for c in self.column_order:
            for g in range(self.groups):
                word = 0
                for p, r in enumerate(range(g * rpw, min(cfg.rows, (g + 1) * rpw))):
                    word |= ((cells.rows[r] >> (c * width)) & mask) << (p * width)
                words.append(word)
        return words


@dataclass(frozen=True)
class SumStep:
    """One host clock of a layer's serial partial-sum sweep (``hw.decoupled.SerialAccumulate``):
    the result each PE reads (``addrs[p]``: crossbar ``b``'s output ``o`` of PE ``p`` at
    ``b · outputs + o``, or ``None``: that PE adds nothing), added to the sum ``dest``
    (column blocks in sorted ``(replica, cols)`` order, outputs in order), which starts
    afresh on a ``first`` step and is stored on a ``last`` one."""
    addrs: tuple[int | None, ...]
    dest: int
    first: bool
    last: bool


def serial_sum_steps(lp, outputs: int) -> tuple[SumStep, ...]:
    """The sweep that sums a layer's partial sums one output at a time in the emulation
    build: for every column block ``(replica, cols)`` and output, one step per crossbar of
    that block in the PE holding most of them (usually one: every PE adds its part at once).
    PEs in ``lp.per_pe()`` order, crossbars in each PE's placement order."""
    pes = list(lp.per_pe().values())
    keys = sorted({(p.replica, p.cols) for pls in pes for p in pls})
    steps, dest = [], 0
    for key in keys:
        base = [[b * outputs for b, p in enumerate(pls) if (p.replica, p.cols) == key] for pls in pes]
        depth = max(len(x) for x in base)
        for o in range(key[1][1] - key[1][0]):
            steps += [SumStep(tuple(x[j] + o if j < len(x) else None for x in base), dest, j == 0, j == depth - 1)
                      for j in range(depth)]
            dest += 1
    return tuple(steps)
