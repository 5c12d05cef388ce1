"""numpy golden model: the arithmetic of DESIGN.md §3, written once.

Everything here is vectorized over pixels and cells; the only Python loops run over the
bit-serial input cycles and over crossbar blocks, which are few. Integer results are
``int64``.  The RTL and the plan-executing model are checked against these functions.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from gen.config import CrossbarConfig

__all__ = [
    "im2col", "unroll_weights", "conv2d_int", "crossbar_mvm", "crossbar_levels", "adc",
    "conv2d_crossbar", "matmul_crossbar", "requantize", "maxpool2d", "global_avgpool",
    "residual_add", "linear",
]


def _as_int(a, name: str) -> np.ndarray:
    a = np.asarray(a)
    if not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"{name} must be an integer array, got dtype {a.dtype}")
    return a.astype(np.int64)


def _check_range(a: np.ndarray, lo: int, hi: int, name: str) -> None:
    if a.size and (a.min() < lo or a.max() > hi):
        raise ValueError(f"{name} values must lie in [{lo}, {hi}], got [{a.min()}, {a.max()}]")


# --- convolution as a matrix product --------------------------------------------------
def im2col(x: np.ndarray, k: int, stride: int = 1, pad: int = 0) -> np.ndarray:
    """Unroll ``x[Cin,H,W]`` into windows ``[Ho, Wo, K*K*Cin]``.

    Row order inside a window is kernel-position major, ``(kh, kw, cin)``: the ``Cin``
    rows of kernel position ``(i, j)`` are contiguous, which is the row order of both
    mappings' weight matrices (see :func:`unroll_weights`).
    """
    x = _as_int(x, "x")
    if x.ndim != 3:
        raise ValueError(f"x must have shape [Cin, H, W], got {x.shape}")
    if stride not in (1, 2):
        raise ValueError(f"stride={stride} is not allowed: stride must be 1 or 2")
    if pad < 0:
        raise ValueError(f"pad={pad} is not allowed: pad must be >= 0")
    cin, h, w = x.shape
    if k < 1 or k > h + 2 * pad or k > w + 2 * pad:
        raise ValueError(f"kernel K={k} does not fit the padded input {h + 2 * pad}x{w + 2 * pad}")
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))
    win = sliding_window_view(xp, (k, k), axis=(1, 2))[:, ::stride, ::stride]  # [Cin,Ho,Wo,K,K]
    ho, wo = win.shape[1], win.shape[2]
    return win.transpose(1, 2, 3, 4, 0).reshape(ho, wo, k * k * cin)


def unroll_weights(w: np.ndarray) -> np.ndarray:
    """``w[Cout,Cin,K,K]`` -> the im2col weight matrix ``[K*K*Cin, Cout]`` (rows ``(kh, kw, cin)``)."""
    w = _as_int(w, "w")
    if w.ndim != 4 or w.shape[2] != w.shape[3]:
        raise ValueError(f"w must have shape [Cout, Cin, K, K], got {w.shape}")
    cout = w.shape[0]
    return w.transpose(2, 3, 1, 0).reshape(-1, cout)


def _add_bias(acc: np.ndarray, bias) -> np.ndarray:
    if bias is None:
        return acc
    b = _as_int(bias, "bias")
    if b.shape != (acc.shape[0],):
        raise ValueError(f"bias must have shape ({acc.shape[0]},), got {b.shape}")
    return acc + b.reshape((-1,) + (1,) * (acc.ndim - 1))


def _conv_shapes(x, w):
    x, w = _as_int(x, "x"), _as_int(w, "w")
    if x.ndim != 3 or w.ndim != 4:
        raise ValueError(f"expected x[Cin,H,W] and w[Cout,Cin,K,K], got {x.shape} and {w.shape}")
    if w.shape[1] != x.shape[0]:
        raise ValueError(f"channel mismatch: x has Cin={x.shape[0]}, w expects Cin={w.shape[1]}")
    return x, w


def conv2d_int(x, w, bias=None, stride: int = 1, pad: int = 0) -> np.ndarray:
    """Plain integer convolution (cross-correlation): ``[Cout, Ho, Wo]`` int64."""
    x, w = _conv_shapes(x, w)
    cols = im2col(x, w.shape[2], stride, pad)
    acc = np.einsum("hwr,ro->ohw", cols, unroll_weights(w))
    return _add_bias(acc, bias)


def linear(x, w, bias=None) -> np.ndarray:
    """Fully connected layer: ``x[N_in]`` uint, ``w[N_out, N_in]`` int -> int64 ``[N_out]``."""
    x, w = _as_int(x, "x"), _as_int(w, "w")
    if w.ndim != 2 or x.shape[-1] != w.shape[1]:
        raise ValueError(f"linear: x[..., {x.shape[-1]}] does not match w{list(w.shape)}")
    acc = x @ w.T
    if bias is not None:
        b = _as_int(bias, "bias")
        if b.shape != (w.shape[0],):
            raise ValueError(f"bias must have shape ({w.shape[0]},), got {b.shape}")
        acc = acc + b
    return acc


# --- the crossbar -----------------------------------------------------------------------
def crossbar_levels(w, cfg: CrossbarConfig) -> np.ndarray:
    """Cell levels of a weight block: ``w[n_rows, n_out]`` -> ``[n_rows, n_out, slices]``.

    Offset binary ``u = w + 2**(w_bits-1)`` split into ``cell_bits`` slices, LSB slice first.
    """
    w = _as_int(w, "w")
    lo = -cfg.weight_offset
    _check_range(w, lo, cfg.weight_offset - 1, "w")
    u = w + cfg.weight_offset
    shifts = np.arange(cfg.slices, dtype=np.int64) * cfg.cell_bits
    return (u[..., None] >> shifts) & cfg.max_level


def adc(s: np.ndarray, cfg: CrossbarConfig) -> np.ndarray:
    """Saturating, optionally coarse ADC: ``min(S >> adc_shift, 2**adc_bits - 1) << adc_shift``."""
    return np.minimum(s >> cfg.adc_shift, cfg.adc_max_code) << cfg.adc_shift


def crossbar_mvm(x, w, cfg: CrossbarConfig) -> np.ndarray:
    """One row-block on one crossbar, bit-exact to DESIGN.md §3.

    ``x[..., n_rows]`` unsigned activations, ``w[n_rows, n_out]`` signed weights with
    ``n_rows <= cfg.rows`` and ``n_out <= cfg.outputs``. Returns int64 ``[..., n_out]``.
    """
    x, w = _as_int(x, "x"), _as_int(w, "w")
    if w.ndim != 2:
        raise ValueError(f"w must have shape [n_rows, n_out], got {w.shape}")
    n_rows, n_out = w.shape
    if n_rows > cfg.rows:
        raise ValueError(f"weight block has {n_rows} rows, the crossbar only {cfg.rows}")
    if n_out > cfg.outputs:
        raise ValueError(f"weight block has {n_out} outputs, the crossbar only {cfg.outputs}")
    if x.shape[-1] != n_rows:
        raise ValueError(f"x[..., {x.shape[-1]}] does not match w with {n_rows} rows")
    _check_range(x, 0, (1 << cfg.a_bits) - 1, "x")
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
    x, wmat = _as_int(x, "x"), _as_int(wmat, "wmat")
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
    x, w = _conv_shapes(x, w)
    cols = im2col(x, w.shape[2], stride, pad)
    acc = matmul_crossbar(cols, unroll_weights(w), cfg).transpose(2, 0, 1)
    return _add_bias(acc, bias)


# --- post-processing ----------------------------------------------------------------------
def _round_shift(v: np.ndarray, s: int) -> np.ndarray:
    if not 0 <= s <= 31:
        raise ValueError(f"shift s={s} is not allowed: s must be in [0, 31]")
    return (v + (1 << (s - 1))) >> s if s else v


def _check_mult(m: int, name: str = "M") -> None:
    if not 0 <= int(m) < (1 << 16):
        raise ValueError(f"{name}={m} is not allowed: {name} must be an unsigned 16-bit integer")


def requantize(acc, m: int, s: int, bias=None, a_bits: int = 8) -> np.ndarray:
    """Bias, fixed-point scale and ReLU-clamp: ``clamp(((acc+bias)*M + 2**(s-1)) >> s, 0, 2**a_bits-1)``.

    ``bias`` (one value per output channel) broadcasts along axis 0 of ``acc``.
    """
    _check_mult(m)
    v = _add_bias(_as_int(acc, "acc"), bias)
    return np.clip(_round_shift(v * int(m), s), 0, (1 << a_bits) - 1)


def maxpool2d(x, k: int = 2) -> np.ndarray:
    """k x k max-pool with stride k on ``x[C,H,W]`` (trailing rows/cols that do not fill a window are dropped)."""
    x = _as_int(x, "x")
    c, h, w = x.shape
    if k < 1 or k > h or k > w:
        raise ValueError(f"pool size {k} does not fit a {h}x{w} feature map")
    ho, wo = h // k, w // k
    return x[:, :ho * k, :wo * k].reshape(c, ho, k, wo, k).max(axis=(2, 4))


def global_avgpool(x, m: int, s: int, a_bits: int = 8) -> np.ndarray:
    """Global average pool as ``(sum * M + 2**(s-1)) >> s`` per channel, clamped to ``a_bits``."""
    _check_mult(m)
    x = _as_int(x, "x")
    return np.clip(_round_shift(x.sum(axis=(1, 2)) * int(m), s), 0, (1 << a_bits) - 1)


def residual_add(a, b, ma: int, mb: int, s: int, a_bits: int = 8) -> np.ndarray:
    """Residual join: ``clamp((a*Ma + b*Mb + 2**(s-1)) >> s, 0, 2**a_bits - 1)``."""
    _check_mult(ma, "Ma")
    _check_mult(mb, "Mb")
    a, b = _as_int(a, "a"), _as_int(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"residual_add: shapes differ {a.shape} vs {b.shape}")
    return np.clip(_round_shift(a * int(ma) + b * int(mb), s), 0, (1 << a_bits) - 1)


# --- whole networks ---------------------------------------------------------------------------
# A network's parameters are a dict ``{layer name: {...}}``:
#   Conv2d ``{"w": int [Cout, Cin, K, K], "bias": int [Cout], "m": M, "s": s}``
#   Linear ``{"w": int [N_out, N_in], "bias": int [N_out], "m": M, "s": s}``
#   GlobalAvgPool ``{"m": M, "s": s}``;  Add ``{"ma": Ma, "mb": Mb, "s": s}``;  MaxPool ``{}``.
# Every Conv2d/Linear requantizes (bias, M, s, ReLU clamp) except the network's last layer,
# which returns its raw accumulators plus bias (int64).

__all__ += ["run_network", "run_plan", "random_weights", "plan_layer_acc"]


def _layer_params(params: dict, name: str) -> dict:
    try:
        return params[name]
    except KeyError:
        raise ValueError(f"no parameters for layer {name!r}") from None


def _weight_acc_direct(layer, p: dict, x: np.ndarray) -> np.ndarray:
    """The layer's accumulators (no bias) by the direct golden functions, shape ``[Cout, Ho, Wo]``."""
    from gen.network import Linear
    if isinstance(layer, Linear):
        return linear(x.reshape(-1), p["w"]).reshape(-1, 1, 1)
    return conv2d_int(x, p["w"], None, layer.stride, layer.pad)


def _finish_weight_layer(acc: np.ndarray, p: dict, raw: bool, a_bits: int) -> np.ndarray:
    if raw:
        return _add_bias(acc, p.get("bias"))
    return requantize(acc, p["m"], p["s"], p.get("bias"), a_bits)


def _run(net, params: dict, x, acc_fn, a_bits: int, return_all: bool):
    from gen.network import INPUT, Add, GlobalAvgPool, MaxPool
    x = _as_int(x, "x")
    if x.shape != tuple(net.input_shape):
        raise ValueError(f"input has shape {x.shape}, network {net.name!r} expects {tuple(net.input_shape)}")
    _check_range(x, 0, (1 << a_bits) - 1, "x")
    acts = {INPUT: x}
    for layer in net.layers:
        ins = [acts[i] for i in layer.inputs]
        if layer.has_weights:
            p = _layer_params(params, layer.name)
            y = _finish_weight_layer(acc_fn(layer, p, ins[0]), p, net.is_raw_output(layer), a_bits)
        elif isinstance(layer, MaxPool):
            y = maxpool2d(ins[0], layer.k)
        elif isinstance(layer, GlobalAvgPool):
            p = _layer_params(params, layer.name)
            y = global_avgpool(ins[0], p["m"], p["s"], a_bits).reshape(-1, 1, 1)
        elif isinstance(layer, Add):
            p = _layer_params(params, layer.name)
            y = residual_add(ins[0], ins[1], p["ma"], p["mb"], p["s"], a_bits)
        else:  # pragma: no cover - the IR has no other layer kinds
            raise ValueError(f"layer {layer.name!r}: unsupported kind {type(layer).__name__}")
        acts[layer.name] = y
    return acts if return_all else acts[net.output]


def run_network(net, params: dict, x, *, a_bits: int = 8, return_all: bool = False):
    """Direct layer-by-layer golden model of a :class:`gen.network.Network`.

    ``x[C, H, W]`` unsigned activations. Returns the last layer's output (raw int64
    accumulators + bias, shape ``[C, H, W]``), or every layer's output as a dict when
    ``return_all``. Uses :func:`conv2d_int`, :func:`linear`, :func:`requantize`,
    :func:`maxpool2d`, :func:`global_avgpool` and :func:`residual_add`.
    """
    return _run(net, params, x, _weight_acc_direct, a_bits, return_all)


def _adder_tree(vals: list[np.ndarray]) -> np.ndarray:
    """Pairwise adder tree (adjacent pairs per level), as the hardware adds partial sums."""
    while len(vals) > 1:
        vals = [vals[i] + vals[i + 1] if i + 1 < len(vals) else vals[i] for i in range(0, len(vals), 2)]
    return vals[0]


def plan_layer_acc(lp, params: dict, x, cfg: CrossbarConfig) -> np.ndarray:
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
    x = _as_int(x, "x")
    w = _as_int(params["w"], "w")
    if isinstance(layer, Linear):
        cols = x.reshape(1, 1, -1)                       # one "pixel", R = in_features
        wmat = w.T
        xp = None
    else:
        cols = im2col(x, layer.k, layer.stride, layer.pad) if lp.mapping == "conventional" else None
        wmat = unroll_weights(w) if lp.mapping == "conventional" else None
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
            (r0, r1), (c0, c1) = p.rows, p.cols
            if p.kpos is None:
                xin = cols[y0:y1, x0:x1, r0:r1]
                wblk = wmat[r0:r1, c0:c1]
            else:
                i, j = p.kpos
                xin = xp[r0:r1, y0 * s + i:(y1 - 1) * s + i + 1:s, x0 * s + j:(x1 - 1) * s + j + 1:s]
                xin = xin.transpose(1, 2, 0)
                wblk = w[c0:c1, r0:r1, i, j].T
            psum = crossbar_mvm(xin, wblk, cfg)
            tree.setdefault(p.cols, {}).setdefault(p.tile, {}).setdefault(p.pe, []).append(psum)
        for (c0, c1), tiles in tree.items():
            tile_sums = [_adder_tree([_adder_tree(pe_ps) for _, pe_ps in sorted(pes.items())])
                         for _, pes in sorted(tiles.items())]
            out[y0:y1, x0:x1, c0:c1] = _adder_tree(tile_sums)
    return out.transpose(2, 0, 1)


def run_plan(plan, params: dict, x, *, return_all: bool = False):
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


def _scale_to_ms(scale: float) -> tuple[int, int]:
    """Fixed-point ``(M, s)`` with ``M / 2**s ~= scale``, ``M`` unsigned 16-bit, ``0 <= s <= 31``."""
    if scale <= 0:
        return 0, 0
    s = int(np.clip(np.floor(np.log2(65535.0 / scale)), 0, 31))
    m = int(min(65535, max(1, round(scale * (1 << s)))))
    return m, s


def random_weights(net, seed: int = 0, *, w_bits: int = 8, a_bits: int = 8, calibrate: bool | None = None) -> dict:
    """Random signed ``w_bits`` weights and per-layer requantization parameters for ``net``.

    Weights are uniform over the whole signed range. ``M, s`` of each layer are chosen so
    that its accumulators (std ``sigma``) map to a spread of about ``96`` codes, with a
    random bias within ``±sigma/4``, so activations are neither all 0 nor all saturated.
    With ``calibrate`` (default: networks up to 1 G MACs) ``sigma`` is measured on a random
    input image; otherwise it is estimated as ``sqrt(fan_in) * std(w) * 68``. Global average
    pools get ``M / 2**s ~= 1 / (H*W)``, residual joins ``(a + b + 1) >> 1``.
    """
    from gen.network import INPUT, Add, GlobalAvgPool, MaxPool
    rng = np.random.default_rng(seed)
    if calibrate is None:
        calibrate = net.macs <= 1_000_000_000
    lo, hi = -(1 << (w_bits - 1)), (1 << (w_bits - 1)) - 1
    w_std = (1 << w_bits) / np.sqrt(12.0)
    params: dict = {}
    acts = {INPUT: rng.integers(0, 1 << a_bits, size=net.input_shape)} if calibrate else None
    for layer in net.layers:
        if layer.has_weights:
            shape = (layer.cout, layer.cin, layer.k, layer.k) if layer.kind == "conv" else \
                (layer.out_features, layer.in_features)
            w = rng.integers(lo, hi + 1, size=shape, dtype=np.int64)
            p = {"w": w}
            if calibrate:
                acc = _weight_acc_direct(layer, p, acts[layer.inputs[0]])
                sigma = max(1.0, float(acc.std()))
            else:
                sigma = max(1.0, np.sqrt(layer.weight_rows) * w_std * 68.0)
            b = int(sigma / 4)
            p["bias"] = rng.integers(-b, b + 1, size=layer.weight_cols, dtype=np.int64)
            p["m"], p["s"] = _scale_to_ms(96.0 / sigma)
            params[layer.name] = p
            if calibrate:
                acts[layer.name] = _finish_weight_layer(acc, p, net.is_raw_output(layer), a_bits)
        elif isinstance(layer, GlobalAvgPool):
            _, h, w_ = net.in_shape(layer)
            params[layer.name] = dict(zip(("m", "s"), _scale_to_ms(1.0 / (h * w_))))
            if calibrate:
                p = params[layer.name]
                acts[layer.name] = global_avgpool(acts[layer.inputs[0]], p["m"], p["s"], a_bits).reshape(-1, 1, 1)
        elif isinstance(layer, Add):
            params[layer.name] = {"ma": 1, "mb": 1, "s": 1}
            if calibrate:
                acts[layer.name] = residual_add(acts[layer.inputs[0]], acts[layer.inputs[1]], 1, 1, 1, a_bits)
        elif isinstance(layer, MaxPool):
            params[layer.name] = {}
            if calibrate:
                acts[layer.name] = maxpool2d(acts[layer.inputs[0]], layer.k)
    return params
