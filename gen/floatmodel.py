"""Float models: a :class:`gen.network.Network` plus float weights, and pimgen's own float reference.

A :class:`FloatModel` is what ``gen.onnx_import.load_onnx`` returns for a float ONNX graph
(BatchNormalization already folded into the convolutions) and what ``gen.quantize.quantize``
turns into integers. :meth:`FloatModel.run` evaluates it in float64 numpy, batched over
images, with exactly the IR's semantics: a ``Conv2d``/``Linear`` adds its bias and applies
ReLU when its ``relu`` flag is set — except the network's last layer, which outputs raw
values (logits) —; pools, residual adds (ReLU by their flag) and concats as in
``gen.network``. Pure numpy.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from gen.network import INPUT, Network

__all__ = ["FloatModel", "conv2d_float", "maxpool_float", "avgpool_float"]


def conv2d_float(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, stride: int = 1, pad: int = 0) -> np.ndarray:
    """Float cross-correlation of ``x[N, Cin, H, W]`` with ``w[Cout, Cin, K, K]`` -> ``[N, Cout, Ho, Wo]``."""
    k = w.shape[2]
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    win = sliding_window_view(xp, (k, k), axis=(2, 3))[:, :, ::stride, ::stride]   # N,C,Ho,Wo,K,K
    out = np.tensordot(win, w, axes=([1, 4, 5], [1, 2, 3])).transpose(0, 3, 1, 2)
    return out if b is None else out + b.reshape(1, -1, 1, 1)


def maxpool_float(x: np.ndarray, k: int, stride: int | None = None, pad: int = 0) -> np.ndarray:
    """k×k max-pool (stride ``stride`` [k], padding ``pad`` never wins) of ``x[N, C, H, W]``."""
    s = stride or k
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), constant_values=-np.inf) if pad else x
    return sliding_window_view(xp, (k, k), axis=(2, 3))[:, :, ::s, ::s].max(axis=(4, 5))


def avgpool_float(x: np.ndarray, k: int | None) -> np.ndarray:
    """k×k / stride k average pool of ``x[N, C, H, W]``; ``k=None``: global (keeps ``[N, C, 1, 1]``)."""
    if k is None:
        return x.mean(axis=(2, 3), keepdims=True)
    n, c, h, w = x.shape
    return x.reshape(n, c, h // k, k, w // k, k).mean(axis=(3, 5))


@dataclass
class FloatModel:
    """A network and its float parameters.

    ``weights``: layer name -> ``(w, b)`` for every ``Conv2d`` (``w[Cout, Cin, K, K]``) and
    ``Linear`` (``w[out, in]``, the input flattened in ``(C, H, W)`` order) layer, float arrays.
    ``source``: where it came from (an ONNX path, a trainer), for reports.
    """
    net: Network
    weights: dict[str, tuple[np.ndarray, np.ndarray]]
    source: str = ""
    notes: list[str] = field(default_factory=list)

    def __post_init__(self):
        for layer in self.net.weight_layers:
            if layer.name not in self.weights:
                raise ValueError(f"layer {layer.name!r}: no float weights")
            w, b = self.weights[layer.name]
            want = (layer.out_features, layer.in_features) if layer.kind == "fc" else \
                (layer.cout, layer.cin, layer.k, layer.k)
            w = np.asarray(w, dtype=np.float64)
            b = np.zeros(want[0]) if b is None else np.asarray(b, dtype=np.float64)
            if w.shape != want or b.shape != (want[0],):
                raise ValueError(f"layer {layer.name!r}: float weights {w.shape}/bias {b.shape}, "
                                 f"the layer needs {want}/({want[0]},)")
            self.weights[layer.name] = (w, b)

    def run(self, x, *, return_all: bool = False):
        """Float reference on ``x[N, C, H, W]`` (or one image ``[C, H, W]``): the last layer's
        output ``[N, C, H, W]`` (float64), or every tensor (``"input"`` included) when ``return_all``."""
        x = np.asarray(x, dtype=np.float64)
        single = x.ndim == 3
        if single:
            x = x[None]
        if tuple(x.shape[1:]) != tuple(self.net.input_shape):
            raise ValueError(f"input has shape {x.shape[1:]}, network {self.net.name!r} expects "
                             f"{tuple(self.net.input_shape)}")
        acts = {INPUT: x}
        for layer in self.net.layers:
            ins = [acts[i] for i in layer.inputs]
            acts[layer.name] = y = self.apply(layer, ins, raw=self.net.is_raw_output(layer))
            assert y.shape[1:] == self.net.out_shape(layer), (layer.name, y.shape)
        if return_all:
            return {k: (v[0] if single else v) for k, v in acts.items()}
        out = acts[self.net.output]
        return out[0] if single else out

    def apply(self, layer, ins: list[np.ndarray], *, raw: bool) -> np.ndarray:
        """One layer on float ``[N, C, H, W]`` inputs."""
        kind = layer.kind
        if layer.has_weights:
            w, b = self.weights[layer.name]
            if kind == "fc":
                y = (ins[0].reshape(ins[0].shape[0], -1) @ w.T + b)[:, :, None, None]
            else:
                y = conv2d_float(ins[0], w, b, layer.stride, layer.pad)
            return y if raw or not getattr(layer, "relu", True) else np.maximum(y, 0)
        if kind == "maxpool":
            return maxpool_float(ins[0], layer.k, getattr(layer, "stride", None), getattr(layer, "pad", 0))
        if kind == "avgpool":
            return avgpool_float(ins[0], layer.k)
        if kind == "gap":
            return avgpool_float(ins[0], None)
        if kind == "add":
            y = ins[0] + ins[1]
            return np.maximum(y, 0) if getattr(layer, "relu", True) else y
        if kind == "concat":
            return np.concatenate(ins, axis=1)
        raise ValueError(f"layer {layer.name!r}: no float semantics for {type(layer).__name__}")

    def predict(self, x) -> np.ndarray:
        """Top-1 class per image of ``x[N, C, H, W]``."""
        return self.run(x).reshape(len(x), -1).argmax(axis=1)
