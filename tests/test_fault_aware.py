"""Fault-aware programming (gen.fault_aware): levels chosen around measured stuck cells.

Expected levels are worked out by hand below; the property test compares against the plain
offset-binary slices read with the stuck cells in place, computed here loop by loop.
"""
from __future__ import annotations

import numpy as np

from gen.config import CrossbarConfig
from gen.devices import DeviceModel, conductance_map, crossbar_conductances, stuck_map
from gen.fault_aware import FREE, fault_aware_levels

# 8-bit weights in 2-bit cells: 4 slices (values 1, 4, 16, 64), offset 128; 8 rows, 3 outputs
CFG = CrossbarConfig(rows=8, cols=13, cell_bits=2, w_bits=8, a_bits=8)


def _free():
    return np.full((CFG.rows, CFG.cols), FREE, dtype=np.int64)


def _value(levels_row, o):
    """u held by output ``o``'s slices, by hand: Σ l_k · 4**k."""
    return sum(int(levels_row[o * 4 + k]) * 4 ** k for k in range(4))


def test_a_stuck_middle_slice_is_absorbed_by_the_others():
    # w = 5: u = 133 = 2·64 + 0·16 + 1·4 + 1 -> slices [1, 1, 0, 2]. Slice 1 stuck at 3 (value 12):
    # plain cells read 1 + 12 + 128 = 141 (off by 8). Best with slice 1 = 3:
    # 12 + l0 + 16·l2 + 64·l3 nearest 133 -> l3 = 1, l2 = 3, l0 = 3: 127 (off by 6); l3 = 2 gives >= 140.
    stuck = _free()
    stuck[0, 1] = 3
    lv = fault_aware_levels(np.array([[5]]), CFG, stuck)
    assert list(lv[0, 0:4]) == [3, 3, 3, 1] and _value(lv[0], 0) == 127
    # every other weight and row keeps its plain slices (w = 0: u = 128 -> [0, 0, 0, 2])
    assert list(lv[1, 0:4]) == [0, 0, 0, 2] and lv[0, CFG.ref_col] == 1


def test_a_stuck_low_slice_costs_nothing_when_the_others_reach():
    # w = -126: u = 2 -> [2, 0, 0, 0]; slice 0 stuck at 0: 4·l1 + ... nearest 2 is 0 or 4 (both off by 2);
    # the search takes the first it meets, l = [0, 0, 0, 0] (combinations counted from 0).
    # w = -125: u = 3, slice 0 stuck at 3: exact with the rest 0.
    stuck = _free()
    stuck[0, 0] = 0
    stuck[1, 0] = 3
    lv = fault_aware_levels(np.array([[-126], [-125]]), CFG, stuck)
    assert _value(lv[0], 0) in (0, 4) and lv[0, 0] == 0
    assert list(lv[1, 0:4]) == [3, 0, 0, 0]


def test_a_stuck_reference_moves_the_targets_of_its_row():
    # reference stuck at 0: an output reads Σ x·(u - 128·0), so u = w itself: w = 5 -> [1, 1, 0, 0];
    # w = -3 cannot be held (u >= 0): the nearest is u = 0. Reference stuck at 3: u = w + 384 > 255,
    # so every weight of the row gets u = 255, the nearest.
    stuck = _free()
    stuck[0, CFG.ref_col] = 0
    stuck[1, CFG.ref_col] = 3
    lv = fault_aware_levels(np.array([[5, -3], [7, -100]]), CFG, stuck)
    assert list(lv[0, 0:4]) == [1, 1, 0, 0] and _value(lv[0], 1) == 0 and lv[0, CFG.ref_col] == 0
    assert _value(lv[1], 0) == _value(lv[1], 1) == 255 and lv[1, CFG.ref_col] == 3


def test_never_worse_than_the_plain_slices_weight_by_weight():
    """For every weight: |held - 128·ref - w| with fault-aware levels <= with the plain slices
    read through the same stuck cells (the plain slices are one of the candidates)."""
    rng = np.random.default_rng(4)
    for trial in range(20):
        w = rng.integers(-128, 128, (CFG.rows, CFG.outputs))
        stuck = np.where(rng.random((CFG.rows, CFG.cols)) < 0.15, rng.choice([0, 3], (CFG.rows, CFG.cols)), FREE)
        fa = fault_aware_levels(w, CFG, stuck)
        for r in range(CFG.rows):
            ref = 1 if stuck[r, CFG.ref_col] == FREE else stuck[r, CFG.ref_col]
            for o in range(CFG.outputs):
                u = int(w[r, o]) + 128
                plain = [(u >> (2 * k)) & 3 if stuck[r, o * 4 + k] == FREE else stuck[r, o * 4 + k] for k in range(4)]
                err_plain = abs(sum(lv * 4 ** k for k, lv in enumerate(plain)) - 128 * ref - w[r, o])
                err_fa = abs(_value(fa[r], o) - 128 * ref - w[r, o])
                assert err_fa <= err_plain, (trial, r, o)
                # stuck cells read what they are stuck at
                assert all(fa[r, o * 4 + k] == stuck[r, o * 4 + k] for k in range(4) if stuck[r, o * 4 + k] != FREE)


def test_stuck_map_is_what_the_conductance_map_sticks():
    cfg = CrossbarConfig(rows=16, cols=16, cell_bits=2, g_frac_bits=2)
    model = DeviceModel(stuck_at_0=0.05, stuck_at_1=0.05, variation=0.3, seed=9)
    levels = np.ones((16, 16), dtype=np.int64)
    g, st = conductance_map(levels, cfg, model, 3), stuck_map(cfg, model, 3)
    assert (st != FREE).sum() > 0
    assert np.all(g[st == 0] == 0) and np.all(g[st == 3] == 3 << 2)
    # without stuck rates nothing is stuck and fault-aware cells are the plain ones
    calm = DeviceModel(variation=0.3, seed=9)
    w = np.random.default_rng(1).integers(-128, 128, (16, cfg.outputs))
    assert np.all(stuck_map(cfg, calm, 0) == FREE)
    assert np.array_equal(crossbar_conductances(w, cfg, calm, 0, fault_aware=True), crossbar_conductances(w, cfg, calm, 0))
