"""ONNX import (DESIGN.md §11): float CNN graphs -> :class:`gen.floatmodel.FloatModel`, quantized
graphs -> :class:`gen.quantize.QuantModel`.

``load_onnx(path)`` reads a float ONNX model as PyTorch / TensorFlow / the model zoos export
it and returns the network IR with float weights; ``gen.quantize.quantize`` then turns it
into pimgen's integers. A graph with quantized operators (QuantizeLinear/DequantizeLinear around
Conv/Gemm/MatMul, QLinearConv, QLinearMatMul, ConvInteger, MatMulInteger) is mapped straight onto
§3's integers and returned as a ``QuantModel`` (``_QuantImporter``; docs/frontend.md has the
table and where onnxruntime's rounding differs). Float graphs: one graph input ``[N, C, H, W]``, one output:

* ``Conv`` — square kernels, ``pads`` (symmetric), ``auto_pad`` ``SAME_UPPER``/``SAME_LOWER``
  (when the total padding is even) / ``VALID`` / ``NOTSET``, strides 1 or 2, ``group = 1``,
  dilation 1, optional bias;
* ``BatchNormalization`` folded into the preceding ``Conv``/``Gemm``/``MatMul``;
* ``Relu`` folded into its producer (conv, fc, add; through a max-pool too) — the IR's ``relu`` flag;
* ``MaxPool`` (square k, stride, symmetric padding), ``AveragePool`` (k×k, stride k, no
  padding), ``GlobalAveragePool``;
* ``Gemm`` (``transA = 0``, any ``alpha``/``beta``/``transB``), ``MatMul`` with a constant
  right operand (+ ``Add`` of a constant: the bias), ``Flatten``, ``Reshape`` to ``[N, -1]``;
* ``Add``/``Sum`` of two tensors (residual joins), ``Concat`` on channels;
* ``Pad`` — spatial zero padding in front of a ``Conv`` (merged into its padding); zero padding
  of channels (option-A residual shortcuts) and ``Slice`` with steps on H/W (their strided
  subsampling) are lowered onto a 1×1 convolution with identity weights (stride = the step);
* ``Dropout``, ``Identity``, a trailing ``Softmax`` (dropped: argmax unchanged);
* constant subgraphs folded: ``Constant``, ``Shape``, ``Gather``, ``Unsqueeze``, ``Squeeze``,
  ``Concat``, ``Cast``, ``ConstantOfShape``, ``Reshape``/``Mul``/``Add``/``Div``/``Sub`` of constants.

Anything else — an unsupported op or attribute, an inconsistent graph (shape mismatch at an
``Add``, a dangling input), per-output-channel weight scales in a quantized graph (one ``M``/``s``
per layer) — raises ``ValueError`` with one line naming the node, its op type and why.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace

import numpy as np

from gen.floatmodel import FloatModel
from gen.network import INPUT, Add, AvgPool, Concat, Conv2d, GlobalAvgPool, Linear, MaxPool, Network

__all__ = ["load_onnx", "SUPPORTED_OPS", "QUANTIZED_OPS"]

SUPPORTED_OPS = ("Conv", "BatchNormalization", "Relu", "MaxPool", "AveragePool", "GlobalAveragePool", "Gemm",
                 "MatMul", "Flatten", "Reshape", "Add", "Sum", "Concat", "Pad", "Slice", "Dropout", "Identity",
                 "Softmax", "Constant", "Shape", "Gather", "Unsqueeze", "Squeeze", "Cast", "ConstantOfShape")
QUANTIZED_OPS = ("QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "ConvInteger",
                 "MatMulInteger")


class _Refuse(ValueError):
    pass


@dataclass
class _T:
    """A tensor of the network: produced by IR layer ``src`` (or the input), shape ``(C, H, W)``."""
    src: str
    shape: tuple
    flat: bool = False
    pad: tuple | None = None     # pending spatial zero padding (top, left, bottom, right) from a Pad node
    q: object = None             # quantized graphs: what the tensor holds (_Q)


_INTS = ("kernel_shape", "pads", "strides", "dilations", "perm", "output_padding")
_INT = ("axis", "group", "transA", "transB", "ceil_mode", "keepdims", "count_include_pad", "storage_order", "to",
        "allowzero", "block_size", "saturate")
_FLOAT = ("alpha", "beta", "epsilon", "momentum")


def _attrs(node) -> dict:
    """The node's attributes; one of a known name but the wrong type (a float kernel_shape, say) is refused."""
    from onnx import AttributeProto, helper
    want = {**{n: (AttributeProto.INTS, "a list of integers") for n in _INTS},
            **{n: (AttributeProto.INT, "an integer") for n in _INT},
            **{n: (AttributeProto.FLOAT, "a float") for n in _FLOAT},
            "auto_pad": (AttributeProto.STRING, "a string")}
    out = {}
    for a in node.attribute:
        if a.name in want and a.type != want[a.name][0]:
            raise _Refuse(f"node {node.name or '(unnamed)'!r} ({node.op_type}): attribute {a.name!r} must be "
                          f"{want[a.name][1]}, got {AttributeProto.AttributeType.Name(a.type)}")
        out[a.name] = helper.get_attribute_value(a)
    return out


def load_onnx(path):
    """Read an ONNX CNN: a :class:`gen.floatmodel.FloatModel` for a float graph, a
    :class:`gen.quantize.QuantModel` for a quantized one (QDQ, QLinearConv/QLinearMatMul,
    ConvInteger/MatMulInteger); see the module docstring. Refusals: ``ValueError``, one line."""
    import onnx
    try:
        model = onnx.load(str(path))
    except Exception as e:  # noqa: BLE001 - any parse failure is the user's file
        raise ValueError(f"{path}: not an ONNX model ({type(e).__name__}: {e})") from None
    importer = _QuantImporter if _is_quantized(model) else _Importer
    return importer(model, str(path)).run()


class _Importer:
    SUPPORTED = SUPPORTED_OPS
    PAD_CONSUMERS = ("Conv",)      # ops a pending spatial Pad may merge into

    def __init__(self, model, source: str):
        from onnx import numpy_helper
        self.g = model.graph
        self.source = source
        self.consts: dict[str, np.ndarray] = {i.name: numpy_helper.to_array(i) for i in self.g.initializer}
        self.env: dict[str, object] = {}
        self.layers: list = []
        self.index: dict[str, int] = {}
        self.weights: dict[str, tuple] = {}
        self.origin: dict[str, tuple[str, str]] = {}       # layer -> (node name, op type)
        self.identity: set[str] = set()                    # identity 1x1 convs we created
        self.out_name: dict[str, str] = {}                 # layer -> the ONNX tensor it produced
        self.notes: list[str] = []
        self.uses: dict[str, int] = {}
        for n in self.g.node:
            for i in n.input:
                if i:
                    self.uses[i] = self.uses.get(i, 0) + 1
        for o in self.g.output:
            self.uses[o.name] = self.uses.get(o.name, 0) + 1
        self.shapes: dict[str, tuple] = {INPUT: None}

    # --- helpers ---------------------------------------------------------------------------
    def refuse(self, node, why: str):
        raise _Refuse(f"node {node.name or '(unnamed)'!r} ({node.op_type}): {why}")

    def spatial(self, node, at, name: str, n: int, default):
        """Attribute ``name`` of a 2-D op, which must hold ``n`` integers (2 per axis pair: H, W;
        4 for pads: top, left, bottom, right); refused, naming the node, otherwise."""
        v = list(at.get(name, default))
        if len(v) != n:
            self.refuse(node, f"{name}={v}: a 2-D {node.op_type} takes {n} values")
        return v

    def name_for(self, node) -> str:
        base = re.sub(r"[^A-Za-z0-9_.\-/]", "_", node.name or f"{node.op_type.lower()}{len(self.layers)}")
        if base == INPUT:
            base = "input_"
        name, k = base, 1
        while name in self.index:
            k += 1
            name = f"{base}_{k}"
        return name

    def add_layer(self, node, layer, weights=None) -> _T:
        try:
            shape = Network.infer_shape(layer, [self.shapes[i] for i in layer.inputs])
        except ValueError as e:
            msg = str(e).split(": ", 1)[-1]
            self.refuse(node, msg)
        self.index[layer.name] = len(self.layers)
        self.layers.append(layer)
        self.shapes[layer.name] = shape
        self.origin[layer.name] = (node.name, node.op_type)
        self.out_name[layer.name] = node.output[0]
        if weights is not None:
            self.weights[layer.name] = weights
        return _T(layer.name, shape)

    def update(self, name: str, **kw):
        i = self.index[name]
        self.layers[i] = replace(self.layers[i], **kw)

    def const(self, node, i: int, what: str) -> np.ndarray:
        if i >= len(node.input) or not node.input[i]:
            self.refuse(node, f"missing {what}")
        v = self.consts.get(node.input[i])
        if v is None:
            self.refuse(node, f"{what} ({node.input[i]!r}) must be a constant")
        return v

    def tensor(self, node, i: int = 0) -> _T:
        name = node.input[i] if i < len(node.input) else ""
        v = self.env.get(name)
        if not isinstance(v, _T):
            if name in self.consts:
                self.refuse(node, f"input {name!r} is a constant where a feature map is expected")
            self.refuse(node, f"input {name!r} is not produced by any node nor a graph input (dangling input)")
        if v.pad is not None and node.op_type not in self.PAD_CONSUMERS:
            self.refuse(node, "a spatial Pad is only supported directly in front of a Conv")
        return v

    def single_use(self, t: _T, tname: str) -> bool:
        return self.uses.get(tname, 0) == 1

    # --- the walk ----------------------------------------------------------------------------
    def run(self) -> FloatModel:
        try:
            return self._run()
        except _Refuse:
            raise
        except ValueError as e:
            raise ValueError(str(e).splitlines()[0]) from None

    def _run(self) -> FloatModel:
        in_shape = self.start()
        self.walk()
        net = self.network(in_shape)
        return FloatModel(net, self.weights, source=self.source, notes=self.notes)

    def start(self) -> tuple:
        """Check the graph's one input ``[N, C, H, W]`` and one output; bind the input. Returns ``(C, H, W)``."""
        inputs = [i for i in self.g.input if i.name not in self.consts]
        if len(inputs) != 1:
            raise ValueError(f"{self.source}: the graph must have exactly one (non-constant) input, it has "
                             f"{len(inputs)}: {', '.join(i.name for i in inputs)}")
        dims = [d.dim_value if d.HasField("dim_value") else None for d in inputs[0].type.tensor_type.shape.dim]
        if len(dims) != 4 or any(d is None or d < 1 for d in dims[1:]):
            raise ValueError(f"input {inputs[0].name!r} has shape {dims}: pimgen needs [N, C, H, W] with fixed C, H, W")
        in_shape = tuple(int(d) for d in dims[1:])
        self.shapes[INPUT] = in_shape
        self.env[inputs[0].name] = self.input_tensor(inputs[0], in_shape)
        if len(self.g.output) != 1:
            raise ValueError(f"{self.source}: the graph must have exactly one output, it has {len(self.g.output)}")
        return in_shape

    def input_tensor(self, vi, in_shape) -> _T:
        """The graph input as a tensor of the walk."""
        return _T(INPUT, in_shape)

    def walk(self) -> None:
        """Every node in order: constant folding or its ``op_<OpType>`` handler."""
        for node in self.g.node:
            op = node.op_type
            if node.domain not in ("", "ai.onnx"):
                self.refuse(node, f"operator domain {node.domain!r} is not supported")
            fn = getattr(self, f"op_{op}", None)
            if fn is None:
                self.refuse(node, f"unsupported operator; supported: {', '.join(self.SUPPORTED)}")
            if all((not i) or i in self.consts for i in node.input) and op not in ("Shape",) and \
                    op in _FOLDABLE:
                self.fold(node)
                continue
            fn(node)

    def network(self, in_shape) -> Network:
        """The IR, after checking the output is the last layer and no branch is dead."""
        out = self.g.output[0].name
        t = self.env.get(out)
        if not isinstance(t, _T) or t.src == INPUT:
            raise ValueError(f"graph output {out!r} is not computed by any supported layer")
        if t.src != self.layers[-1].name:
            raise ValueError(f"graph output {out!r} comes from {t.src!r}, not from the last layer "
                             f"{self.layers[-1].name!r}: layers after it would be dead code")
        last = self.layers[-1]
        if getattr(last, "relu", False) and last.has_weights:
            raise ValueError(f"node {self.origin[last.name][0]!r} ({self.origin[last.name][1]}): a ReLU on the "
                             f"network output is not supported (the last layer outputs raw accumulators)")
        used = {i for l in self.layers for i in l.inputs}
        for l in self.layers[:-1]:
            if l.name not in used:
                raise ValueError(f"node {self.origin[l.name][0]!r} ({self.origin[l.name][1]}): its output is "
                                 f"never used (dead branch)")
        name = self.g.name or "onnx_model"
        return Network(re.sub(r"\W", "_", name), in_shape, self.layers, f"imported from {self.source}")

    # --- constant folding ----------------------------------------------------------------------
    def fold(self, node):
        a = [self.consts[i] if i else None for i in node.input]
        at = _attrs(node)
        op = node.op_type
        try:
            if op == "Constant":
                from onnx import numpy_helper
                if "value" in at:
                    v = numpy_helper.to_array(at["value"])
                elif "value_ints" in at:
                    v = np.array(at["value_ints"], dtype=np.int64)
                elif "value_int" in at:
                    v = np.array(at["value_int"], dtype=np.int64)
                elif "value_floats" in at:
                    v = np.array(at["value_floats"], dtype=np.float32)
                elif "value_float" in at:
                    v = np.array(at["value_float"], dtype=np.float32)
                else:
                    self.refuse(node, "unsupported Constant attribute")
            elif op == "Gather":
                v = np.take(a[0], a[1], axis=at.get("axis", 0))
            elif op == "Unsqueeze":
                axes = at.get("axes", None)
                axes = list(a[1]) if axes is None else axes
                v = a[0]
                for ax in sorted(int(x) % (v.ndim + len(axes)) for x in axes):
                    v = np.expand_dims(v, ax)
            elif op == "Squeeze":
                axes = at.get("axes", None) if len(a) < 2 else list(a[1])
                v = np.squeeze(a[0], axis=None if axes is None else tuple(int(x) for x in axes))
            elif op == "Concat":
                v = np.concatenate([np.atleast_1d(x) for x in a], axis=at.get("axis", 0))
            elif op == "Cast":
                from onnx import helper
                v = a[0].astype(helper.tensor_dtype_to_np_dtype(at["to"]))
            elif op == "ConstantOfShape":
                from onnx import numpy_helper
                val = numpy_helper.to_array(at["value"]) if "value" in at else np.zeros(1, np.float32)
                v = np.full(tuple(int(x) for x in a[0]), val.reshape(-1)[0], dtype=val.dtype)
            elif op == "Reshape":
                v = a[0].reshape(_reshape_target(a[0].shape, a[1]))
            elif op in ("Mul", "Add", "Sub", "Div"):
                v = {"Mul": np.multiply, "Add": np.add, "Sub": np.subtract, "Div": np.divide}[op](a[0], a[1])
                if op == "Div" and np.issubdtype(a[0].dtype, np.integer):
                    v = a[0] // a[1]
            elif op in ("Identity", "Dropout"):
                v = a[0]
            else:
                self.refuse(node, "cannot fold this operator on constants")
        except _Refuse:
            raise
        except Exception as e:  # noqa: BLE001
            self.refuse(node, f"constant folding failed ({e})")
        self.consts[node.output[0]] = np.asarray(v)

    def op_Shape(self, node):
        t = self.tensor(node)
        shape = (1,) + tuple(t.shape) if not t.flat else (1, int(np.prod(t.shape)))
        v = np.array(shape, dtype=np.int64)
        at = _attrs(node)
        v = v[at.get("start", 0):at.get("end", None)]
        self.consts[node.output[0]] = v

    # --- layers ----------------------------------------------------------------------------------
    def alias(self, node, t):
        self.env[node.output[0]] = t

    def op_Identity(self, node):
        self.alias(node, self.tensor(node))

    def op_Dropout(self, node):
        self.alias(node, self.tensor(node))
        if len(node.output) > 1 and node.output[1] and self.uses.get(node.output[1]):
            self.refuse(node, "the Dropout mask output is used")

    def op_Softmax(self, node):
        t = self.tensor(node)
        if node.output[0] != self.g.output[0].name:
            self.refuse(node, "Softmax is only supported as the graph's last node (it is dropped: argmax unchanged)")
        self.notes.append(f"trailing Softmax {node.name!r} dropped (the network outputs logits)")
        self.alias(node, t)

    def op_Conv(self, node):
        t = self.tensor(node)
        w = self.const(node, 1, "weight").astype(np.float64)
        b = self.const(node, 2, "bias").astype(np.float64) if len(node.input) > 2 and node.input[2] else \
            np.zeros(w.shape[0])
        self.alias(node, self.add_layer(node, self.conv_layer(node, t, w.shape), (w, b)))

    def conv_layer(self, node, t: _T, wshape) -> Conv2d:
        """The ``Conv2d`` of a Conv-like node (attributes checked, a pending Pad merged) on ``t``."""
        at = _attrs(node)
        if at.get("group", 1) != 1:
            self.refuse(node, f"group={at['group']}: only group=1 convolutions are supported")
        if any(d != 1 for d in at.get("dilations", [1, 1])):
            self.refuse(node, f"dilations={at['dilations']}: only dilation 1 is supported")
        if len(wshape) != 4 or wshape[2] != wshape[3]:
            self.refuse(node, f"weight shape {list(wshape)}: only square 2-D kernels are supported")
        k = wshape[2]
        strides = self.spatial(node, at, "strides", 2, [1, 1])
        if len(set(strides)) != 1:
            self.refuse(node, f"strides={strides}: only equal strides in H and W are supported")
        s = int(strides[0])
        pads = self.conv_pads(node, at, t.shape, k, s)
        if t.pad is not None:
            pads = tuple(p + q for p, q in zip(pads, t.pad))
        if len(set(pads)) != 1:
            self.refuse(node, f"padding (top, left, bottom, right)={pads} is asymmetric; pimgen pads equally on "
                              f"all sides")
        if t.flat:
            self.refuse(node, "a Conv on a flattened tensor")
        return Conv2d(name=self.name_for(node), inputs=(t.src,), cin=int(wshape[1]), cout=int(wshape[0]), k=int(k),
                      stride=s, pad=int(pads[0]), relu=False)

    def conv_pads(self, node, at, shape, k, s):
        ap = at.get("auto_pad", b"NOTSET")
        ap = ap.decode() if isinstance(ap, bytes) else ap
        if ap in ("NOTSET", ""):
            p = self.spatial(node, at, "pads", 4, [0, 0, 0, 0])
            return (int(p[0]), int(p[1]), int(p[2]), int(p[3]))
        if ap == "VALID":
            return (0, 0, 0, 0)
        if ap in ("SAME_UPPER", "SAME_LOWER"):
            out = []
            for d in shape[1:]:
                tot = max((-(-d // s) - 1) * s + k - d, 0)
                lo = tot // 2 if ap == "SAME_UPPER" else tot - tot // 2
                out.append((lo, tot - lo))
            return (out[0][0], out[1][0], out[0][1], out[1][1])
        self.refuse(node, f"auto_pad={ap!r} is not supported")

    def op_BatchNormalization(self, node):
        t = self.tensor(node)
        gamma, beta, mean, var = (self.const(node, i, n).astype(np.float64)
                                  for i, n in ((1, "scale"), (2, "B"), (3, "mean"), (4, "var")))
        eps = _attrs(node).get("epsilon", 1e-5)
        if t.src == INPUT or not self.layers[self.index[t.src]].has_weights or not self.single_use(t, node.input[0]) \
                or getattr(self.layers[self.index[t.src]], "relu", False) or t.pad is not None:
            self.refuse(node, "BatchNormalization must directly follow a Conv/Gemm/MatMul whose output it alone uses "
                              "(it is folded into that layer)")
        w, b = self.weights[t.src]
        f = gamma / np.sqrt(var + eps)
        w = w * f.reshape((-1,) + (1,) * (w.ndim - 1))
        b = (b - mean) * f + beta
        self.weights[t.src] = (w, b)
        self.alias(node, t)

    def op_Relu(self, node):
        t = self.tensor(node)
        src, names = t.src, [node.input[0]]
        while src != INPUT and self.layers[self.index[src]].kind == "maxpool":     # ReLU and max commute
            src = self.layers[self.index[src]].inputs[0]
            names.append(self.out_name.get(src, ""))
        ok = (src != INPUT and self.layers[self.index[src]].kind in ("conv", "fc", "add") and src not in self.identity
              and all(self.uses.get(n, 0) == 1 for n in names))
        if not ok:
            self.refuse(node, "a ReLU must follow a Conv, Gemm/MatMul or Add (possibly through a MaxPool) whose "
                              "output nothing else uses (it is folded into that layer)")
        self.update(src, relu=True)
        self.alias(node, t)

    def _pool_params(self, node, at):
        k = self.spatial(node, at, "kernel_shape", 2, [])
        if len(set(k)) != 1:
            self.refuse(node, f"kernel_shape={k}: only square pools are supported")
        strides = self.spatial(node, at, "strides", 2, [1, 1])     # ONNX: strides default to 1, not to the kernel
        if len(set(strides)) != 1:
            self.refuse(node, f"strides={strides}: only equal strides are supported")
        pads = self.spatial(node, at, "pads", 4, [0, 0, 0, 0])
        ap = at.get("auto_pad", b"NOTSET")
        ap = ap.decode() if isinstance(ap, bytes) else ap
        if ap not in ("NOTSET", "", "VALID"):
            self.refuse(node, f"auto_pad={ap!r} is not supported for pools")
        if len(set(pads)) != 1:
            self.refuse(node, f"pads={pads}: only equal padding on all sides is supported")
        if at.get("ceil_mode", 0):
            self.refuse(node, "ceil_mode=1 is not supported")
        if any(d != 1 for d in at.get("dilations", [1, 1])):
            self.refuse(node, "dilated pools are not supported")
        return int(k[0]), int(strides[0]), int(pads[0])

    def op_MaxPool(self, node):
        t = self.tensor(node)
        at = _attrs(node)
        if len(node.output) > 1 and node.output[1] and self.uses.get(node.output[1]):
            self.refuse(node, "the Indices output is not supported")
        k, s, p = self._pool_params(node, at)
        if at.get("storage_order", 0):
            self.refuse(node, "storage_order=1 is not supported")
        layer = MaxPool(name=self.name_for(node), inputs=(t.src,), k=k, stride=None if s == k else s, pad=p)
        self.alias(node, self.add_layer(node, layer))

    def op_AveragePool(self, node):
        t = self.tensor(node)
        k, s, p = self._pool_params(node, _attrs(node))
        if s != k or p:
            self.refuse(node, f"kernel {k}, stride {s}, pad {p}: average pools must be k x k with stride k and no "
                              f"padding (DESIGN.md section 3)")
        if t.shape[1] == k and t.shape[2] == k:
            layer = GlobalAvgPool(name=self.name_for(node), inputs=(t.src,))
        else:
            layer = AvgPool(name=self.name_for(node), inputs=(t.src,), k=k)
        self.alias(node, self.add_layer(node, layer))

    def op_GlobalAveragePool(self, node):
        t = self.tensor(node)
        self.alias(node, self.add_layer(node, GlobalAvgPool(name=self.name_for(node), inputs=(t.src,))))

    def op_Flatten(self, node):
        t = self.tensor(node)
        if _attrs(node).get("axis", 1) != 1:
            self.refuse(node, "only Flatten(axis=1) is supported")
        self.alias(node, replace(t, flat=True))

    def op_Reshape(self, node):
        t = self.tensor(node)
        target = self.const(node, 1, "shape")
        n = int(np.prod(t.shape))
        try:
            shp = _reshape_target((1,) + tuple(t.shape), target)
        except ValueError as e:
            self.refuse(node, f"cannot reshape {list(t.shape)} to {list(target)}: {e}")
        if tuple(shp) == (1, n):
            self.alias(node, replace(t, flat=True))
        elif tuple(shp) == (1,) + tuple(t.shape):
            self.alias(node, t)
        else:
            self.refuse(node, f"only a reshape to [N, {n}] (flatten) is supported, not {list(shp)}")

    def _linear(self, node, t, w, b):
        self.alias(node, self.add_layer(node, self.linear_layer(node, t, w.shape), (w, b)))

    def linear_layer(self, node, t: _T, wshape) -> Linear:
        """The ``Linear`` of a Gemm/MatMul-like node with weights ``[out, in]`` on ``t``."""
        if t.shape[1:] != (1, 1) and not t.flat:
            self.refuse(node, f"input of shape {t.shape} must be flattened first")
        n = int(np.prod(t.shape))
        if wshape[1] != n:
            self.refuse(node, f"weight has {wshape[1]} inputs, its input has {n} values")
        return Linear(name=self.name_for(node), inputs=(t.src,), in_features=n, out_features=int(wshape[0]),
                      relu=False)

    def op_Gemm(self, node):
        t = self.tensor(node)
        at = _attrs(node)
        if at.get("transA", 0):
            self.refuse(node, "transA=1 is not supported")
        w = self.const(node, 1, "B").astype(np.float64)
        if not at.get("transB", 0):
            w = w.T
        w = w * at.get("alpha", 1.0)
        b = self.const(node, 2, "C").astype(np.float64) * at.get("beta", 1.0) if len(node.input) > 2 and node.input[2] \
            else np.zeros(w.shape[0])
        b = np.broadcast_to(b.reshape(-1), (w.shape[0],)).copy() if b.size in (1, w.shape[0]) else \
            self.refuse(node, f"bias of shape {b.shape} does not match {w.shape[0]} outputs")
        self._linear(node, t, w, b)

    def op_MatMul(self, node):
        t = self.tensor(node)
        w = self.const(node, 1, "the right operand").astype(np.float64)
        if w.ndim != 2:
            self.refuse(node, f"right operand of shape {list(w.shape)}: a 2-D constant matrix is needed")
        self._linear(node, t, w.T, np.zeros(w.shape[1]))

    def op_Sum(self, node):
        self.op_Add(node)

    def op_Add(self, node):
        ins = [i for i in node.input if i]
        if len(ins) == 2 and (ins[1] in self.consts or ins[0] in self.consts):
            # a constant added to a layer output: its bias
            ci, ti = (1, 0) if ins[1] in self.consts else (0, 1)
            t = self.tensor(node, ti)
            c = self.consts[ins[ci]].astype(np.float64)
            lay = self.layers[self.index[t.src]] if t.src != INPUT else None
            if lay is None or not lay.has_weights or not self.single_use(t, ins[ti]) or getattr(lay, "relu", False):
                self.refuse(node, "adding a constant is only supported as the bias of the preceding Conv/Gemm/MatMul")
            w, b = self.weights[t.src]
            cc = c.reshape(-1)
            if cc.size == 1 or cc.size == b.size and (c.ndim <= 1 or c.shape[-1] == b.size or c.ndim >= 3):
                self.weights[t.src] = (w, b + (cc if cc.size == b.size else cc[0]))
            else:
                self.refuse(node, f"constant of shape {list(c.shape)} is not a per-output bias")
            self.alias(node, t)
            return
        if len(ins) != 2:
            self.refuse(node, f"{len(ins)} inputs: only joins of exactly two feature maps are supported")
        a, b = self.tensor(node, 0), self.tensor(node, 1)
        if a.flat != b.flat:
            self.refuse(node, "adds a flattened and an unflattened tensor")
        layer = Add(name=self.name_for(node), inputs=(a.src, b.src), relu=False)
        self.alias(node, self.add_layer(node, layer))

    def op_Concat(self, node):
        ts = [self.tensor(node, i) for i in range(len(node.input))]
        axis = _attrs(node).get("axis", 1)
        if axis not in (1, -3):
            self.refuse(node, f"axis={axis}: only channel concatenation (axis 1) is supported")
        if any(t.flat for t in ts):
            self.refuse(node, "concatenation of flattened tensors is not supported")
        layer = Concat(name=self.name_for(node), inputs=tuple(t.src for t in ts))
        self.alias(node, self.add_layer(node, layer))

    def _identity_conv(self, node, t: _T, stride: int, c_before: int = 0, c_after: int = 0) -> _T:
        c = t.shape[0]
        w = np.zeros((c_before + c + c_after, c, 1, 1))
        w[np.arange(c) + c_before, np.arange(c), 0, 0] = 1.0
        name = self.name_for(node)
        layer = Conv2d(name=name, inputs=(t.src,), cin=c, cout=c + c_before + c_after, k=1, stride=stride, pad=0,
                       relu=False)
        out = self.add_layer(node, layer, (w, np.zeros(w.shape[0])))
        self.identity.add(name)
        self.notes.append(f"{node.op_type} {node.name!r} lowered onto a 1x1 convolution with identity weights "
                          f"(stride {stride}, {c_before}+{c_after} zero channels)")
        return out

    def op_Pad(self, node):
        t = self.tensor(node)
        at = _attrs(node)
        mode = at.get("mode", b"constant")
        mode = mode.decode() if isinstance(mode, bytes) else mode
        pads = list(at["pads"]) if "pads" in at else [int(v) for v in self.const(node, 1, "pads")]
        value = float(self.consts[node.input[2]].reshape(-1)[0]) if len(node.input) > 2 and node.input[2] \
            and node.input[2] in self.consts else float(at.get("value", 0.0))
        if len(node.input) > 3 and node.input[3]:
            self.refuse(node, "the axes input is not supported")
        if mode != "constant" or value != 0.0:
            self.refuse(node, f"mode={mode!r}, value={value}: only zero padding is supported")
        if len(pads) != 8 or any(p < 0 for p in pads) or pads[0] or pads[4]:
            self.refuse(node, f"pads={pads}: only non-negative padding of C, H, W is supported")
        cb, ca = pads[1], pads[5]
        sp = (pads[2], pads[3], pads[6], pads[7])
        if (cb or ca) and any(sp):
            self.refuse(node, "padding channels and H/W in one Pad is not supported")
        if cb or ca:
            src = self.layers[self.index[t.src]] if t.src != INPUT else None
            if src is not None and t.src in self.identity and self.single_use(t, node.input[0]):
                w, b = self.weights[t.src]
                w = np.concatenate([np.zeros((cb,) + w.shape[1:]), w, np.zeros((ca,) + w.shape[1:])])
                self.weights[t.src] = (w, np.zeros(w.shape[0]))
                self.update(t.src, cout=w.shape[0])
                shape = (w.shape[0],) + tuple(t.shape[1:])
                self.shapes[t.src] = shape
                self.notes.append(f"Pad {node.name!r}: {cb}+{ca} zero channels added to {t.src!r}")
                self.alias(node, replace(t, shape=shape))
            else:
                self.alias(node, self._identity_conv(node, t, 1, cb, ca))
            return
        prev = t.pad or (0, 0, 0, 0)
        self.alias(node, replace(t, pad=tuple(p + q for p, q in zip(prev, sp))))

    def op_Slice(self, node):
        t = self.tensor(node)
        starts, ends = self.const(node, 1, "starts"), self.const(node, 2, "ends")
        axes = self.const(node, 3, "axes") if len(node.input) > 3 and node.input[3] else np.arange(len(starts))
        steps = self.const(node, 4, "steps") if len(node.input) > 4 and node.input[4] else np.ones(len(starts), int)
        full = (1,) + tuple(t.shape)
        spec = {}
        for s0, e0, ax, st in zip(starts, ends, axes, steps):
            ax = int(ax) % 4
            s0, e0, st = int(s0), int(e0), int(st)
            if st < 1 or s0 != 0 or e0 < full[ax]:
                self.refuse(node, f"axis {ax}: only slices [0::step] over the whole axis are supported "
                                  f"(start {s0}, end {e0}, step {st})")
            spec[ax] = st
        if any(spec.get(a, 1) != 1 for a in (0, 1)):
            self.refuse(node, "only H/W can be subsampled")
        sh, sw = spec.get(2, 1), spec.get(3, 1)
        if sh != sw or sh not in (1, 2):
            self.refuse(node, f"steps H={sh}, W={sw}: only equal steps of 1 or 2 are supported")
        if sh == 1:
            self.alias(node, t)
            return
        self.alias(node, self._identity_conv(node, t, sh))


_FOLDABLE = {"Constant", "Gather", "Unsqueeze", "Squeeze", "Concat", "Cast", "ConstantOfShape", "Reshape", "Mul",
             "Add", "Sub", "Div", "Identity", "Dropout"}


def _reshape_target(shape, target) -> tuple:
    """ONNX Reshape semantics (0 copies the dimension, one -1 is inferred)."""
    t = [int(v) for v in np.asarray(target).reshape(-1)]
    t = [shape[i] if v == 0 else v for i, v in enumerate(t)]
    n = int(np.prod(shape))
    if t.count(-1) > 1:
        raise ValueError("more than one -1")
    if -1 in t:
        rest = int(np.prod([v for v in t if v != -1]))
        if rest == 0 or n % rest:
            raise ValueError("sizes do not divide")
        t[t.index(-1)] = n // rest
    if int(np.prod(t)) != n:
        raise ValueError("sizes differ")
    return tuple(t)


for _op in ("Constant", "Gather", "Unsqueeze", "Squeeze", "Cast", "ConstantOfShape", "Mul", "Sub", "Div"):
    if not hasattr(_Importer, f"op_{_op}"):
        setattr(_Importer, f"op_{_op}", lambda self, node: self.refuse(
            node, "only supported on constants (shape arithmetic), not on feature maps"))


# --- quantized graphs (QDQ, QLinear*, *Integer) -> QuantModel --------------------------------------------
@dataclass
class _Pending:
    """A layer whose output quantization is not known yet: a weight layer's accumulators (real value
    ``scale * (acc + bias)``), or an Add / average pool waiting for the QuantizeLinear after it."""
    layer: str
    kind: str                    # "weight" | "add" | "pool"
    scale: float = 1.0           # weight: the real value of one accumulator unit
    relu: bool = False
    ins: tuple = ()              # add: the inputs' TensorQuant; pool: (input TensorQuant, window size)
    z_in: int = 0                # weight: the input's zero point (unsigned code)


@dataclass
class _Q:
    """What a tensor of a quantized graph holds: ``codes`` (integers, real ``scale*(q - z)``), ``real``
    (the same dequantized to float), ``pending`` (see :class:`_Pending`) or ``float`` (the graph input)."""
    kind: str
    tq: object = None            # TensorQuant for codes/real (zero point as an unsigned code)
    pend: _Pending | None = None


@dataclass
class _QConst:
    """A quantized constant (DequantizeLinear of an integer initializer): ``scale * (values - zp)``."""
    values: np.ndarray           # the integers as stored (int8/uint8/int32)
    scale: np.ndarray
    zp: np.ndarray


def _is_quantized(model) -> bool:
    return any(n.op_type in QUANTIZED_OPS for n in model.graph.node)


def _same_scale(a: float, b: float) -> bool:
    """Scales equal up to float32 storage (ONNX scales are float32; products of them are computed in float)."""
    return abs(a - b) <= 1e-6 * max(abs(a), abs(b))


class _QuantImporter(_Importer):
    """Walks a quantized graph onto DESIGN.md §3's integers: weights ``w - w_zero_point`` (signed
    ``w_bits``), int32 biases with ``- z_in·Σw`` folded, per-layer ``M``/``s`` from the real multiplier
    (``gen.quantize.scale_to_requant``), activations as unsigned codes (an int8 tensor is offset by 128)."""
    SUPPORTED = SUPPORTED_OPS + QUANTIZED_OPS + ("Mul",)
    PAD_CONSUMERS = ("Conv", "QLinearConv", "ConvInteger")

    def __init__(self, model, source: str, w_bits: int = 8, a_bits: int = 8):
        super().__init__(model, source)
        self.w_bits, self.a_bits = w_bits, a_bits
        self.qconsts: dict[str, _QConst] = {}
        self.params: dict = {}
        self.acc_scale: dict[str, float] = {}
        self.tq: dict = {}
        self.input_tq = None
        self.input_signed = False

    # --- the graph input ---------------------------------------------------------------------------
    def input_tensor(self, vi, in_shape) -> _T:
        from gen.quantize import TensorQuant
        et = vi.type.tensor_type.elem_type
        from onnx import TensorProto
        if et in (TensorProto.UINT8, TensorProto.INT8):
            # integer input (ConvInteger/QLinear graphs): the codes themselves; the consumers' zero points apply
            self.input_signed = et == TensorProto.INT8
            self.input_tq = TensorQuant(1.0, 128 if self.input_signed else 0)
            return _T(INPUT, in_shape, q=_Q("codes", self.input_tq))
        return _T(INPUT, in_shape, q=_Q("float"))

    # --- quantization parameters --------------------------------------------------------------------
    def scale(self, node, i: int, what: str, weight: bool = False) -> float:
        """A per-tensor scale (refused: per-axis activation scales, per-output-channel weight scales)."""
        v = self.const(node, i, what).astype(np.float64).reshape(-1)
        return self.one_scale(node, v, what, weight)

    def one_scale(self, node, v: np.ndarray, what: str, weight: bool) -> float:
        if np.any(v <= 0) or not np.all(np.isfinite(v)):
            self.refuse(node, f"{what} must be positive and finite, got {v.tolist()[:4]}")
        if v.size > 1 and not np.all(v == v[0]):
            if weight:
                self.refuse(node, f"{what} has per-output-channel values ({v.size} scales): pimgen's post units carry "
                                  f"one M/s per layer (gen.params.Requant); quantize the weights per tensor")
            self.refuse(node, f"{what} has {v.size} different values (per-axis quantization): pimgen's activations "
                              f"take one scale and zero point per tensor")
        return float(v[0])

    def zero_point(self, node, i: int, what: str) -> tuple[int, bool]:
        """``(zero point as an unsigned a_bits code, signed)``; absent: uint8 0."""
        if i >= len(node.input) or not node.input[i]:
            return 0, False
        v = self.const(node, i, what).reshape(-1)
        if v.dtype not in (np.uint8, np.int8):
            self.refuse(node, f"{what} has type {v.dtype}: activations must be uint8 or int8")
        if v.size > 1 and not np.all(v == v[0]):
            self.refuse(node, f"{what} has {v.size} different values: one zero point per tensor is supported")
        signed = v.dtype == np.int8
        return int(v[0]) + (128 if signed else 0), signed

    def tensor_quant(self, node, si: int, zi: int, what: str):
        from gen.quantize import TensorQuant
        s = self.scale(node, si, f"{what}_scale")
        z, _ = self.zero_point(node, zi, f"{what}_zero_point")
        return TensorQuant(s, z)

    def int_weights(self, node, values, zp, what: str) -> np.ndarray:
        """Integer weights ``values - zp`` as signed ``w_bits`` (refused when they do not fit)."""
        zp = np.asarray(zp).reshape(-1)
        if zp.size > 1 and not np.all(zp == zp[0]):
            self.refuse(node, f"{what} has {zp.size} different zero points: one zero point per weight tensor")
        w = values.astype(np.int64) - (int(zp[0]) if zp.size else 0)
        lo, hi = -(1 << (self.w_bits - 1)), (1 << (self.w_bits - 1)) - 1
        if w.min() < lo or w.max() > hi:
            self.refuse(node, f"{what} minus its zero point spans [{w.min()}, {w.max()}]: pimgen's weights are "
                              f"signed {self.w_bits}-bit [{lo}, {hi}]")
        return w

    def requant(self, node, r: float, z_out: int, relu: bool):
        """``Requant(M, s)`` for the real multiplier ``r`` (``gen.quantize.scale_to_requant``)."""
        from gen.params import M_MAX, Requant
        from gen.quantize import scale_to_requant
        if not r > 0 or r > M_MAX:
            self.refuse(node, f"requantization multiplier {r:.6g} is outside (0, {M_MAX}]: pimgen's M is unsigned "
                              f"16-bit with a right shift")
        rq = scale_to_requant(r)
        return Requant(rq.m, rq.s, z_out, relu)

    # --- tensors -----------------------------------------------------------------------------------
    def q(self, node, i: int, kinds: tuple, what: str = "input") -> _T:
        t = self.tensor(node, i)
        if t.q is None or t.q.kind not in kinds:
            have = {"codes": "integer codes", "real": "a dequantized tensor", "pending": "an unrequantized "
                    "Conv/Gemm/MatMul/Add/pool output", "float": "the float graph input"}[t.q.kind if t.q else "float"]
            want = {"codes": "integer codes (QuantizeLinear / QLinear* output)", "real": "a DequantizeLinear output",
                    "pending": "a Conv/Gemm/MatMul/ConvInteger/MatMulInteger output",
                    "float": "the float graph input"}
            self.refuse(node, f"{what} {node.input[i]!r} is {have}; expected {' or '.join(want[k] for k in kinds)}")
        return t

    def set(self, node, t: _T, q: _Q) -> None:
        if q.kind in ("codes", "real") and t.src != INPUT:
            self.tq.setdefault(t.src, q.tq)
        self.alias(node, replace(t, q=q))

    def op_BatchNormalization(self, node):
        self.refuse(node, "BatchNormalization in a quantized graph: fold it into the conv before quantizing")

    def qconst(self, node, i: int, what: str) -> _QConst:
        name = node.input[i] if i < len(node.input) else ""
        if name in self.qconsts:
            return self.qconsts[name]
        if name in self.consts and np.issubdtype(self.consts[name].dtype, np.integer):
            v = self.consts[name]
            return _QConst(v, np.ones(1), np.zeros(1, dtype=np.int64))
        self.refuse(node, f"{what} ({name!r}) must be quantized: a DequantizeLinear of an integer initializer")

    # --- Q / DQ ------------------------------------------------------------------------------------------
    def op_QuantizeLinear(self, node):
        tq = self.tensor_quant(node, 1, 2, "y")
        if node.input[0] in self.consts:              # a float constant quantized: fold it
            _, signed = self.zero_point(node, 2, "y_zero_point")
            v = self.consts[node.input[0]].astype(np.float64)
            lo, hi = (-128, 127) if signed else (0, 255)
            self.consts[node.output[0]] = np.clip(np.round(v / tq.scale) + tq.zero_point - (128 if signed else 0),
                                                  lo, hi).astype(np.int8 if signed else np.uint8)
            return
        self.check_axis(node)
        t = self.q(node, 0, ("float", "real", "pending"))
        if t.q.kind == "float":
            if self.input_tq is not None and self.input_tq != tq:
                self.refuse(node, "the graph input is quantized twice with different scales/zero points")
            self.input_tq = tq
            self.set(node, t, _Q("codes", tq))
        elif t.q.kind == "real":
            if not (_same_scale(t.q.tq.scale, tq.scale) and t.q.tq.zero_point == tq.zero_point):
                self.refuse(node, f"requantizes a tensor from scale {t.q.tq.scale:.6g}/zero point "
                                  f"{t.q.tq.zero_point} to {tq.scale:.6g}/{tq.zero_point}: pimgen requantizes only "
                                  f"in Conv/Gemm/MatMul, Add and average pools (give both the same scale)")
            self.set(node, t, _Q("codes", tq))
        else:
            self.finish(node, t.q.pend, tq)
            self.set(node, t, _Q("codes", tq))

    def check_axis(self, node):
        for i in (1, 2):
            if i < len(node.input) and node.input[i] in self.consts and self.consts[node.input[i]].size > 1:
                self.scale(node, 1, "scale") if i == 1 else self.zero_point(node, 2, "zero_point")

    def op_DequantizeLinear(self, node):
        if node.input[0] in self.consts:              # quantized weights / biases
            v = self.consts[node.input[0]]
            if not np.issubdtype(v.dtype, np.integer):
                self.refuse(node, f"input has type {v.dtype}: DequantizeLinear takes integers")
            s = self.const(node, 1, "x_scale").astype(np.float64).reshape(-1)
            z = self.consts.get(node.input[2]) if len(node.input) > 2 and node.input[2] else np.zeros(1, np.int64)
            if z is None:
                self.refuse(node, f"x_zero_point ({node.input[2]!r}) must be a constant")
            self.qconsts[node.output[0]] = _QConst(v, s, z.astype(np.int64).reshape(-1))
            return
        self.check_axis(node)
        t = self.q(node, 0, ("codes",))
        self.set(node, t, _Q("real", self.tensor_quant(node, 1, 2, "x")))

    # --- weight layers -----------------------------------------------------------------------------------
    def weight_layer(self, node, t: _T, w: np.ndarray, bias: np.ndarray, z_in: int, scale: float,
                     conv: bool) -> _Pending:
        """Add a Conv2d/Linear with integer weights ``w``, int32 ``bias`` (``- z_in·Σw`` folded here)."""
        from gen.intops import fold_zero_point
        layer = self.conv_layer(node, t, w.shape) if conv else self.linear_layer(node, t, w.shape)
        b = fold_zero_point(bias, w, z_in)
        self.add_layer(node, layer, (w, b))
        self.params[layer.name] = (z_in,)
        self.acc_scale[layer.name] = scale
        return _Pending(layer.name, "weight", scale=scale, z_in=z_in)

    def int_bias(self, node, i: int, cout: int, acc_scale: float) -> np.ndarray:
        """The bias input ``i`` in accumulator units (its real value / ``acc_scale``, rounded; 0 when absent)."""
        if i >= len(node.input) or not node.input[i]:
            return np.zeros(cout, dtype=np.int64)
        name = node.input[i]
        if name in self.qconsts:
            qc = self.qconsts[name]
            real = (qc.values.astype(np.float64) - qc.zp) * qc.scale
        elif name in self.consts:
            real = self.consts[name].astype(np.float64)
        else:
            self.refuse(node, f"bias ({name!r}) must be a constant")
        if real.size not in (1, cout):
            self.refuse(node, f"bias of shape {list(real.shape)} does not match {cout} outputs")
        b = np.broadcast_to(real.reshape(-1), (cout,)) / acc_scale
        bi = np.round(b).astype(np.int64)
        if np.abs(b - bi).max() > 1e-3:
            self.notes.append(f"node {node.name!r}: bias rounded to the accumulator scale {acc_scale:.6g}")
        return bi

    def op_QLinearConv(self, node):
        self.qlinear(node, conv=True)

    def op_QLinearMatMul(self, node):
        self.qlinear(node, conv=False)

    def qlinear(self, node, conv: bool):
        """QLinearConv ``(x, x_scale, x_zp, w, w_scale, w_zp, y_scale, y_zp[, B])`` and QLinearMatMul (the
        same inputs, no bias; ``b[in, out]``): one weight layer requantized by ``x_s·w_s / y_s``."""
        t = self.q(node, 0, ("codes",))
        tx = self.tensor_quant(node, 1, 2, "x" if conv else "a")
        w = self.const(node, 3, "w" if conv else "b")
        ws = self.scale(node, 4, "w_scale" if conv else "b_scale", weight=True)
        wz = self.const(node, 5, "w_zero_point" if conv else "b_zero_point")
        ty = self.tensor_quant(node, 6, 7, "y")
        if not conv and w.ndim != 2:
            self.refuse(node, f"b of shape {list(w.shape)}: a 2-D constant matrix is needed")
        wi = self.int_weights(node, w, wz, "w" if conv else "b")
        wi = wi if conv else wi.T
        b = self.const(node, 8, "B").astype(np.int64) if conv and len(node.input) > 8 and node.input[8] else \
            np.zeros(wi.shape[0], dtype=np.int64)
        pend = self.weight_layer(node, t, wi, b, tx.zero_point, tx.scale * ws, conv=conv)
        self.finish(node, pend, ty)
        self.set(node, self.env_of(pend), _Q("codes", ty))

    def op_ConvInteger(self, node):
        t = self.q(node, 0, ("codes",))
        zx, _ = self.zero_point(node, 2, "x_zero_point")
        w = self.const(node, 1, "w")
        wz = self.consts.get(node.input[3]) if len(node.input) > 3 and node.input[3] else np.zeros(1, np.int64)
        wi = self.int_weights(node, w, wz, "w")
        pend = self.weight_layer(node, t, wi, np.zeros(wi.shape[0], dtype=np.int64), zx, 1.0, conv=True)
        self.set(node, self.env_of(pend), _Q("pending", pend=pend))

    def op_MatMulInteger(self, node):
        t = self.q(node, 0, ("codes",))
        za, _ = self.zero_point(node, 2, "a_zero_point")
        bq = self.const(node, 1, "B")
        if bq.ndim != 2:
            self.refuse(node, f"B of shape {list(bq.shape)}: a 2-D constant matrix is needed")
        bz = self.consts.get(node.input[3]) if len(node.input) > 3 and node.input[3] else np.zeros(1, np.int64)
        wi = self.int_weights(node, bq, bz, "B").T
        pend = self.weight_layer(node, t, wi, np.zeros(wi.shape[0], dtype=np.int64), za, 1.0, conv=False)
        self.set(node, self.env_of(pend), _Q("pending", pend=pend))

    def env_of(self, pend: _Pending) -> _T:
        return _T(pend.layer, self.shapes[pend.layer])

    def float_weight_op(self, node, t: _T, wc: _QConst, conv: bool, w_t=lambda w: w, alpha: float = 1.0,
                        bias_i: int | None = None):
        """Conv/Gemm/MatMul on a dequantized input with dequantized integer weights (QDQ)."""
        s_w = self.one_scale(node, wc.scale.reshape(-1), "the weight scale", weight=True)
        wi = w_t(self.int_weights(node, wc.values, wc.zp, "the weight"))
        scale = t.q.tq.scale * s_w * alpha
        b = self.int_bias(node, bias_i, wi.shape[0], scale) if bias_i is not None else \
            np.zeros(wi.shape[0], dtype=np.int64)
        pend = self.weight_layer(node, t, wi, b, t.q.tq.zero_point, scale, conv)
        self.set(node, self.env_of(pend), _Q("pending", pend=pend))

    def op_Conv(self, node):
        t = self.q(node, 0, ("real",))
        self.float_weight_op(node, t, self.qconst(node, 1, "the weight"), True, bias_i=2)

    def op_Gemm(self, node):
        t = self.q(node, 0, ("real",))
        at = _attrs(node)
        if at.get("transA", 0):
            self.refuse(node, "transA=1 is not supported")
        if len(node.input) > 2 and node.input[2] and at.get("beta", 1.0) != 1.0:
            self.refuse(node, f"beta={at['beta']}: only beta = 1 is supported in quantized graphs")
        self.float_weight_op(node, t, self.qconst(node, 1, "B"), False,
                             (lambda w: w) if at.get("transB", 0) else (lambda w: w.T), float(at.get("alpha", 1.0)),
                             bias_i=2)

    def op_MatMul(self, node):
        t = self.q(node, 0, ("real",))
        wc = self.qconst(node, 1, "the right operand")
        if wc.values.ndim != 2:
            self.refuse(node, f"right operand of shape {list(wc.values.shape)}: a 2-D constant matrix is needed")
        self.float_weight_op(node, t, wc, False, lambda w: w.T)

    # --- float glue on a weight layer's accumulators (Cast, Mul by a scale, Add of a bias) -----------------
    def op_Cast(self, node):
        t = self.q(node, 0, ("pending",))
        self.set(node, t, t.q)

    def op_Mul(self, node):
        ci = 1 if node.input[1] in self.consts else 0
        t = self.q(node, 1 - ci, ("pending",))
        c = self.consts.get(node.input[ci])
        if c is None or c.size != 1 or t.q.pend.kind != "weight" or not float(c.reshape(-1)[0]) > 0:
            self.refuse(node, "only a positive scalar constant times a ConvInteger/MatMulInteger output (its scale) "
                              "is supported")
        pend = replace(t.q.pend, scale=t.q.pend.scale * float(c.reshape(-1)[0]))
        self.acc_scale[pend.layer] = pend.scale
        self.set(node, t, _Q("pending", pend=pend))

    def op_Add(self, node):
        ins = [i for i in node.input if i]
        if len(ins) == 2 and (ins[0] in self.consts or ins[1] in self.consts or ins[0] in self.qconsts
                              or ins[1] in self.qconsts):
            ci = 1 if ins[1] in self.consts or ins[1] in self.qconsts else 0
            t = self.q(node, 1 - ci, ("pending",))
            pend = t.q.pend
            if pend.kind != "weight":
                self.refuse(node, "adding a constant is only supported as the bias of a Conv/Gemm/MatMul")
            w, b = self.weights[pend.layer]
            self.weights[pend.layer] = (w, b + self.int_bias(node, ci, len(b), pend.scale))
            self.alias(node, t)
            return
        if len(ins) != 2:
            self.refuse(node, f"{len(ins)} inputs: only joins of exactly two feature maps are supported")
        a, b = self.q(node, 0, ("real",)), self.q(node, 1, ("real",))
        if a.flat != b.flat:
            self.refuse(node, "adds a flattened and an unflattened tensor")
        out = self.add_layer(node, Add(name=self.name_for(node), inputs=(a.src, b.src), relu=False))
        self.set(node, out, _Q("pending", pend=_Pending(out.src, "add", ins=(a.q.tq, b.q.tq))))

    def op_Relu(self, node):
        t = self.q(node, 0, ("pending", "real"))
        if t.q.kind == "pending":
            if t.q.pend.kind == "pool":
                self.refuse(node, "a ReLU after an average pool is not supported")
            self.update(t.q.pend.layer, relu=True)
            self.set(node, t, _Q("pending", pend=replace(t.q.pend, relu=True)))
            return
        # after a DequantizeLinear: the real zero is the code z, so the producer's clamp moves up to z
        p = self.params.get(t.src)
        rq = getattr(p, "requant", None) if not isinstance(p, tuple) else None
        if rq is None and hasattr(p, "relu"):
            rq = p
        if rq is None or rq.z_out != t.q.tq.zero_point or not self.single_use(t, node.input[0]):
            self.refuse(node, "a ReLU on a dequantized tensor must follow a layer that requantizes to the same "
                              "zero point and whose output nothing else uses (it is folded into its clamp)")
        self.set_relu(t.src)
        self.update(t.src, relu=True)
        self.alias(node, t)

    def set_relu(self, name: str) -> None:
        p = self.params[name]
        if hasattr(p, "requant"):
            self.params[name] = replace(p, requant=replace(p.requant, relu=True))
        else:
            self.params[name] = replace(p, relu=True)

    # --- pools, concat --------------------------------------------------------------------------------
    def op_MaxPool(self, node):
        t = self.q(node, 0, ("codes", "real"))
        q = t.q
        super().op_MaxPool(node)
        self.set(node, self.env[node.output[0]], q)
        self.params[self.env[node.output[0]].src] = self.no_params()

    def no_params(self):
        from gen.params import NoParams
        return NoParams()

    def op_AveragePool(self, node):
        t = self.q(node, 0, ("real",))
        super().op_AveragePool(node)
        out = self.env[node.output[0]]
        n = t.shape[1] * t.shape[2] if self.layers[-1].kind == "gap" else self.layers[-1].k ** 2
        self.set(node, out, _Q("pending", pend=_Pending(out.src, "pool", ins=(t.q.tq, n))))

    def op_GlobalAveragePool(self, node):
        t = self.q(node, 0, ("real",))
        super().op_GlobalAveragePool(node)
        out = self.env[node.output[0]]
        self.set(node, out, _Q("pending", pend=_Pending(out.src, "pool", ins=(t.q.tq, t.shape[1] * t.shape[2]))))

    def op_Concat(self, node):
        ts = [self.q(node, i, ("codes", "real")) for i in range(len(node.input))]
        tq = ts[0].q.tq
        for t in ts[1:]:
            if not (_same_scale(t.q.tq.scale, tq.scale) and t.q.tq.zero_point == tq.zero_point):
                self.refuse(node, f"its inputs have different scales/zero points ({tq.scale:.6g}/{tq.zero_point} "
                                  f"vs {t.q.tq.scale:.6g}/{t.q.tq.zero_point}): pimgen's concat does no arithmetic, "
                                  f"quantize its producers to one scale and zero point")
        super().op_Concat(node)
        out = self.env[node.output[0]]
        self.set(node, out, _Q("real" if any(t.q.kind == "real" for t in ts) else "codes", tq))
        self.params[out.src] = self.no_params()

    def op_Pad(self, node):
        self.q(node, 0, ("real",))
        super().op_Pad(node)
        if self.layers and self.layers[-1].name in self.identity:
            self.refuse(node, "channel padding is not supported in quantized graphs")

    def op_Slice(self, node):
        self.refuse(node, "Slice is not supported in quantized graphs (the float importer lowers it onto an "
                          "identity convolution)")

    # --- finishing layers -----------------------------------------------------------------------------
    def finish(self, node, pend: _Pending, to) -> None:
        """Give the pending layer its output quantization ``to`` (TensorQuant): its parameters."""
        from gen.params import AddParams, PoolParams, WeightParams
        from gen.quantize import add_multipliers
        name = pend.layer
        if name in self.params and not isinstance(self.params[name], tuple):
            self.refuse(node, f"the output of {name!r} is requantized a second time; pimgen requantizes once")
        if pend.kind == "weight":
            w, b = self.weights[name]
            self.params[name] = WeightParams(w, b, self.requant(node, pend.scale / to.scale, to.zero_point, pend.relu),
                                             z_in=pend.z_in)
        elif pend.kind == "add":
            ta, tb = pend.ins
            ma, mb, s = add_multipliers(ta.scale / to.scale, tb.scale / to.scale)
            if min(ma, mb) < 1:
                self.refuse(node, f"the Add's multipliers ({ta.scale / to.scale:.3g}, {tb.scale / to.scale:.3g}) do "
                                  f"not fit pimgen's unsigned 16-bit Ma/Mb")
            self.params[name] = AddParams(ma, mb, s, za=ta.zero_point, zb=tb.zero_point, z_out=to.zero_point,
                                          relu=pend.relu)
        else:
            tin, n = pend.ins
            self.params[name] = PoolParams(self.requant(node, tin.scale / (to.scale * n), to.zero_point, pend.relu),
                                           z_in=tin.zero_point)
        self.tq[name] = to

    def _run(self):
        from gen.params import NetworkParams, WeightParams
        from gen.quantize import QuantModel, TensorQuant
        in_shape = self.start()
        self.walk()
        net = self.network(in_shape)
        out = self.env[self.g.output[0].name]
        last = net[net.output]
        origin = f"node {self.origin[last.name][0]!r} ({self.origin[last.name][1]})"
        if not last.has_weights:
            raise ValueError(f"{origin}: a quantized graph must end in a Conv/Gemm/MatMul (pimgen's last layer "
                             f"outputs raw accumulators)")
        output_requant = None
        if out.q is not None and out.q.kind == "pending":
            if out.q.pend.kind != "weight":
                raise ValueError(f"{origin}: the graph output is not requantized")
        else:
            output_requant = self.params[last.name].requant
        w, b = self.weights[last.name]
        self.params[last.name] = WeightParams(w, b, None, z_in=self.params[last.name][0]
                                              if isinstance(self.params[last.name], tuple) else
                                              self.params[last.name].z_in)
        for layer in net.layers:
            if isinstance(self.params.get(layer.name), tuple) or layer.name not in self.params:
                o = self.origin[layer.name]
                raise ValueError(f"node {o[0]!r} ({o[1]}): its output is never requantized (no QuantizeLinear "
                                 f"after it)")
        if self.input_tq is None:
            raise ValueError(f"{self.source}: the graph input is never quantized (no QuantizeLinear on it)")
        nparams = NetworkParams(self.params)
        nparams.check(net, w_bits=self.w_bits)
        return QuantModel(net, nparams, self.input_tq, self.acc_scale[last.name], self.a_bits, self.w_bits,
                          dict(self.tq), {"source": self.source, "imported": "quantized ONNX",
                                          "input_dtype": "int8" if self.input_signed else "uint8",
                                          "notes": self.notes}, output_requant)
