"""Quantization helpers: fixed-point scales and random, well-scaled network parameters.

* :func:`scale_to_requant` — the :class:`gen.params.Requant` ``(M, s)`` nearest a real scale.
* :func:`random_weights` — random signed weights and calibrated requantization for every
  layer of a network, as :class:`gen.params.NetworkParams`.
"""
from __future__ import annotations

import numpy as np

from gen.intops import apply_layer, finish_weight_layer, weight_acc
from gen.network import INPUT, Add, GlobalAvgPool, MaxPool
from gen.params import M_MAX, S_MAX, AddParams, NetworkParams, NoParams, PoolParams, Requant, WeightParams

__all__ = ["scale_to_requant", "random_weights"]


def scale_to_requant(scale: float) -> Requant:
    """Fixed-point ``Requant(M, s)`` with ``M / 2**s ~= scale``: the largest ``s <= 31`` that keeps
    ``M <= 65535`` (``M >= 1``); ``Requant(0, 0)`` for ``scale <= 0``."""
    if scale <= 0:
        return Requant(0, 0)
    s = int(np.clip(np.floor(np.log2(M_MAX / scale)), 0, S_MAX))
    m = int(min(M_MAX, max(1, round(scale * (1 << s)))))
    return Requant(m, s)


def random_weights(net, seed: int = 0, *, w_bits: int = 8, a_bits: int = 8,
                   calibrate: bool | None = None) -> NetworkParams:
    """Random signed ``w_bits`` weights and per-layer requantization parameters for ``net``.

    Weights are uniform over the whole signed range. ``M, s`` of each layer are chosen so
    that its accumulators (std ``sigma``) map to a spread of about ``96`` codes, with a
    random bias within ``±sigma/4``, so activations are neither all 0 nor all saturated.
    With ``calibrate`` (default: networks up to 1 G MACs) ``sigma`` is measured on a random
    input image; otherwise it is estimated as ``sqrt(fan_in) * std(w) * 68``. Global average
    pools get ``M / 2**s ~= 1 / (H*W)``, residual joins ``(a + b + 1) >> 1``. Every weight
    layer gets a ``requant``, the raw-output last layer too (a one-layer network's layer
    may be built requantizing). Deterministic in ``seed``.
    """
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
            if calibrate:
                acc = weight_acc(layer, WeightParams(w), acts[layer.inputs[0]])
                sigma = max(1.0, float(acc.std()))
            else:
                sigma = max(1.0, np.sqrt(layer.weight_rows) * w_std * 68.0)
            b = int(sigma / 4)
            bias = rng.integers(-b, b + 1, size=layer.weight_cols, dtype=np.int64)
            p = WeightParams(w, bias, scale_to_requant(96.0 / sigma))
            if calibrate:
                acts[layer.name] = finish_weight_layer(acc, p, net.is_raw_output(layer), a_bits)
        else:
            if isinstance(layer, GlobalAvgPool):
                _, h, w_ = net.in_shape(layer)
                p = PoolParams(scale_to_requant(1.0 / (h * w_)))
            elif isinstance(layer, Add):
                p = AddParams(1, 1, 1)
            elif isinstance(layer, MaxPool):
                p = NoParams()
            else:  # pragma: no cover - the IR has no other layer kinds
                raise ValueError(f"layer {layer.name!r}: unsupported kind {type(layer).__name__}")
            if calibrate:
                acts[layer.name] = apply_layer(layer, p, [acts[i] for i in layer.inputs],
                                               raw=net.is_raw_output(layer), a_bits=a_bits)
        params[layer.name] = p
    return NetworkParams(params)
