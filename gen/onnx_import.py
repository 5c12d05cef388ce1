"""ONNX import: float CNN graphs -> :class:`gen.floatmodel.FloatModel` (DESIGN.md §11).

``load_onnx(path)`` reads a float ONNX model as PyTorch / TensorFlow / the model zoos export
it and returns the network IR with float weights; ``gen.quantize.quantize`` then turns it
into pimgen's integers. Supported (one graph input ``[N, C, H, W]``, one output):

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
``Add``, a dangling input), quantized operators (``QuantizeLinear``, ``QLinearConv``, ...: not
imported yet) — raises ``ValueError`` with one line naming the node, its op type and why.
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


def _attrs(node) -> dict:
    from onnx import helper
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def load_onnx(path):
    """Read a float ONNX CNN: a :class:`gen.floatmodel.FloatModel` (see the module docstring)."""
    import onnx
    try:
        model = onnx.load(str(path))
    except Exception as e:  # noqa: BLE001 - any parse failure is the user's file
        raise ValueError(f"{path}: not an ONNX model ({type(e).__name__}: {e})") from None
    return _Importer(model, str(path)).run()


class _Importer:
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
        if v.pad is not None and node.op_type != "Conv":
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
        inputs = [i for i in self.g.input if i.name not in self.consts]
        if len(inputs) != 1:
            raise ValueError(f"{self.source}: the graph must have exactly one (non-constant) input, it has "
                             f"{len(inputs)}: {', '.join(i.name for i in inputs)}")
        dims = [d.dim_value if d.HasField("dim_value") else None for d in inputs[0].type.tensor_type.shape.dim]
        if len(dims) != 4 or any(d is None or d < 1 for d in dims[1:]):
            raise ValueError(f"input {inputs[0].name!r} has shape {dims}: pimgen needs [N, C, H, W] with fixed C, H, W")
        in_shape = tuple(int(d) for d in dims[1:])
        self.shapes[INPUT] = in_shape
        self.env[inputs[0].name] = _T(INPUT, in_shape)
        if len(self.g.output) != 1:
            raise ValueError(f"{self.source}: the graph must have exactly one output, it has {len(self.g.output)}")
        for node in self.g.node:
            op = node.op_type
            if node.domain not in ("", "ai.onnx"):
                self.refuse(node, f"operator domain {node.domain!r} is not supported")
            if op in QUANTIZED_OPS:
                self.refuse(node, "quantized ONNX operators are not imported yet; import the float model and "
                                  "quantize it with `pimgen quantize MODEL.onnx --calibration X.npy`")
            fn = getattr(self, f"op_{op}", None)
            if fn is None:
                self.refuse(node, f"unsupported operator; supported: {', '.join(SUPPORTED_OPS)}")
            if all((not i) or i in self.consts for i in node.input) and op not in ("Shape",) and \
                    op in _FOLDABLE:
                self.fold(node)
                continue
            fn(node)
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
        net = Network(re.sub(r"\W", "_", name), in_shape, self.layers, f"imported from {self.source}")
        fm = FloatModel(net, self.weights, source=self.source, notes=self.notes)
        return fm

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
        at = _attrs(node)
        w = self.const(node, 1, "weight").astype(np.float64)
        b = self.const(node, 2, "bias").astype(np.float64) if len(node.input) > 2 and node.input[2] else \
            np.zeros(w.shape[0])
        if at.get("group", 1) != 1:
            self.refuse(node, f"group={at['group']}: only group=1 convolutions are supported")
        if any(d != 1 for d in at.get("dilations", [1, 1])):
            self.refuse(node, f"dilations={at['dilations']}: only dilation 1 is supported")
        if w.ndim != 4 or w.shape[2] != w.shape[3]:
            self.refuse(node, f"weight shape {list(w.shape)}: only square 2-D kernels are supported")
        k = w.shape[2]
        strides = at.get("strides", [1, 1])
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
        name = self.name_for(node)
        layer = Conv2d(name=name, inputs=(t.src,), cin=int(w.shape[1]), cout=int(w.shape[0]), k=int(k), stride=s,
                       pad=int(pads[0]), relu=False)
        self.alias(node, self.add_layer(node, layer, (w, b)))

    def conv_pads(self, node, at, shape, k, s):
        ap = at.get("auto_pad", b"NOTSET")
        ap = ap.decode() if isinstance(ap, bytes) else ap
        if ap in ("NOTSET", ""):
            p = at.get("pads", [0, 0, 0, 0])
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
        k = at.get("kernel_shape")
        if not k or len(set(k)) != 1:
            self.refuse(node, f"kernel_shape={k}: only square pools are supported")
        strides = at.get("strides", k)
        if len(set(strides)) != 1:
            self.refuse(node, f"strides={strides}: only equal strides are supported")
        pads = at.get("pads", [0, 0, 0, 0])
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
        if t.shape[1:] != (1, 1) and not t.flat:
            self.refuse(node, f"input of shape {t.shape} must be flattened first")
        n = int(np.prod(t.shape))
        if w.shape[1] != n:
            self.refuse(node, f"weight has {w.shape[1]} inputs, its input has {n} values")
        layer = Linear(name=self.name_for(node), inputs=(t.src,), in_features=n, out_features=int(w.shape[0]),
                       relu=False)
        self.alias(node, self.add_layer(node, layer, (w, b)))

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
