"""Fault-aware programming: cell levels chosen around the stuck cells a test has measured.

A test chip measures which cells are stuck, and at what (stuck-at-0: level 0, stuck-at-1:
the top level); it cannot measure the random programming variation that comes later. Given
that map, a weight need not be programmed as its plain offset-binary slices (DESIGN.md §3):

* the output of row ``r`` is ``Σ x·(u - 2**(w_bits-1)·ℓ_ref)``, where ``u = Σ_k l_k·2**(k·cell_bits)``
  is the value its slices hold and ``ℓ_ref`` the level of the row's reference cell (1 when
  healthy). The weight is exact when ``u = w + 2**(w_bits-1)·ℓ_ref``, so a reference cell stuck
  at 0 or at the top shifts every target of its row instead of corrupting them all;
* a stuck slice is fixed, and the free slices take the levels whose value is nearest the
  target (every combination is tried: at most ``2**w_bits`` of them), so a stuck low slice is
  absorbed by the others and a stuck high slice is met as closely as the lower slices reach.

Nothing changes in the hardware: the same cells, the same ADC and shift-add, the same
programming port; only the levels programmed differ, and the device model's faults and
variation then apply to them as to any levels (``gen.devices.plan_conductances(...,
fault_aware=True)``). The spare rows and columns of a crossbar are not used: moving a row
would move its input, which the PE wiring fixes. Pure numpy.
"""
from __future__ import annotations

import itertools

import numpy as np

from gen.cells import cell_levels, check_weight_block
from gen.config import CrossbarConfig

__all__ = ["FREE", "fault_aware_levels"]

#: A cell that is not stuck (any other value of a stuck map is the level the cell is stuck at).
FREE = -1


def _combinations(cfg: CrossbarConfig) -> tuple[np.ndarray, np.ndarray]:
    """Every slice combination ``[n, slices]`` (levels, LSB slice first) and the value ``u`` of each."""
    levels = np.array(list(itertools.product(range(cfg.max_level + 1), repeat=cfg.slices)), dtype=np.int64)[:, ::-1]
    weights = np.int64(1) << (np.arange(cfg.slices, dtype=np.int64) * cfg.cell_bits)
    return levels, levels @ weights


def fault_aware_levels(weights, cfg: CrossbarConfig, stuck) -> np.ndarray:
    """The cell levels ``[rows, cols]`` to program for weight block ``weights[n_rows, n_out]``
    on a crossbar whose stuck cells are ``stuck[rows, cols]`` (:data:`FREE`, or the level a
    cell is stuck at), columns as ``gen.cells.ideal_conductances`` lays them out.

    Weights with no stuck slice in a row with a healthy reference cell keep their plain
    slices; stuck cells are given their stuck level (what they will read anyway). Rows and
    outputs outside the block hold ``w = 0`` as usual.
    """
    w = check_weight_block(weights, cfg)
    stuck = np.asarray(stuck, dtype=np.int64)
    if stuck.shape != (cfg.rows, cfg.cols):
        raise ValueError(f"a stuck map must have shape [rows, cols] = [{cfg.rows}, {cfg.cols}], got {stuck.shape}")
    full = np.zeros((cfg.rows, cfg.outputs), dtype=np.int64)
    full[:w.shape[0], :w.shape[1]] = w
    n_rows, n_out, s = w.shape[0], w.shape[1], cfg.slices
    levels = np.zeros((cfg.rows, cfg.cols), dtype=np.int64)
    data = cell_levels(full, cfg)                                   # [rows, outputs, slices]
    ref = np.where(stuck[:, cfg.ref_col] == FREE, 1, stuck[:, cfg.ref_col])
    slice_stuck = stuck[:, :cfg.outputs * s].reshape(cfg.rows, cfg.outputs, s)
    fix = np.zeros((cfg.rows, cfg.outputs), dtype=bool)
    fix[:n_rows, :n_out] = (slice_stuck[:n_rows, :n_out] != FREE).any(axis=2) | (ref[:n_rows, None] != 1)
    if fix.any():
        combos, values = _combinations(cfg)
        target = full + cfg.weight_offset * ref[:, None]             # u with u - 2**(w-1)·ℓ_ref = w
        for r, o in zip(*np.nonzero(fix)):
            st = slice_stuck[r, o]
            ok = np.all((st == FREE) | (combos == st), axis=1)
            cand = np.flatnonzero(ok)
            data[r, o] = combos[cand[np.argmin(np.abs(values[cand] - target[r, o]))]]
    levels[:, :cfg.outputs * s] = data.reshape(cfg.rows, -1)
    levels[:, cfg.ref_col] = 1
    return np.where(stuck == FREE, levels, stuck)
