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
