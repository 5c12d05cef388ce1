"""Quantization helpers: fixed-point scales and random, well-scaled network parameters.

* :func:`scale_to_requant` — the :class:`gen.params.Requant` ``(M, s)`` nearest a real scale.
* :func:`random_weights` — random signed weights and calibrated requantization for every
  layer of a network, as :class:`gen.params.NetworkParams`.
* :func:`quantize` — a float model (:class:`gen.floatmodel.FloatModel`) and calibration images
  -> :class:`QuantModel` (``.net``, ``.params``, ``.quantize_input``, ``.dequantize_output``,
  ``.save``/``.load`` as one JSON file).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gen.intops import apply_layer, finish_weight_layer, requantize, weight_acc
from gen.network import INPUT, Add, AvgPool, Concat, GlobalAvgPool, MaxPool, Network
from gen.params import M_MAX, S_MAX, AddParams, NetworkParams, NoParams, PoolParams, Requant, WeightParams

__all__ = ["scale_to_requant", "add_multipliers", "random_weights", "TensorQuant", "QuantModel", "quantize"]


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
            elif isinstance(layer, AvgPool):
                p = PoolParams(scale_to_requant(1.0 / (layer.k * layer.k)))
            elif isinstance(layer, (MaxPool, Concat)):
                p = NoParams()
            else:  # pragma: no cover - the IR has no other layer kinds
                raise ValueError(f"layer {layer.name!r}: unsupported kind {type(layer).__name__}")
            if calibrate:
                acts[layer.name] = apply_layer(layer, p, [acts[i] for i in layer.inputs],
                                               raw=net.is_raw_output(layer), a_bits=a_bits)
        params[layer.name] = p
    return NetworkParams(params)


# --- float model -> integers (DESIGN.md §3, §11) ----------------------------------------------
QUANT_FORMAT = "pimgen-quantmodel"
QUANT_VERSION = 1


@dataclass(frozen=True)
class TensorQuant:
    """Per-tensor affine quantization: real value ``scale * (code - zero_point)``."""
    scale: float
    zero_point: int = 0


@dataclass
class QuantModel:
    """A network in pimgen's integers (DESIGN.md §3) and how to get in and out of them.

    ``net``: the :class:`gen.network.Network`; ``params``: its :class:`gen.params.NetworkParams`
    (what ``sim.golden.run_network`` / ``run_plan`` take); ``input``: the input tensor's
    scale and zero point (:meth:`quantize_input`); ``output_scale``: real value of one unit
    of the last layer's raw accumulators (:meth:`dequantize_output`); ``tensors``: every
    activation tensor's scale and zero point (layer name -> :class:`TensorQuant`);
    ``meta``: free-form facts (source, calibration, accuracies); ``output_requant``: for a model
    imported from a quantized ONNX graph whose last layer requantizes (QLinearConv/QLinearMatMul,
    or a QuantizeLinear after it), that requantization — pimgen's last layer outputs the raw
    accumulators and :meth:`requantize_output` applies it, giving the graph's own output codes.
    """
    net: Network
    params: NetworkParams
    input: TensorQuant
    output_scale: float
    a_bits: int = 8
    w_bits: int = 8
    tensors: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)
    output_requant: Requant | None = None

    def requantize_output(self, acc) -> np.ndarray:
        """The raw accumulators -> the quantized graph's output codes (``output_requant``; unsigned
        ``a_bits`` codes, an ONNX int8 output is these minus 128)."""
        if self.output_requant is None:
            raise ValueError("this model has no output requantization (its graph outputs raw accumulators)")
        rq = self.output_requant
        return requantize(acc, rq.m, rq.s, None, self.a_bits, rq.z_out, rq.relu)

    def quantize_input(self, x) -> np.ndarray:
        """Float images ``[..., C, H, W]`` -> unsigned ``a_bits`` input codes (``uint8`` for 8 bits)."""
        x = np.asarray(x, dtype=np.float64)
        q = np.clip(np.round(x / self.input.scale) + self.input.zero_point, 0, (1 << self.a_bits) - 1)
        return q.astype(np.uint8 if self.a_bits <= 8 else np.uint16)

    def run(self, x_codes, *, return_all: bool = False):
        """The direct integer model on one image's codes ``[C, H, W]`` (``gen.intops``: the arithmetic
        ``sim.golden.run_network`` runs, without its checks): the last layer's raw accumulators."""
        acts = {INPUT: np.asarray(x_codes).astype(np.int64)}
        for layer in self.net.layers:
            acts[layer.name] = apply_layer(layer, self.params[layer.name], [acts[i] for i in layer.inputs],
                                           raw=self.net.is_raw_output(layer), a_bits=self.a_bits)
        return acts if return_all else acts[self.net.output]

    def dequantize_output(self, acc) -> np.ndarray:
        """The last layer's raw accumulators (``run_network``'s result) -> float values (logits)."""
        return np.asarray(acc, dtype=np.float64) * self.output_scale

    # --- one file ---
    def to_dict(self) -> dict:
        return {"format": QUANT_FORMAT, "version": QUANT_VERSION, "network": self.net.to_dict(),
                "params": self.params.to_dict(), "a_bits": self.a_bits, "w_bits": self.w_bits,
                "input": {"scale": self.input.scale, "zero_point": self.input.zero_point},
                "output_scale": self.output_scale,
                "tensors": {k: [t.scale, t.zero_point] for k, t in self.tensors.items()},
                "meta": self.meta} | ({"output_requant": self.output_requant.to_dict()} if self.output_requant else {})

    @classmethod
    def from_dict(cls, d) -> "QuantModel":
        if not isinstance(d, dict) or d.get("format") != QUANT_FORMAT or d.get("version") != QUANT_VERSION:
            raise ValueError(f"not a {QUANT_FORMAT} version-{QUANT_VERSION} file (write it again with "
                             f"`pimgen quantize`)")
        try:
            net = Network.from_dict(d["network"])
            params = NetworkParams.from_dict(d["params"])
            a_bits, w_bits = d["a_bits"], d["w_bits"]
            for k, v, lo in (("a_bits", a_bits, 1), ("w_bits", w_bits, 2)):
                if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= 16:
                    raise ValueError(f"{k}={v!r} is not allowed: it must be an integer in [{lo}, 16]")
            params.check(net, w_bits=w_bits)
            qm = cls(net, params, TensorQuant(float(d["input"]["scale"]), int(d["input"]["zero_point"])),
                     float(d["output_scale"]), a_bits, w_bits,
                     {k: TensorQuant(float(s), int(z)) for k, (s, z) in d.get("tensors", {}).items()},
                     dict(d.get("meta", {})),
                     Requant.from_dict(d["output_requant"]) if d.get("output_requant") else None)
        except KeyError as e:
            raise ValueError(f"not a valid {QUANT_FORMAT} file: it misses the field {e}") from None
        except (TypeError, AttributeError, IndexError, OverflowError) as e:
            raise ValueError(f"not a valid {QUANT_FORMAT} file: a malformed field ({e})") from None
        except ValueError as e:
            raise ValueError(f"not a valid {QUANT_FORMAT} file: {str(e).splitlines()[0]}") from None
        if not (np.isfinite(qm.input.scale) and qm.input.scale > 0 and np.isfinite(qm.output_scale)):
            raise ValueError(f"not a valid {QUANT_FORMAT} file: input scale {qm.input.scale} / output scale "
                             f"{qm.output_scale} must be finite (and the input scale > 0)")
        if not 0 <= qm.input.zero_point < (1 << qm.a_bits):
            raise ValueError(f"not a valid {QUANT_FORMAT} file: input zero point {qm.input.zero_point} is not an "
                             f"{qm.a_bits}-bit code")
        return qm

    def save(self, path) -> None:
        """Write the model as one JSON file (``.pimgen``)."""
        Path(path).write_text(json.dumps(self.to_dict(), separators=(",", ":")))

    @classmethod
    def load(cls, path) -> "QuantModel":
        try:
            d = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"{path}: cannot read a quantized model ({e})") from None
        except UnicodeDecodeError:
            raise ValueError(f"{path}: not a quantized model (a .pimgen file is JSON text, written by "
                             f"`pimgen quantize`)") from None
        try:
            return cls.from_dict(d)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None


def _tensor_quant(lo: float, hi: float, a_bits: int, relu: bool) -> TensorQuant:
    """Scale and zero point covering ``[lo, hi]`` (always including 0; from 0 after a ReLU)."""
    qmax = (1 << a_bits) - 1
    lo, hi = (0.0 if relu else min(0.0, lo)), max(0.0, hi)
    if hi - lo <= 0:
        return TensorQuant(1.0, 0)
    scale = (hi - lo) / qmax
    return TensorQuant(scale, int(np.clip(round(-lo / scale), 0, qmax)))


def add_multipliers(ra: float, rb: float) -> tuple[int, int, int]:
    """``(Ma, Mb, s)`` of a residual add with ``Ma / 2**s ~= ra`` and ``Mb / 2**s ~= rb``: one shared
    shift, the largest ``s <= 31`` that keeps both ``M <= 65535``."""
    r = max(ra, rb)
    s = 0 if r <= 0 else int(np.clip(np.floor(np.log2(M_MAX / r)), 0, S_MAX))
    return min(M_MAX, round(ra * (1 << s))), min(M_MAX, round(rb * (1 << s))), s


def _through_pools(net, name: str) -> str:
    """The tensor whose quantization ``name`` inherits (a max-pool passes its input's codes on)."""
    while name != INPUT and net[name].kind == "maxpool":
        name = net[name].inputs[0]
    return name


def quantize(model, calibration, *, a_bits: int = 8, w_bits: int = 8,
             percentile: float | None = None) -> QuantModel:
    """Integer-only quantization of a :class:`gen.floatmodel.FloatModel` (Jacob et al. 2018;
    ONNX QLinear): per-tensor activation scales and zero points from the ranges the float
    model shows on ``calibration`` (float ``[N, C, H, W]``; min/max, or the ``percentile``
    and ``100 - percentile`` percentiles), symmetric per-tensor ``w_bits`` weights
    (``[-(2**(w_bits-1) - 1), 2**(w_bits-1) - 1]``), int32 biases with the input zero point
    folded in (``bias - z_in * Σw``), ``M``/``s`` per layer for the best precision within
    ``M <= 65535`` (:func:`scale_to_requant`). Max-pools pass their input's codes on; a
    concat's producers share one scale and zero point (refused, naming the node, when a
    producer cannot be requantized: the network input). The last layer outputs raw
    accumulators (:meth:`QuantModel.dequantize_output`).
    """
    net = model.net
    calib = np.asarray(calibration, dtype=np.float64)
    if calib.ndim == 3:
        calib = calib[None]
    acts = model.run(calib, return_all=True)

    def rng_of(names):
        vals = np.concatenate([acts[n].ravel() for n in names])
        if percentile is None:
            return float(vals.min()), float(vals.max())
        return float(np.percentile(vals, 100 - percentile)), float(np.percentile(vals, percentile))

    def relu_of(name):
        if name == INPUT:
            return False
        layer = net[name]
        return bool(getattr(layer, "relu", False)) and layer.kind in ("conv", "fc", "add")

    # concats: their producers (seen through max-pools) share the concat's quantization
    forced: dict[str, TensorQuant] = {}
    for layer in net.layers:
        if layer.kind != "concat":
            continue
        srcs = [_through_pools(net, i) for i in layer.inputs]
        for i, s in zip(layer.inputs, srcs):
            if s == INPUT or net[s].kind == "concat":
                raise ValueError(f"node {layer.name!r} (Concat): its input {i!r} comes from "
                                 f"{'the network input' if s == INPUT else 'another concat'}, which cannot be "
                                 f"requantized to the concat's common scale")
            if s in forced:
                raise ValueError(f"node {layer.name!r} (Concat): its producer {s!r} also feeds another concat; "
                                 f"one tensor cannot take two common scales")
        lo, hi = rng_of(srcs)
        tq = _tensor_quant(lo, hi, a_bits, all(relu_of(s) for s in srcs))
        for s in srcs:
            forced[s] = tq

    q: dict[str, TensorQuant] = {}
    q[INPUT] = _tensor_quant(*rng_of([INPUT]), a_bits, False)
    qmax_w = (1 << (w_bits - 1)) - 1
    params: dict = {}
    out_scale = 1.0
    for layer in net.layers:
        name, raw = layer.name, net.is_raw_output(layer)
        kind = layer.kind

        def out_q():
            return forced.get(name) or _tensor_quant(*rng_of([name]), a_bits, relu_of(name))

        if layer.has_weights:
            tin = q[layer.inputs[0]]
            w, b = model.weights[name]
            amax = float(np.abs(w).max())
            s_w = amax / qmax_w if amax > 0 else 1.0
            wq = np.clip(np.round(w / s_w), -qmax_w, qmax_w).astype(np.int64)
            s_acc = tin.scale * s_w
            bq = np.round(b / s_acc).astype(np.int64) - tin.zero_point * wq.reshape(wq.shape[0], -1).sum(axis=1)
            if raw:
                params[name] = WeightParams(wq, bq, None, z_in=tin.zero_point)
                q[name] = TensorQuant(s_acc, 0)
                out_scale = s_acc
                continue
            to = out_q()
            rq = scale_to_requant(s_acc / to.scale)
            params[name] = WeightParams(wq, bq, Requant(rq.m, rq.s, to.zero_point, bool(getattr(layer, "relu", True))),
                                        z_in=tin.zero_point)
            q[name] = to
        elif kind == "maxpool":
            params[name] = NoParams()
            q[name] = q[layer.inputs[0]]
        elif kind == "concat":
            params[name] = NoParams()
            q[name] = q[layer.inputs[0]]
        elif kind in ("gap", "avgpool"):
            tin = q[layer.inputs[0]]
            _, h, w_ = net.in_shape(layer)
            n = h * w_ if kind == "gap" else layer.k * layer.k
            to = out_q()
            rq = scale_to_requant(tin.scale / (to.scale * n))
            params[name] = PoolParams(Requant(rq.m, rq.s, to.zero_point, False), z_in=tin.zero_point)
            q[name] = to
        elif kind == "add":
            ta, tb = q[layer.inputs[0]], q[layer.inputs[1]]
            to = out_q()
            ma, mb, s = add_multipliers(ta.scale / to.scale, tb.scale / to.scale)
            params[name] = AddParams(ma, mb, s, za=ta.zero_point, zb=tb.zero_point, z_out=to.zero_point,
                                     relu=bool(getattr(layer, "relu", True)))
            q[name] = to
        else:
            raise ValueError(f"layer {name!r}: cannot quantize a {type(layer).__name__}")
        if raw:
            out_scale = q[name].scale
    nparams = NetworkParams(params)
    nparams.check(net, w_bits=w_bits)
    return QuantModel(net, nparams, q[INPUT], out_scale, a_bits, w_bits, {k: v for k, v in q.items() if k != INPUT},
                      {"source": getattr(model, "source", ""), "calibration_images": int(len(calib)),
                       "percentile": percentile})
