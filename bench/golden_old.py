"""The crossbar-exact golden model as it was before the bit-plane rewrite (commit b68346b).

A verbatim copy of ``sim.golden``'s crossbar functions, kept only so that
``bench/golden_speed.py`` can measure the speed-up; not part of the package.
"""
from __future__ import annotations

import numpy as np

from gen.cells import cell_levels
from gen.config import CrossbarConfig
from gen.intops import as_int, check_range, im2col
from gen.params import WeightParams


def adc(s, cfg: CrossbarConfig):
    return np.minimum(s >> cfg.adc_shift, cfg.adc_max_code) << cfg.adc_shift


def crossbar_mvm(x, w, cfg: CrossbarConfig):
    x, w = as_int(x, "x"), as_int(w, "w")
    if w.ndim != 2:
        raise ValueError(f"w must have shape [n_rows, n_out], got {w.shape}")
    n_rows, n_out = w.shape
    if n_rows > cfg.rows:
        raise ValueError(f"weight block has {n_rows} rows, the crossbar only {cfg.rows}")
    if n_out > cfg.outputs:
        raise ValueError(f"weight block has {n_out} outputs, the crossbar only {cfg.outputs}")
    if x.shape[-1] != n_rows:
        raise ValueError(f"x[..., {x.shape[-1]}] does not match w with {n_rows} rows")
    check_range(x, 0, (1 << cfg.a_bits) - 1, "x")
    levels = cell_levels(w, cfg).reshape(n_rows, n_out * cfg.slices)
    p = np.zeros(x.shape[:-1] + (n_out * cfg.slices,), dtype=np.int64)
    p_ref = np.zeros(x.shape[:-1], dtype=np.int64)
    for t in range(cfg.input_cycles):
        xt = (x >> (t * cfg.dac_bits)) & cfg.max_dac
        p += adc(xt @ levels, cfg) << (t * cfg.dac_bits)
        p_ref += adc(xt.sum(axis=-1), cfg) << (t * cfg.dac_bits)
    p = p.reshape(x.shape[:-1] + (n_out, cfg.slices))
    slice_weight = np.int64(1) << (np.arange(cfg.slices, dtype=np.int64) * cfg.cell_bits)
    return (p * slice_weight).sum(axis=-1) - cfg.weight_offset * p_ref[..., None]


def matmul_crossbar(x, wmat, cfg: CrossbarConfig):
    x, wmat = as_int(x, "x"), as_int(wmat, "wmat")
    r, n = wmat.shape
    out = np.zeros(x.shape[:-1] + (n,), dtype=np.int64)
    for c0 in range(0, n, cfg.outputs):
        c1 = min(n, c0 + cfg.outputs)
        for r0 in range(0, r, cfg.rows):
            r1 = min(r, r0 + cfg.rows)
            out[..., c0:c1] += crossbar_mvm(x[..., r0:r1], wmat[r0:r1, c0:c1], cfg)
    return out


def _adder_tree(vals):
    while len(vals) > 1:
        vals = [vals[i] + vals[i + 1] if i + 1 < len(vals) else vals[i] for i in range(0, len(vals), 2)]
    return vals[0]


def plan_layer_acc(lp, params: WeightParams, x, cfg: CrossbarConfig):
    from gen.network import Linear
    layer = lp.layer
    x = as_int(x, "x")
    if isinstance(layer, Linear):
        cols = x.reshape(1, 1, -1)
        xp = None
    else:
        cols = im2col(x, layer.k, layer.stride, layer.pad) if lp.mapping == "conventional" else None
        xp = np.pad(x, ((0, 0), (layer.pad, layer.pad), (layer.pad, layer.pad)))
    cout, ho, wo = lp.out_shape
    out = np.zeros((ho, wo, cout), dtype=np.int64)
    s = getattr(layer, "stride", 1)
    by_rep: dict = {}
    for p in lp.placements:
        by_rep.setdefault(p.replica, []).append(p)
    for rep, pls in sorted(by_rep.items()):
        y0, y1, x0, x1 = lp.regions[rep]
        tree: dict = {}
        for p in sorted(pls, key=lambda q: (q.tile, q.pe, q.subarray)):
            r0, r1 = p.rows
            if p.kpos is None:
                xin = cols[y0:y1, x0:x1, r0:r1]
            else:
                i, j = p.kpos
                xin = xp[r0:r1, y0 * s + i:(y1 - 1) * s + i + 1:s, x0 * s + j:(x1 - 1) * s + j + 1:s]
                xin = xin.transpose(1, 2, 0)
            psum = crossbar_mvm(xin, params.block(p), cfg)
            tree.setdefault(p.cols, {}).setdefault(p.tile, {}).setdefault(p.pe, []).append(psum)
        for (c0, c1), tiles in tree.items():
            tile_sums = [_adder_tree([_adder_tree(pe_ps) for _, pe_ps in sorted(pes.items())])
                         for _, pes in sorted(tiles.items())]
            out[y0:y1, x0:x1, c0:c1] = _adder_tree(tile_sums)
    return out.transpose(2, 0, 1)


def run_plan(plan, params, x, *, return_all: bool = False):
    """The old plan walk on the current ``sim.golden`` network walk (only the crossbar
    arithmetic differs)."""
    from sim import golden
    cfg = plan.chip.crossbar
    lps = {lp.name: lp for lp in plan.layers}

    def acc_fn(layer, p, x):
        return plan_layer_acc(lps[layer.name], p, x, cfg)

    return golden._run(plan.network, params, x, acc_fn, cfg.a_bits, return_all)
