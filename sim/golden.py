"""numpy golden model: the arithmetic of DESIGN.md §3, written once.

The direct integer functions (:func:`conv2d_int`, :func:`linear`, :func:`requantize`,
:func:`maxpool2d`, :func:`global_avgpool`, :func:`residual_add`, :func:`im2col`,
:func:`unroll_weights`) are defined in :mod:`gen.intops` (quantization in ``gen`` calibrates
with them) and re-exported here as part of this model's API; this module adds the
bit-exact crossbar path and the network/plan walks.

Everything here is vectorized over pixels and cells: the crossbar-exact path runs as
bit-plane matrix products in BLAS (exact, see the bound under "the crossbar"), the ADC and
the shift-add on whole arrays, the crossbars that share their input rows in one pass, and
chunks of pixels on two threads; the only Python loops run over row ranges and chunks.
Integer results are ``int64``. The RTL and the plan-executing model are checked against
these functions.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np

from gen.cells import cell_levels, check_conductances
from gen.config import CrossbarConfig
from gen.intops import (add_bias, apply_layer, as_int, check_range, conv2d_int, conv_operands, global_avgpool,
                        im2col, linear, maxpool2d, requantize, residual_add, unroll_weights, weight_acc)
from gen.params import NetworkParams, WeightParams

__all__ = [
    "im2col", "unroll_weights", "conv2d_int", "crossbar_mvm", "crossbar_levels", "adc",
    "conv2d_crossbar", "matmul_crossbar", "requantize", "maxpool2d", "global_avgpool",
    "residual_add", "linear",
]


# --- the crossbar -----------------------------------------------------------------------
# The crossbar-exact path is computed as bit-plane matrix products. For a block of inputs
# X[P, n] (P pixels, n rows) and the physical columns' cells L[n, C] (levels, or
# conductances in units of 2**-F of one level), input cycle t gives the column sums
#   S_t = X_t @ L,     X_t = (X >> t*dac_bits) & (2**dac_bits - 1),
# all T input cycles of a chunk of pixels in ONE BLAS product ([T*P, n] @ [n, C]); the ADC
# then works on the whole [T, P, C] array, and the shift-add over t is one more product with
# the vector 2**(t*dac_bits).
#
# Exactness of floating-point BLAS (the bound): every operand is a non-negative integer
# (bits x_t in [0, 2**dac_bits - 1], cells g in [0, 2**(cell_bits+F) - 1]), so every partial
# sum a BLAS kernel forms, in whatever order and with or without FMA, is a non-negative
# integer no larger than the complete column sum S_max = n * (2**dac_bits - 1) * g_max.
# An IEEE binary32 holds every integer up to 2**24, a binary64 every integer up to 2**53;
# when S_max < 2**24 we use float32, otherwise float64, where S_max < 2**12 * 2**16 * 2**(4+F)
# (rows <= 4096, dac_bits <= a_bits <= 16, cell_bits <= 4) stays far below 2**53 for any
# F <= 16. The ADC on floats: floor(S * 2**-(F+adc_shift)) is exact (scaling by a power of
# two is exact, floor of an exact value is exact), min() and the scale back by 2**adc_shift
# too. The shift-add over t forms non-negative partial sums bounded by
# Q * (2**a_bits - 1) / (2**dac_bits - 1) with Q the largest converted value, checked
# against the same 2**24 / 2**53 limits (float64 below 2**48 always). The slices and the
# reference correction are combined in int64. Hence the result equals the integer
# arithmetic of DESIGN.md §3 bit for bit (tests/test_golden_fast.py compares it with the
# previous int64 implementation on random configurations).

_CHUNK_ELEMS = 1 << 21          # column sums per chunk (T * pixels * columns): ~8 MB float32


def crossbar_levels(w, cfg: CrossbarConfig) -> np.ndarray:
    """Cell levels of a weight block: ``w[n_rows, n_out]`` -> ``[n_rows, n_out, slices]``.

    Offset binary ``u = w + 2**(w_bits-1)`` split into ``cell_bits`` slices, LSB slice first:
    :func:`gen.cells.cell_levels`, the one home of the encoding (the RTL's cells read it too).
    """
    return cell_levels(w, cfg)


def adc(s: np.ndarray, cfg: CrossbarConfig) -> np.ndarray:
    """Saturating, optionally coarse ADC on integer column sums:
    ``min(S >> (F + adc_shift), 2**adc_bits - 1) << adc_shift`` (``F = g_frac_bits``, 0 for ideal cells)."""
    return np.minimum(s >> (cfg.g_frac_bits + cfg.adc_shift), cfg.adc_max_code) << cfg.adc_shift


def _exact_float(bound: int):
    """The narrowest float type holding every integer in ``[0, bound]`` exactly: float32 below
    2**24, float64 below 2**53; ``None`` beyond (then the caller works in int64)."""
    if bound < (1 << 24):
        return np.float32
    return np.float64 if bound < (1 << 53) else None


def _threads() -> int:
    """Worker threads for the chunk loop: numpy's elementwise kernels and single-threaded
    BLAS calls release the GIL, so chunks run side by side on the machine's cores (at most 2
    here: the golden model is one of several jobs a machine runs)."""
    return max(1, min(2, os.cpu_count() or 1))


def _row_block_acc(x2d: np.ndarray, blocks, cfg: CrossbarConfig) -> np.ndarray:
    """Several crossbars that share their input rows, computed together (see the bound above).

    ``x2d[P, n]`` unsigned inputs; ``blocks``: list of ``(n_out_i, cells_i, own_ref_i)`` with
    ``cells_i`` the crossbar's used cells, non-negative, ``[n, n_out_i*slices]`` (ideal
    levels, ``own_ref_i`` False) or ``[n, n_out_i*slices + 1]`` (physical cells in units of
    ``2**-F`` of a level, the crossbar's own reference column last, ``own_ref_i`` True).
    Ideal crossbars share one reference column of level-1 cells (its sum depends only on the
    inputs). Returns int64 ``[P, sum n_out_i]``, the blocks' dot products side by side.
    """
    P, n = x2d.shape
    T, dac, F, sl = cfg.input_cycles, cfg.dac_bits, cfg.g_frac_bits, cfg.slices
    n_tot = sum(b[0] for b in blocks)
    out = np.empty((P, n_tot), dtype=np.int64)
    if P == 0 or n_tot == 0:
        return out
    # ideal levels become conductances level << F (DESIGN.md §3), so one ADC serves both kinds
    parts = [cells if own else cells << F for _, cells, own in blocks]
    shared_ref = sum(p.shape[1] for p in parts)
    if not all(own for _, _, own in blocks):
        parts.append(np.full((n, 1), 1 << F, dtype=np.int64))
    cells = np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]
    C = cells.shape[1]
    # the bounds (all partial sums are non-negative integers below them)
    s_max = n * cfg.max_dac * (int(cells.max()) if cells.size else 0)      # column sum
    cut = F + cfg.adc_shift
    maxcode = cfg.adc_max_code
    clips = (s_max >> cut) > maxcode                                      # else min() never bites
    q_max = min(s_max >> cut, maxcode) << cfg.adc_shift                   # converted value
    v_max = q_max * (((1 << cfg.a_bits) - 1) // cfg.max_dac)             # shift-added over t
    d_max = v_max * ((1 << cfg.w_bits) - 1) + cfg.weight_offset * v_max   # |slices combined| + |ref term|
    ft, vt, dt = _exact_float(s_max), _exact_float(v_max), _exact_float(d_max)
    if ft is None or vt is None:                                          # pragma: no cover
        raise ValueError(f"column sums up to {v_max} do not fit float64 exactly")
    cf = np.ascontiguousarray(cells, dtype=ft)
    xs = x2d.astype(np.uint8 if cfg.a_bits <= 8 else np.uint16)
    shifts = (np.arange(T, dtype=xs.dtype) * dac)[:, None, None]
    mask = xs.dtype.type(cfg.max_dac)
    pow_t = (2.0 ** (np.arange(T) * dac)).astype(vt)
    slice_w = (2.0 ** (np.arange(sl) * cfg.cell_bits)).astype(dt or np.float64)
    scale_down, scale_up = ft(2.0 ** -cut), ft(2.0 ** cfg.adc_shift)
    layout, c, o = [], 0, 0
    for n_out, cb, own in blocks:
        layout.append((o, n_out, c, c + cb.shape[1] - 1 if own else shared_ref))
        c += cb.shape[1]
        o += n_out

    def work(p0: int, p1: int) -> None:
        planes = ((xs[None, p0:p1] >> shifts) & mask).astype(ft)           # [T, Pc, n] input bits
        s = planes.reshape(-1, n) @ cf                                     # [T*Pc, C] column sums
        if cut:
            s *= scale_down
            np.floor(s, out=s)
        if clips:
            np.minimum(s, ft(maxcode), out=s)
        if cfg.adc_shift:
            s *= scale_up
        s = s.reshape(T, p1 - p0, C)
        v = np.tensordot(pow_t, s if vt is ft else s.astype(vt), axes=(0, 0))   # [Pc, C] shift-add over t
        v = v.astype(dt) if dt is not None else v.astype(np.int64)
        for o0, n_out, c0, ref in layout:
            data = v[:, c0:c0 + n_out * sl].reshape(p1 - p0, n_out, sl)
            dots = (data @ slice_w.astype(v.dtype)) if dt is not None else (data * slice_w.astype(np.int64)).sum(-1)
            out[p0:p1, o0:o0 + n_out] = dots - cfg.weight_offset * v[:, ref:ref + 1]

    step = max(1, _CHUNK_ELEMS // (T * max(C, n)))
    chunks = [(p0, min(P, p0 + step)) for p0 in range(0, P, step)]
    if len(chunks) == 1 or _threads() == 1:
        for ch in chunks:
            work(*ch)
    else:
        with _blas_single_thread(), ThreadPoolExecutor(_threads()) as pool:
            list(pool.map(lambda ch: work(*ch), chunks))
    return out


@contextmanager
def _blas_single_thread():
    """BLAS on one thread while our own threads split the chunks (no oversubscription)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:                                                   # pragma: no cover
        yield
        return
    with threadpool_limits(1, user_api="blas"):
        yield


def _physical_cells(g, n_rows: int, n_out: int, cfg: CrossbarConfig) -> np.ndarray:
    """The used cells of a crossbar's conductances ``g[rows, cols]``: rows ``< n_rows``,
    the data columns ``o*slices + k`` of outputs ``o < n_out``, then the reference column."""
    g = check_conductances(g, cfg)
    return np.concatenate([g[:n_rows, :n_out * cfg.slices], g[:n_rows, cfg.ref_col:]], axis=1)


def crossbar_mvm(x, w, cfg: CrossbarConfig, conductances=None) -> np.ndarray:
    """One row-block on one crossbar, bit-exact to DESIGN.md §3.

    ``x[..., n_rows]`` unsigned activations, ``w[n_rows, n_out]`` signed weights with
    ``n_rows <= cfg.rows`` and ``n_out <= cfg.outputs``. Returns int64 ``[..., n_out]``.
    ``conductances``: ``None`` (ideal cells, the levels of ``w``) or the crossbar's physical
    cells, int ``[cfg.rows, cfg.cols]`` in units of ``2**-g_frac_bits`` of one level
    (DESIGN.md §3 "Non-ideal cells"; columns as the crossbar stores them, the reference
    column last); then ``w`` gives only the block's shape.
    """
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
    if conductances is None:
        block = (n_out, crossbar_levels(w, cfg).reshape(n_rows, -1), False)
    else:
        block = (n_out, _physical_cells(conductances, n_rows, n_out, cfg), True)
    return _row_block_acc(x.reshape(-1, n_rows), [block], cfg).reshape(x.shape[:-1] + (n_out,))


def matmul_crossbar(x, wmat, cfg: CrossbarConfig) -> np.ndarray:
    """``x[..., R] @ wmat[R, N]`` split into crossbar blocks of ``rows`` x ``outputs``.

    Column blocks are independent; the row-blocks' dot products are added (int32 in
    hardware; here int64, which holds every reachable sum, so the order of the additions
    does not matter). The column blocks of one row-block share their inputs and are
    computed in one pass (:func:`_row_block_acc`).
    """
    x, wmat = as_int(x, "x"), as_int(wmat, "wmat")
    r, n = wmat.shape
    check_range(x, 0, (1 << cfg.a_bits) - 1, "x")
    x2d = x.reshape(-1, r)
    out = np.zeros((x2d.shape[0], n), dtype=np.int64)
    for r0 in range(0, r, cfg.rows):
        r1 = min(r, r0 + cfg.rows)
        # the column blocks side by side: their levels are one slice of the whole matrix's
        out += _row_block_acc(x2d[:, r0:r1], [(n, crossbar_levels(wmat[r0:r1], cfg).reshape(r1 - r0, -1), False)], cfg)
    return out.reshape(x.shape[:-1] + (n,))


def conv2d_crossbar(x, w, bias=None, stride: int = 1, pad: int = 0, *, cfg: CrossbarConfig) -> np.ndarray:
    """Convolution computed the crossbar way: im2col, row-blocks, :func:`crossbar_mvm`.

    Equals :func:`conv2d_int` whenever ``cfg.is_lossless``.
    """
    x, w = conv_operands(x, w)
    cols = im2col(x, w.shape[2], stride, pad)
    acc = matmul_crossbar(cols, unroll_weights(w), cfg).transpose(2, 0, 1)
    return add_bias(acc, bias)


# --- whole networks ---------------------------------------------------------------------------
# A network's parameters are a gen.params.NetworkParams (or any mapping of layer name to
# gen.params objects): WeightParams for Conv2d/Linear, PoolParams for GlobalAvgPool,
# AddParams for Add, NoParams for MaxPool. Every Conv2d/Linear requantizes (bias, M, s,
# ReLU clamp) except the network's last layer, which returns its raw accumulators plus bias
# (int64).

__all__ += ["run_network", "run_plan", "plan_layer_acc"]


def _run(net, params, x, acc_fn, a_bits: int, return_all: bool):
    from gen.network import INPUT
    params = NetworkParams.of(params)
    params.check(net)
    x = as_int(x, "x")
    if x.shape != tuple(net.input_shape):
        raise ValueError(f"input has shape {x.shape}, network {net.name!r} expects {tuple(net.input_shape)}")
    check_range(x, 0, (1 << a_bits) - 1, "x")
    acts = {INPUT: x}
    for layer in net.layers:
        acts[layer.name] = apply_layer(layer, params[layer.name], [acts[i] for i in layer.inputs],
                                       raw=net.is_raw_output(layer), a_bits=a_bits, acc_fn=acc_fn)
    return acts if return_all else acts[net.output]


def run_network(net, params, x, *, a_bits: int = 8, return_all: bool = False):
    """Direct layer-by-layer golden model of a :class:`gen.network.Network`.

    ``params``: :class:`gen.params.NetworkParams`. ``x[C, H, W]`` unsigned activations.
    Returns the last layer's output (raw int64 accumulators + bias, shape ``[C, H, W]``),
    or every layer's output as a dict when ``return_all``. Uses :func:`conv2d_int`,
    :func:`linear`, :func:`requantize`, :func:`maxpool2d`, :func:`global_avgpool` and
    :func:`residual_add` (through :func:`gen.intops.apply_layer`).
    """
    return _run(net, params, x, weight_acc, a_bits, return_all)


def _pixels(regions, wo: int) -> np.ndarray:
    """Flat output-pixel indices (``y*wo + x``) of a list of ``(y0, y1, x0, x1)`` rectangles."""
    idx = [(np.arange(y0, y1)[:, None] * wo + np.arange(x0, x1)[None, :]).ravel() for y0, y1, x0, x1 in regions]
    return np.concatenate(idx) if idx else np.zeros(0, dtype=np.int64)


def plan_layer_acc(lp, params: WeightParams, x, cfg: CrossbarConfig, conductances=None) -> np.ndarray:
    """One weight layer computed by walking its plan's placements: ``[Cout, Ho, Wo]`` int64.

    For every replica and its output rectangle, every placement's block is run as a
    crossbar (the arithmetic of :func:`crossbar_mvm`) on the inputs the mapping routes to
    it — conventional: the im2col window rows ``rows`` of the unrolled matrix; novel:
    channels ``rows`` of the input pixel at window position ``kpos``, which are the rows
    :meth:`gen.mapping.Placement.matrix_rows` of the same im2col window — and the partial
    sums of one column-block are added. The hardware adds them in its order (inside a PE,
    an adder tree over a tile's PEs, an adder tree over the tiles); the sums here are int64,
    which holds every reachable value, so any order gives the same integers.

    For speed, the placements that share their input rows are computed in one pass of
    bit-plane products, and replicas with the same placement structure over all their
    pixels together (an ideal crossbar's result depends only on its weights and inputs).
    ``conductances``: ``None`` (ideal) or a mapping ``{Placement: int [rows, cols]}`` of the
    crossbars' physical cells (DESIGN.md §3 non-ideal cells; placements missing from it
    are ideal).
    """
    from gen.network import Linear
    layer = lp.layer
    x = as_int(x, "x")
    check_range(x, 0, (1 << cfg.a_bits) - 1, "x")
    cout, ho, wo = lp.out_shape
    if isinstance(layer, Linear):
        cols, cin, k = x.reshape(1, -1), 0, 1                  # one "pixel", R = in_features
    else:
        cin, k = layer.cin, layer.k
        # padding pixels hold the input's zero point (the bias has -z_in*Σw folded in)
        cols = im2col(x, k, layer.stride, layer.pad, params.z_in).reshape(ho * wo, -1)
    out = np.zeros((ho * wo, cout), dtype=np.int64)
    cond = conductances or {}
    by_rep: dict[int, list] = {}
    for p in lp.placements:
        by_rep.setdefault(p.replica, []).append(p)
    # replicas with the same blocks (and ideal cells) share one computation over their pixels
    groups: dict[tuple, list[int]] = {}
    for rep, pls in sorted(by_rep.items()):
        own = any(p in cond for p in pls)
        key = (rep if own else None,) + tuple(sorted((p.matrix_rows(cin, k), p.cols) for p in pls))
        groups.setdefault(key, []).append(rep)
    # the layer's unrolled (kh, kw, cin) x cout matrix and its cell levels, once: a placement's
    # block is wmat[p.matrix_rows, p.cols] (== params.block(p), which copies the whole kernel)
    wmat = unroll_weights(params.kernel)
    levels = crossbar_levels(wmat, cfg).reshape(wmat.shape[0], -1)
    sl = cfg.slices
    for reps in groups.values():
        idx = _pixels([lp.regions[r] for r in reps], wo)
        whole = len(idx) == ho * wo and np.array_equal(idx, np.arange(ho * wo))
        xg = cols if whole else cols[idx]
        by_rows: dict[tuple[int, int], list] = {}
        for p in by_rep[reps[0]]:
            by_rows.setdefault(p.matrix_rows(cin, k), []).append(p)
        for (r0, r1), pls in by_rows.items():
            pls = sorted(pls, key=lambda q: q.cols)
            colidx = np.concatenate([np.arange(*p.cols) for p in pls])
            contiguous = np.array_equal(colidx, np.arange(colidx[0], colidx[0] + len(colidx)))
            if contiguous and not any(p in cond for p in pls):
                c0, c1 = colidx[0], colidx[0] + len(colidx)
                blocks = [(c1 - c0, levels[r0:r1, c0 * sl:c1 * sl], False)]
            else:
                blocks = [(p.cols[1] - p.cols[0], _physical_cells(cond[p], r1 - r0, p.cols[1] - p.cols[0], cfg), True)
                          if p in cond else
                          (p.cols[1] - p.cols[0], levels[r0:r1, p.cols[0] * sl:p.cols[1] * sl], False) for p in pls]
            acc = _row_block_acc(xg[:, r0:r1], blocks, cfg)
            if whole and contiguous:
                out[:, colidx[0]:colidx[0] + len(colidx)] += acc
            else:
                out[np.ix_(idx, colidx)] += acc
    return out.T.reshape(cout, ho, wo)


def run_plan(plan, params, x, *, return_all: bool = False, conductances=None):
    """The network computed by walking a :class:`gen.mapping.MappingPlan`.

    Weight layers go through :func:`plan_layer_acc` (every placement as a crossbar, bit-exact
    to :func:`crossbar_mvm`); bias, requantization, pooling and residual joins are the same
    functions :func:`run_network` uses. With a lossless ADC and ideal cells the result equals
    :func:`run_network` bit for bit, for every mapping. ``conductances``: ``None`` (ideal) or
    ``{Placement: int [rows, cols]}`` for the crossbars with non-ideal cells.
    """
    cfg = plan.chip.crossbar
    lps = {lp.name: lp for lp in plan.layers}

    def acc_fn(layer, p, x):
        return plan_layer_acc(lps[layer.name], p, x, cfg, conductances)

    return _run(plan.network, params, x, acc_fn, cfg.a_bits, return_all)
