"""numpy golden model: the arithmetic of DESIGN.md §3, written once.

The direct integer functions (:func:`conv2d_int`, :func:`linear`, :func:`requantize`,
:func:`maxpool2d`, :func:`global_avgpool`, :func:`residual_add`, :func:`im2col`,
:func:`unroll_weights`) are defined in :mod:`gen.intops` (quantization in ``gen`` calibrates
with them) and re-exported here as part of this model's API; this module adds the
bit-exact crossbar path and the network/plan walks.

Everything here is vectorized over pixels and cells; the only Python loops run over the
bit-serial input cycles and over crossbar blocks, which are few. Integer results are
``int64``.  The RTL and the plan-executing model are checked against these functions.
"""
from __future__ import annotations

import numpy as np

from gen.cells import cell_levels
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
def crossbar_levels(w, cfg: CrossbarConfig) -> np.ndarray:
    """Cell levels of a weight block: ``w[n_rows, n_out]`` -> ``[n_rows, n_out, slices]``.

    Offset binary ``u = w + 2**(w_bits-1)`` split into ``cell_bits`` slices, LSB slice first:
    :func:`gen.cells.cell_levels`, the one home of the encoding (the RTL's cells read it too).
    """
    return cell_levels(w, cfg)


def adc(s: np.ndarray, cfg: CrossbarConfig) -> np.ndarray:
    """Saturating, optionally coarse ADC: ``min(S >> adc_shift, 2**adc_bits - 1) << adc_shift``."""
    return np.minimum(s >> cfg.adc_shift, cfg.adc_max_code) << cfg.adc_shift


def crossbar_mvm(x, w, cfg: CrossbarConfig) -> np.ndarray:
    """One row-block on one crossbar, bit-exact to DESIGN.md §3.

    ``x[..., n_rows]`` unsigned activations, ``w[n_rows, n_out]`` signed weights with
    ``n_rows <= cfg.rows`` and ``n_out <= cfg.outputs``. Returns int64 ``[..., n_out]``.
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
    levels = crossbar_levels(w, cfg).reshape(n_rows, n_out * cfg.slices)
    p = np.zeros(x.shape[:-1] + (n_out * cfg.slices,), dtype=np.int64)
    p_ref = np.zeros(x.shape[:-1], dtype=np.int64)
    for t in range(cfg.input_cycles):
        xt = (x >> (t * cfg.dac_bits)) & cfg.max_dac
        p += adc(xt @ levels, cfg) << (t * cfg.dac_bits)
        p_ref += adc(xt.sum(axis=-1), cfg) << (t * cfg.dac_bits)   # reference column: all levels 1
    p = p.reshape(x.shape[:-1] + (n_out, cfg.slices))
    slice_weight = np.int64(1) << (np.arange(cfg.slices, dtype=np.int64) * cfg.cell_bits)
    return (p * slice_weight).sum(axis=-1) - cfg.weight_offset * p_ref[..., None]


def matmul_crossbar(x, wmat, cfg: CrossbarConfig) -> np.ndarray:
    """``x[..., R] @ wmat[R, N]`` split into crossbar blocks of ``rows`` x ``outputs``.

    Column blocks are independent; the row-blocks' dot products are added (int32 in
    hardware; here int64, which holds every reachable sum).
    """
    x, wmat = as_int(x, "x"), as_int(wmat, "wmat")
    r, n = wmat.shape
    out = np.zeros(x.shape[:-1] + (n,), dtype=np.int64)
    for c0 in range(0, n, cfg.outputs):
        c1 = min(n, c0 + cfg.outputs)
        for r0 in range(0, r, cfg.rows):
            r1 = min(r, r0 + cfg.rows)
            out[..., c0:c1] += crossbar_mvm(x[..., r0:r1], wmat[r0:r1, c0:c1], cfg)
    return out


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


def _adder_tree(vals: list[np.ndarray]) -> np.ndarray:
    """Pairwise adder tree (adjacent pairs per level), as the hardware adds partial sums."""
    while len(vals) > 1:
        vals = [vals[i] + vals[i + 1] if i + 1 < len(vals) else vals[i] for i in range(0, len(vals), 2)]
    return vals[0]


def plan_layer_acc(lp, params: WeightParams, x, cfg: CrossbarConfig) -> np.ndarray:
    """One weight layer computed by walking its plan's placements: ``[Cout, Ho, Wo]`` int64.

    For every replica and its output rectangle, every placement's block is run with
    :func:`crossbar_mvm` on the inputs the mapping routes to it — conventional: the
    im2col window rows ``rows`` of the unrolled matrix; novel: channels ``rows`` of the
    input pixel at window position ``kpos`` — and the partial sums of one column-block are
    added in the hardware's order: inside a PE (subarray order), an adder tree over the
    PEs of a tile (for the novel mapping: the ``K*K`` kernel positions), then an adder
    tree over the tiles.
    """
    from gen.network import Linear
    layer = lp.layer
    x = as_int(x, "x")
    if isinstance(layer, Linear):
        cols = x.reshape(1, 1, -1)                       # one "pixel", R = in_features
        xp = None
    else:
        cols = im2col(x, layer.k, layer.stride, layer.pad) if lp.mapping == "conventional" else None
        xp = np.pad(x, ((0, 0), (layer.pad, layer.pad), (layer.pad, layer.pad)))
    cout, ho, wo = lp.out_shape
    out = np.zeros((ho, wo, cout), dtype=np.int64)
    s = getattr(layer, "stride", 1)
    by_rep: dict[int, list] = {}
    for p in lp.placements:
        by_rep.setdefault(p.replica, []).append(p)
    for rep, pls in sorted(by_rep.items()):
        y0, y1, x0, x1 = lp.regions[rep]
        # column block -> tile -> pe -> [partial sums in subarray order]
        tree: dict[tuple[int, int], dict[int, dict[int, list]]] = {}
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
    """The network computed by walking a :class:`gen.mapping.MappingPlan`.

    Weight layers go through :func:`plan_layer_acc` (every placement on
    :func:`crossbar_mvm`, partial sums in the mapping's order); bias, requantization,
    pooling and residual joins are the same functions :func:`run_network` uses. With a
    lossless ADC the result equals :func:`run_network` bit for bit, for every mapping.
    """
    cfg = plan.chip.crossbar
    lps = {lp.name: lp for lp in plan.layers}

    def acc_fn(layer, p, x):
        return plan_layer_acc(lps[layer.name], p, x, cfg)

    return _run(plan.network, params, x, acc_fn, cfg.a_bits, return_all)
