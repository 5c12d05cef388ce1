"""The crossbar's cell encoding (DESIGN.md §3), in one home.

A signed ``w_bits`` weight is stored in **offset binary**, ``u = w + 2**(w_bits-1)``, split
into ``w_bits // cell_bits`` slices of ``cell_bits``, LSB slice first, one column per slice:
physical column ``o·slices + k`` holds slice ``k`` of output ``o``. The last column
(``cols - 1``) is the reference column, every cell at level 1; columns between the last
output's slices and the reference column hold level 0.

* :func:`cell_levels` -- the levels of a weight block, ``[..., slices]`` (the golden model
  computes its column sums from these);
* :func:`encode_row` -- one crossbar row as an integer, ``g_bits = cell_bits + g_frac_bits``
  per physical column (the RTL's initial cell contents and the weight files);
* :func:`ideal_conductances` -- a weight block's cells as conductances ``[rows, cols]``,
  ``level << g_frac_bits`` (what :mod:`gen.devices` perturbs);
* :class:`CellArray` -- a whole crossbar's validated contents, what ``hw.crossbar.Crossbar``
  is built from: from weights (ideal cells) or from a conductance map (non-ideal cells,
  DESIGN.md §3).

Weights are checked here, once (:func:`check_weight_block`), so the hardware never has to
refuse them. Pure numpy: no ``hw``, ``sim``, ``flow`` or amaranth.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gen.config import CrossbarConfig
from gen.intops import as_int, check_range

__all__ = ["cell_levels", "check_weight_block", "encode_row", "pack_row", "ideal_conductances", "check_conductances", "CellArray",
           "cells_from_beats"]


def cell_levels(w, cfg: CrossbarConfig) -> np.ndarray:
    """Cell levels of weights ``w[...]`` -> int64 ``[..., slices]``, LSB slice first.

    Offset binary ``u = w + 2**(w_bits-1)``, slice ``k`` is ``(u >> k·cell_bits) & (2**cell_bits - 1)``.
    Refuses non-integer weights and weights outside ``[-2**(w_bits-1), 2**(w_bits-1) - 1]``.
    """
    w = as_int(w, "w")
    check_range(w, -cfg.weight_offset, cfg.weight_offset - 1, "w")
    u = w + cfg.weight_offset
    shifts = np.arange(cfg.slices, dtype=np.int64) * cfg.cell_bits
    return (u[..., None] >> shifts) & cfg.max_level


def check_weight_block(w, cfg: CrossbarConfig) -> np.ndarray:
    """``w`` as int64 ``[n_rows, n_out]`` if one crossbar holds it (``n_rows <= rows``,
    ``n_out <= outputs``, every value a ``w_bits`` signed integer); ``ValueError`` otherwise."""
    w = as_int(w, "w")
    if w.ndim != 2 or w.shape[0] > cfg.rows or w.shape[1] > cfg.outputs:
        raise ValueError(
            f"a weight block of shape {w.shape} does not fit a crossbar of "
            f"{cfg.rows} rows x {cfg.outputs} outputs")
    check_range(w, -cfg.weight_offset, cfg.weight_offset - 1, "w")
    return w


def encode_row(weights, cfg: CrossbarConfig) -> int:
    """The cells of one crossbar row as an integer, ``g_bits`` per physical column (column
    ``c`` at bits ``c·g_bits``), each the ideal conductance ``level << g_frac_bits``.

    ``weights`` holds up to ``cfg.outputs`` signed weights; missing outputs hold ``w = 0``.
    Unused columns hold level 0 and the reference column level 1.
    """
    w = np.asarray(weights)
    w = as_int(w if w.size else w.astype(np.int64), "weights")     # [] is an empty row
    if w.ndim != 1 or len(w) > cfg.outputs:
        raise ValueError(f"a crossbar row holds at most {cfg.outputs} weights, got shape {w.shape}")
    return pack_row(ideal_conductances(w.reshape(1, -1), cfg)[0], cfg)


def pack_row(g_row, cfg: CrossbarConfig) -> int:
    """One row of conductances as an integer, column ``c`` at bits ``c·g_bits``: a crossbar
    row's contents and the ``cells`` of a programming beat (``hw.crossbar`` write port)."""
    word = 0
    for c, g in enumerate(np.asarray(g_row).tolist()):
        word |= g << (c * cfg.g_bits)
    return word


def ideal_conductances(weights, cfg: CrossbarConfig) -> np.ndarray:
    """The ideal cells of weight block ``weights[n_rows <= rows, n_out <= outputs]`` (``None``:
    all zero) as int64 conductances ``[rows, cols]``: ``level << g_frac_bits``, columns as the
    crossbar stores them (missing rows and outputs hold ``w = 0``, unused columns level 0,
    the reference column level 1)."""
    if weights is None:
        weights = np.zeros((cfg.rows, cfg.outputs), dtype=np.int64)
    w = check_weight_block(weights, cfg)
    full = np.zeros((cfg.rows, cfg.outputs), dtype=np.int64)
    full[:w.shape[0], :w.shape[1]] = w
    levels = np.zeros((cfg.rows, cfg.cols), dtype=np.int64)
    levels[:, :cfg.outputs * cfg.slices] = cell_levels(full, cfg).reshape(cfg.rows, -1)
    levels[:, cfg.ref_col] = 1
    return levels << cfg.g_frac_bits


def check_conductances(g, cfg: CrossbarConfig) -> np.ndarray:
    """``g`` as int64 ``[rows, cols]`` if every value is a conductance a cell holds
    (``0 <= g <= 2**(cell_bits + g_frac_bits) - 1``); ``ValueError`` otherwise."""
    g = as_int(g, "conductances")
    if g.shape != (cfg.rows, cfg.cols):
        raise ValueError(f"conductances must have shape [rows, cols] = [{cfg.rows}, {cfg.cols}], got {g.shape}")
    check_range(g, 0, cfg.g_max, "conductances")
    return g


@dataclass(frozen=True)
class CellArray:
    """A crossbar's cell contents, validated: ``rows[r]`` is row ``r`` as :func:`encode_row`
    gives it (``g_bits`` per column). Build it with :meth:`from_weights` (ideal cells) or
    :meth:`from_conductances` (a device model's map)."""

    cfg: CrossbarConfig
    rows: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.rows) != self.cfg.rows:
            raise ValueError(f"a CellArray of a {self.cfg.rows}-row crossbar needs {self.cfg.rows} rows, "
                             f"got {len(self.rows)}")
        limit = 1 << (self.cfg.cols * self.cfg.g_bits)
        for r, word in enumerate(self.rows):
            if not isinstance(word, int) or not 0 <= word < limit:
                raise ValueError(f"row {r} of a CellArray must be an integer in [0, 2**({self.cfg.cols}*"
                                 f"{self.cfg.g_bits})), got {word!r}")

    @classmethod
    def from_weights(cls, weights, cfg: CrossbarConfig) -> "CellArray":
        """The contents holding weight block ``weights[n_rows <= rows, n_out <= outputs]``
        (``None``: all zero); missing rows and outputs hold ``w = 0``."""
        return cls.from_conductances(ideal_conductances(weights, cfg), cfg)

    @classmethod
    def from_conductances(cls, g, cfg: CrossbarConfig) -> "CellArray":
        """The contents holding conductance map ``g[rows, cols]`` (units of ``2**-g_frac_bits``
        of a level, columns as the crossbar stores them), e.g. from :mod:`gen.devices`."""
        g = check_conductances(g, cfg)
        return cls(cfg, tuple(pack_row(g[r], cfg) for r in range(cfg.rows)))

    def conductances(self) -> np.ndarray:
        """The cells as int64 ``[rows, cols]`` conductances (what ``sim.golden`` takes)."""
        cfg, mask = self.cfg, self.cfg.g_max
        return np.array([[(word >> (c * cfg.g_bits)) & mask for c in range(cfg.cols)] for word in self.rows],
                        dtype=np.int64)


def cells_from_beats(beats, cfg: CrossbarConfig, n_xbars: int) -> tuple[CellArray, ...]:
    """Every crossbar's contents after programming beats ``(crossbar, row, cells)``
    (``gen.chipplan.programming_beats``) from the reset contents (``w = 0``): what a chip's
    ``n_xbars`` crossbars hold once programmed, for a build whose cells are initial contents
    (the FPGA emulation build on a board, ``hw.board``)."""
    reset = CellArray.from_weights(None, cfg).rows
    rows = [list(reset) for _ in range(n_xbars)]
    for n, r, word in beats:
        if not (0 <= n < n_xbars and 0 <= r < cfg.rows):
            raise ValueError(f"a programming beat for crossbar {n}, row {r} is not allowed: the chip has "
                             f"{n_xbars} crossbars of {cfg.rows} rows")
        rows[n][r] = word
    return tuple(CellArray(cfg, tuple(r)) for r in rows)
