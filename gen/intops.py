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

from gen.params import AddParams, PoolParams, Requant, WeightParams

__all__ = ["as_int", "check_range", "add_bias", "im2col", "unroll_weights", "conv2d_int", "linear", "round_shift",
           "requantize", "maxpool2d", "pool_windows", "streamed_pool_refusal", "avgpool2d", "global_avgpool",
           "residual_add", "concat", "weight_acc", "finish_weight_layer", "apply_layer", "fold_zero_point"]


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
def _pads(pad) -> tuple[int, int, int, int]:
    """``pad`` (an int, or ``(top, left, bottom, right)``) as four ints, each >= 0."""
    p = (pad,) * 4 if isinstance(pad, (int, np.integer)) else tuple(pad)
    if len(p) != 4 or any((not isinstance(v, (int, np.integer))) or v < 0 for v in p):
        raise ValueError(f"pad={pad!r} is not allowed: pad must be an integer >= 0 or (top, left, bottom, right)")
    return tuple(int(v) for v in p)


def im2col(x: np.ndarray, k: int, stride: int = 1, pad=0, pad_value: int = 0) -> np.ndarray:
    """Unroll ``x[Cin,H,W]`` into windows ``[Ho, Wo, K*K*Cin]``; padding pixels hold ``pad_value``
    (the input's zero point, DESIGN.md §3). ``pad``: an int or ``(top, left, bottom, right)``.

    Row order inside a window is kernel-position major, ``(kh, kw, cin)``: the ``Cin``
    rows of kernel position ``(i, j)`` are contiguous, which is the row order of both
    mappings' weight matrices (see :func:`unroll_weights`).
    """
    x = as_int(x, "x")
    if x.ndim != 3:
        raise ValueError(f"x must have shape [Cin, H, W], got {x.shape}")
    if stride not in (1, 2):
        raise ValueError(f"stride={stride} is not allowed: stride must be 1 or 2")
    pt, pl, pb, pr = _pads(pad)
    cin, h, w = x.shape
    if k < 1 or k > h + pt + pb or k > w + pl + pr:
        raise ValueError(f"kernel K={k} does not fit the padded input {h + pt + pb}x{w + pl + pr}")
    xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr)), constant_values=pad_value)
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


def conv2d_int(x, w, bias=None, stride: int = 1, pad=0, pad_value: int = 0) -> np.ndarray:
    """Plain integer convolution (cross-correlation): ``[Cout, Ho, Wo]`` int64; padding pixels
    are ``pad_value`` (the input zero point)."""
    x, w = conv_operands(x, w)
    cols = im2col(x, w.shape[2], stride, pad, pad_value)
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
def round_shift(v, s: int, offset: int = 0):
    """``(v + offset + 2**(s-1)) >> s`` (arithmetic), ``v + offset`` for ``s == 0``; the
    constants are added as one (one adder in the RTL).

    Plain operators only, so the same expression builds the RTL (``hw.post``) from
    Amaranth values and computes the golden result from numpy arrays.
    """
    k = offset + ((1 << (s - 1)) if s else 0)
    v = v + k if k else v
    return v >> s if s else v


def _zero_check(z: int, a_bits: int, name: str) -> None:
    if not 0 <= z <= (1 << a_bits) - 1:
        raise ValueError(f"{name}={z} is not allowed: a zero point must be an a_bits={a_bits} code "
                         f"in [0, {(1 << a_bits) - 1}]")


def requantize(acc, m: int, s: int, bias=None, a_bits: int = 8, z_out: int = 0, relu: bool = True) -> np.ndarray:
    """Bias, fixed-point scale, output zero point and clamp:
    ``clamp((((acc+bias)*M + 2**(s-1)) >> s) + z_out, lo, 2**a_bits-1)``, ``lo = z_out`` with ``relu``, else 0.

    ``bias`` (one value per output channel) broadcasts along axis 0 of ``acc``. ``m``/``s``/
    ``z_out`` are checked by :class:`gen.params.Requant`.
    """
    rq = Requant(m, s, z_out, relu)
    _zero_check(rq.z_out, a_bits, "z_out")
    v = add_bias(as_int(acc, "acc"), bias)
    return np.clip(round_shift(v * rq.m, rq.s) + rq.z_out, rq.lo(), (1 << a_bits) - 1)


def maxpool2d(x, k: int = 2, stride: int | None = None, pad: int = 0) -> np.ndarray:
    """k x k max-pool with stride ``stride`` [k] and padding ``pad`` [0] on ``x[C,H,W]`` (padded
    positions never win; trailing rows/cols that do not fill a window are dropped)."""
    x = as_int(x, "x")
    c, h, w = x.shape
    st = stride or k
    if k < 1 or k > h + 2 * pad or k > w + 2 * pad or pad >= max(k, 1) or st < 1:
        raise ValueError(f"pool size {k} (stride {st}, pad {pad}) does not fit a {h}x{w} feature map")
    if st == k and pad == 0:
        ho, wo = h // k, w // k
        return x[:, :ho * k, :wo * k].reshape(c, ho, k, wo, k).max(axis=(2, 4))
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad)), constant_values=np.iinfo(np.int64).min)
    return sliding_window_view(xp, (k, k), axis=(1, 2))[:, ::st, ::st].max(axis=(3, 4))


def pool_windows(n: int, k: int, stride: int | None = None, pad: int = 0) -> list[tuple[int, int]]:
    """Along one axis of ``n`` pixels, the pixels of each output of a ``k``-wide pool with
    ``stride`` [k] and ``pad``, as :func:`maxpool2d` takes them: ``(first, last)`` inside the map
    (padding holds no pixel), one pair per output, ``(n + 2·pad − k) // stride + 1`` of them."""
    st = stride or k
    return [(max(0, j * st - pad), min(n - 1, j * st - pad + k - 1)) for j in range((n + 2 * pad - k) // st + 1)]


def streamed_pool_refusal(n: int, k: int, stride: int | None = None, pad: int = 0) -> str | None:
    """Why a pool over a streamed axis of ``n`` pixels cannot emit each output on the clock its
    last pixel arrives, one output per pixel at most -- what the chip's pool units do
    (``hw.post``) -- or None. It cannot when two windows end on the same pixel (clipped by the
    padding). Trailing pixels in no window are fine: they are consumed, and the last output
    waits for the last pixel, so it still leaves on it."""
    ends = [e for _, e in pool_windows(n, k, stride, pad)]
    if len(set(ends)) != len(ends):
        return f"two windows end on pixel {ends[-1]} (clipped by the padding)"
    return None


def _pool_requant(total, n_zero, p: PoolParams, a_bits: int) -> np.ndarray:
    rq = p.requant
    _zero_check(rq.z_out, a_bits, "z_out")
    _zero_check(p.z_in, a_bits, "z_in")
    return np.clip(round_shift((total - n_zero) * rq.m, rq.s) + rq.z_out, rq.lo(), (1 << a_bits) - 1)


def global_avgpool(x, m: int, s: int, a_bits: int = 8, z_in: int = 0, z_out: int = 0,
                   relu: bool = False) -> np.ndarray:
    """Global average pool per channel: ``clamp(((Σ (x - z_in)) * M + 2**(s-1)) >> s) + z_out, lo, 2**a_bits - 1)``."""
    p = PoolParams(Requant(m, s, z_out, relu), z_in)
    x = as_int(x, "x")
    return _pool_requant(x.sum(axis=(1, 2)), p.z_in * x.shape[1] * x.shape[2], p, a_bits)


def avgpool2d(x, k: int, m: int, s: int, a_bits: int = 8, z_in: int = 0, z_out: int = 0,
              relu: bool = False) -> np.ndarray:
    """k x k, stride k average pool: per window ``clamp(((Σ (x - z_in)) * M + 2**(s-1)) >> s) + z_out, lo, ...)``."""
    p = PoolParams(Requant(m, s, z_out, relu), z_in)
    x = as_int(x, "x")
    c, h, w = x.shape
    if k < 1 or h % k or w % k:
        raise ValueError(f"pool size {k} must divide the {h}x{w} feature map")
    total = x.reshape(c, h // k, k, w // k, k).sum(axis=(2, 4))
    return _pool_requant(total, p.z_in * k * k, p, a_bits)


def residual_add(a, b, ma: int, mb: int, s: int, a_bits: int = 8, za: int = 0, zb: int = 0, z_out: int = 0,
                 relu: bool = True) -> np.ndarray:
    """Residual join: ``clamp(((((a - za)*Ma + (b - zb)*Mb) + 2**(s-1)) >> s) + z_out, lo, 2**a_bits - 1)``,
    ``lo = z_out`` with ``relu``, else 0."""
    p = AddParams(ma, mb, s, za, zb, z_out, relu)
    for f_ in ("za", "zb", "z_out"):
        _zero_check(getattr(p, f_), a_bits, f_)
    a, b = as_int(a, "a"), as_int(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"residual_add: shapes differ {a.shape} vs {b.shape}")
    return np.clip(round_shift((a - p.za) * p.ma + (b - p.zb) * p.mb, p.s) + p.z_out, p.lo(), (1 << a_bits) - 1)


def concat(xs) -> np.ndarray:
    """Channel concatenation of codes ``[C_i, H, W]`` (the producers share one scale and zero point)."""
    return np.concatenate([as_int(x, "x") for x in xs], axis=0)


def fold_zero_point(bias, w, z_in: int) -> np.ndarray:
    """``bias - z_in * Σ w[o]`` (Σ over the whole kernel of output ``o``): the compile-time fold
    that lets the crossbars see unsigned codes of an input with zero point ``z_in``."""
    w = as_int(w, "w")
    b = np.zeros(w.shape[0], dtype=np.int64) if bias is None else as_int(bias, "bias")
    return b - int(z_in) * w.reshape(w.shape[0], -1).sum(axis=1)


# --- one layer of a network ---------------------------------------------------------------
def weight_acc(layer, p: WeightParams, x: np.ndarray) -> np.ndarray:
    """A ``Conv2d``/``Linear`` layer's accumulators (no bias) by :func:`conv2d_int` /
    :func:`linear`, shape ``[Cout, Ho, Wo]``."""
    if layer.kind == "fc":
        return linear(np.asarray(x).reshape(-1), p.w).reshape(-1, 1, 1)
    return conv2d_int(x, p.w, None, layer.stride, layer.pad, p.z_in)


def finish_weight_layer(acc: np.ndarray, p: WeightParams, raw: bool, a_bits: int) -> np.ndarray:
    """``acc + bias`` for a raw-output layer, else :func:`requantize` with ``p.requant``."""
    if raw:
        return add_bias(acc, p.bias)
    if p.requant is None:
        raise ValueError("requant is None, but the layer requantizes (it is not a raw-output layer)")
    rq = p.requant
    return requantize(acc, rq.m, rq.s, p.bias, a_bits, rq.z_out, rq.relu)


def apply_layer(layer, p, ins: list[np.ndarray], *, raw: bool, a_bits: int, acc_fn=weight_acc) -> np.ndarray:
    """One layer of a ``gen.network.Network`` on its inputs' codes.

    ``p`` is the layer's parameters (``gen.params``, of the kind
    ``gen.params.NetworkParams.check`` requires); ``acc_fn(layer, p, x)`` computes a
    weight layer's accumulators (default: the direct :func:`weight_acc`; the golden model
    passes its crossbar-exact plan walk). ``raw``: the layer outputs ``acc + bias``.
    """
    if layer.has_weights:
        return finish_weight_layer(acc_fn(layer, p, ins[0]), p, raw, a_bits)
    kind = layer.kind
    if kind == "maxpool":
        return maxpool2d(ins[0], layer.k, layer.stride, layer.pad)
    if kind == "gap":
        rq = p.requant
        return global_avgpool(ins[0], rq.m, rq.s, a_bits, p.z_in, rq.z_out, rq.relu).reshape(-1, 1, 1)
    if kind == "avgpool":
        rq = p.requant
        return avgpool2d(ins[0], layer.k, rq.m, rq.s, a_bits, p.z_in, rq.z_out, rq.relu)
    if kind == "add":
        return residual_add(ins[0], ins[1], p.ma, p.mb, p.s, a_bits, p.za, p.zb, p.z_out, p.relu)
    if kind == "concat":
        return concat(ins)
    raise ValueError(f"layer {layer.name!r}: unsupported kind {type(layer).__name__}")  # pragma: no cover
