"""The direct integer arithmetic of DESIGN.md §3, written once (numpy, int64).

Convolution, fully connected layers, requantization, pooling and residual joins on
integer codes, and :func:`apply_layer`, one layer of a network on them. The golden model
(``sim.golden``, which re-exports these names and adds the bit-exact crossbar path) and
the quantization helpers (``gen.quantize``) both use these functions; nothing else
re-states their formulas. ``M``/``s`` ranges are checked by ``gen.params`` (the one home
of that check).
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from gen.network import Add, GlobalAvgPool, MaxPool
from gen.params import AddParams, Requant, WeightParams

__all__ = ["as_int", "check_range", "add_bias", "im2col", "unroll_weights", "conv2d_int", "linear", "round_shift",
           "requantize", "maxpool2d", "global_avgpool", "residual_add", "weight_acc", "finish_weight_layer",
           "apply_layer"]


def as_int(a, name: str) -> np.ndarray:
    """``a`` as an ``int64`` array; ``ValueError`` naming ``name`` if it is not integer."""
    a = np.asarray(a)
    if not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"{name} must be an integer array, got dtype {a.dtype}")
    return a.astype(np.int64)


def check_range(a: np.ndarray, lo: int, hi: int, name: str) -> None:
    if a.size and (a.min() < lo or a.max() > hi):
        raise ValueError(f"{name} values must lie in [{lo}, {hi}], got [{a.min()}, {a.max()}]")


# --- convolution as a matrix product --------------------------------------------------
def im2col(x: np.ndarray, k: int, stride: int = 1, pad: int = 0) -> np.ndarray:
    """Unroll ``x[Cin,H,W]`` into windows ``[Ho, Wo, K*K*Cin]``.

    Row order inside a window is kernel-position major, ``(kh, kw, cin)``: the ``Cin``
    rows of kernel position ``(i, j)`` are contiguous, which is the row order of both
    mappings' weight matrices (see :func:`unroll_weights`).
    """
    x = as_int(x, "x")
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
    w = as_int(w, "w")
    if w.ndim != 4 or w.shape[2] != w.shape[3]:
        raise ValueError(f"w must have shape [Cout, Cin, K, K], got {w.shape}")
    cout = w.shape[0]
    return w.transpose(2, 3, 1, 0).reshape(-1, cout)


def add_bias(acc: np.ndarray, bias) -> np.ndarray:
    """``acc + bias``, ``bias`` (one value per output channel) broadcast along axis 0."""
    if bias is None:
        return acc
    b = as_int(bias, "bias")
    if b.shape != (acc.shape[0],):
        raise ValueError(f"bias must have shape ({acc.shape[0]},), got {b.shape}")
    return acc + b.reshape((-1,) + (1,) * (acc.ndim - 1))


def conv_operands(x, w) -> tuple[np.ndarray, np.ndarray]:
    """``x[Cin,H,W]`` and ``w[Cout,Cin,K,K]`` as int64, their shapes checked."""
    x, w = as_int(x, "x"), as_int(w, "w")
    if x.ndim != 3 or w.ndim != 4:
        raise ValueError(f"expected x[Cin,H,W] and w[Cout,Cin,K,K], got {x.shape} and {w.shape}")
    if w.shape[1] != x.shape[0]:
        raise ValueError(f"channel mismatch: x has Cin={x.shape[0]}, w expects Cin={w.shape[1]}")
    return x, w


def conv2d_int(x, w, bias=None, stride: int = 1, pad: int = 0) -> np.ndarray:
    """Plain integer convolution (cross-correlation): ``[Cout, Ho, Wo]`` int64."""
    x, w = conv_operands(x, w)
    cols = im2col(x, w.shape[2], stride, pad)
    acc = np.einsum("hwr,ro->ohw", cols, unroll_weights(w))
    return add_bias(acc, bias)


def linear(x, w, bias=None) -> np.ndarray:
    """Fully connected layer: ``x[N_in]`` uint, ``w[N_out, N_in]`` int -> int64 ``[N_out]``."""
    x, w = as_int(x, "x"), as_int(w, "w")
    if w.ndim != 2 or x.shape[-1] != w.shape[1]:
        raise ValueError(f"linear: x[..., {x.shape[-1]}] does not match w{list(w.shape)}")
    acc = x @ w.T
    if bias is not None:
        b = as_int(bias, "bias")
        if b.shape != (w.shape[0],):
            raise ValueError(f"bias must have shape ({w.shape[0]},), got {b.shape}")
        acc = acc + b
    return acc


# --- post-processing ----------------------------------------------------------------------
def round_shift(v, s: int):
    """``(v + 2**(s-1)) >> s`` (arithmetic), ``v`` itself for ``s == 0``.

    Plain operators only, so the same expression builds the RTL (``hw.post``) from
    Amaranth values and computes the golden result from numpy arrays.
    """
    return (v + (1 << (s - 1))) >> s if s else v


def requantize(acc, m: int, s: int, bias=None, a_bits: int = 8) -> np.ndarray:
    """Bias, fixed-point scale and ReLU-clamp: ``clamp(((acc+bias)*M + 2**(s-1)) >> s, 0, 2**a_bits-1)``.

    ``bias`` (one value per output channel) broadcasts along axis 0 of ``acc``. ``m``/``s``
    are checked by :class:`gen.params.Requant`.
    """
    rq = Requant(m, s)
    v = add_bias(as_int(acc, "acc"), bias)
    return np.clip(round_shift(v * rq.m, rq.s), 0, (1 << a_bits) - 1)


def maxpool2d(x, k: int = 2) -> np.ndarray:
    """k x k max-pool with stride k on ``x[C,H,W]`` (trailing rows/cols that do not fill a window are dropped)."""
    x = as_int(x, "x")
    c, h, w = x.shape
    if k < 1 or k > h or k > w:
        raise ValueError(f"pool size {k} does not fit a {h}x{w} feature map")
    ho, wo = h // k, w // k
    return x[:, :ho * k, :wo * k].reshape(c, ho, k, wo, k).max(axis=(2, 4))


def global_avgpool(x, m: int, s: int, a_bits: int = 8) -> np.ndarray:
    """Global average pool as ``(sum * M + 2**(s-1)) >> s`` per channel, clamped to ``a_bits``."""
    rq = Requant(m, s)
    x = as_int(x, "x")
    return np.clip(round_shift(x.sum(axis=(1, 2)) * rq.m, rq.s), 0, (1 << a_bits) - 1)


def residual_add(a, b, ma: int, mb: int, s: int, a_bits: int = 8) -> np.ndarray:
    """Residual join: ``clamp((a*Ma + b*Mb + 2**(s-1)) >> s, 0, 2**a_bits - 1)``."""
    p = AddParams(ma, mb, s)
    a, b = as_int(a, "a"), as_int(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"residual_add: shapes differ {a.shape} vs {b.shape}")
    return np.clip(round_shift(a * p.ma + b * p.mb, p.s), 0, (1 << a_bits) - 1)


# --- one layer of a network ---------------------------------------------------------------
def weight_acc(layer, p: WeightParams, x: np.ndarray) -> np.ndarray:
    """A ``Conv2d``/``Linear`` layer's accumulators (no bias) by :func:`conv2d_int` /
    :func:`linear`, shape ``[Cout, Ho, Wo]``."""
    if layer.kind == "fc":
        return linear(np.asarray(x).reshape(-1), p.w).reshape(-1, 1, 1)
    return conv2d_int(x, p.w, None, layer.stride, layer.pad)


def finish_weight_layer(acc: np.ndarray, p: WeightParams, raw: bool, a_bits: int) -> np.ndarray:
    """``acc + bias`` for a raw-output layer, else :func:`requantize` with ``p.requant``."""
    if raw:
        return add_bias(acc, p.bias)
    if p.requant is None:
        raise ValueError("requant is None, but the layer requantizes (it is not a raw-output layer)")
    return requantize(acc, p.requant.m, p.requant.s, p.bias, a_bits)


def apply_layer(layer, p, ins: list[np.ndarray], *, raw: bool, a_bits: int, acc_fn=weight_acc) -> np.ndarray:
    """One layer of a ``gen.network.Network`` on its inputs' codes.

    ``p`` is the layer's parameters (``gen.params``, of the kind
    ``gen.params.NetworkParams.check`` requires); ``acc_fn(layer, p, x)`` computes a
    weight layer's accumulators (default: the direct :func:`weight_acc`; the golden model
    passes its crossbar-exact plan walk). ``raw``: the layer outputs ``acc + bias``.
    """
    if layer.has_weights:
        return finish_weight_layer(acc_fn(layer, p, ins[0]), p, raw, a_bits)
    if isinstance(layer, MaxPool):
        return maxpool2d(ins[0], layer.k)
    if isinstance(layer, GlobalAvgPool):
        return global_avgpool(ins[0], p.requant.m, p.requant.s, a_bits).reshape(-1, 1, 1)
    if isinstance(layer, Add):
        return residual_add(ins[0], ins[1], p.ma, p.mb, p.s, a_bits)
    raise ValueError(f"layer {layer.name!r}: unsupported kind {type(layer).__name__}")  # pragma: no cover
