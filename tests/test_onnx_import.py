"""gen.onnx_import.load_onnx on small onnx.helper graphs, checked against onnxruntime (float within 1e-4),
quantized by gen.quantize.quantize (zero points where tensors are signed) and run by the golden model."""
from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from gen.onnx_import import load_onnx  # noqa: E402
from gen.quantize import QuantModel, quantize  # noqa: E402
from sim.golden import run_network  # noqa: E402

RNG = np.random.default_rng(0)


class G:
    """A tiny graph builder."""

    def __init__(self, shape=(1, 3, 8, 8)):
        self.nodes, self.inits, self.shape, self.n = [], [], shape, 0

    def c(self, a, dtype=np.float32):
        self.n += 1
        name = f"c{self.n}"
        self.inits.append(numpy_helper.from_array(np.asarray(a, dtype=dtype), name))
        return name

    def op(self, op, ins, n_out=1, **attrs):
        self.n += 1
        outs = [f"t{self.n}_{i}" for i in range(n_out)]
        self.nodes.append(helper.make_node(op, ins, outs, name=f"{op.lower()}{self.n}", **attrs))
        return outs[0]

    def conv(self, x, cin, cout, k=3, **attrs):
        w = self.c(RNG.normal(0, 1 / np.sqrt(k * k * cin), (cout, cin, k, k)))
        b = self.c(RNG.normal(0, 0.1, cout))
        return self.op("Conv", [x, w, b], kernel_shape=[k, k], **attrs)

    def bn(self, x, c):
        return self.op("BatchNormalization", [x, self.c(RNG.uniform(0.5, 1.5, c)), self.c(RNG.normal(0, .1, c)),
                                              self.c(RNG.normal(0, .1, c)), self.c(RNG.uniform(0.5, 2, c))])

    def save(self, out, path, out_shape=("N",), check=True):
        g = helper.make_graph(self.nodes, "t", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                               ["N"] + list(self.shape[1:]))],
                              [helper.make_tensor_value_info(out, TensorProto.FLOAT, out_shape)], self.inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
        m.ir_version = 8
        if check:
            onnx.checker.check_model(m)
        onnx.save(m, str(path))
        return path


def _ort(path, x):
    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return s.run(None, {"x": x.astype(np.float32)})[0]


def _check_float(path, shape, n=6):
    x = RNG.uniform(0, 1, (n,) + tuple(shape[1:]))
    fm = load_onnx(path)
    ref = _ort(path, x)
    got = fm.run(x).reshape(ref.shape)
    if any("Softmax" in n for n in fm.notes):
        got = np.exp(got - got.max(1, keepdims=True))
        got /= got.sum(1, keepdims=True)
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=1e-4)
    return fm, x, ref


def _resnetish(tmp_path):
    """Stem conv+BN+ReLU (SAME_UPPER), 3x3/2 pad-1 max-pool, a basic block whose second conv is
    signed (add before ReLU), an option-A shortcut (Slice ::2 + channel Pad) next to a stride-2
    block, a concat of two branches, avg pool, GAP, shape-subgraph Reshape, MatMul + Add, Dropout,
    Identity, Softmax."""
    g = G((1, 3, 16, 16))
    x = g.op("Relu", [g.bn(g.conv("x", 3, 8, auto_pad="SAME_UPPER"), 8)])
    x = g.op("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])          # 8x8
    y = g.op("Relu", [g.bn(g.conv(x, 8, 8, pads=[1, 1, 1, 1]), 8)])
    y = g.bn(g.conv(y, 8, 8, pads=[1, 1, 1, 1]), 8)
    x = g.op("Relu", [g.op("Add", [y, x])])
    # option A: stride-2 block, shortcut = x[:, :, ::2, ::2] padded to 16 channels
    y = g.op("Relu", [g.conv(x, 8, 16, pads=[1, 1, 1, 1], strides=[2, 2])])
    y = g.conv(y, 16, 16, pads=[1, 1, 1, 1])
    sc = g.op("Slice", [x, g.c([0, 0], np.int64), g.c([100, 100], np.int64), g.c([2, 3], np.int64),
                        g.c([2, 2], np.int64)])
    sc = g.op("Pad", [sc, g.c([0, 4, 0, 0, 0, 4, 0, 0], np.int64)])
    x = g.op("Relu", [g.op("Sum", [y, sc])])                                                   # 16 x 4x4
    a = g.op("Relu", [g.conv(x, 16, 6, k=1)])
    b = g.op("Relu", [g.conv(g.op("Pad", [x, g.c([0, 0, 1, 1, 0, 0, 1, 1], np.int64)]), 16, 4)])
    x = g.op("Concat", [a, b], axis=1)                                                         # 10 x 4x4
    x = g.op("AveragePool", [x], kernel_shape=[2, 2], strides=[2, 2])                          # 2x2
    x = g.op("Relu", [g.conv(x, 10, 12, k=1)])
    x = g.op("Dropout", [g.op("GlobalAveragePool", [x])])
    shp = g.op("Shape", [x])
    n = g.op("Unsqueeze", [g.op("Gather", [shp, g.c(0, np.int64)], axis=0), g.c([0], np.int64)])
    x = g.op("Reshape", [x, g.op("Concat", [n, g.c([-1], np.int64)], axis=0)])
    x = g.op("Identity", [x])
    x = g.op("Add", [g.op("MatMul", [x, g.c(RNG.normal(0, .3, (12, 5)))]), g.c(RNG.normal(0, .1, 5))])
    x = g.op("Softmax", [x], axis=1)
    return g.save(x, tmp_path / "res.onnx"), g.shape


def test_resnetish_float_matches_onnxruntime(tmp_path):
    path, shape = _resnetish(tmp_path)
    fm, x, ref = _check_float(path, shape)
    kinds = [l.kind for l in fm.net.layers]
    assert {"conv", "maxpool", "add", "concat", "avgpool", "gap", "fc"} <= set(kinds)
    signed = [l.name for l in fm.net.layers if l.kind == "conv" and not l.relu]
    assert signed        # the block's second conv (and the identity shortcut) stay signed
    assert any("identity" in n for n in fm.notes)


def test_resnetish_quantized_with_zero_points(tmp_path):
    path, shape = _resnetish(tmp_path)
    fm = load_onnx(path)
    calib = RNG.uniform(0, 1, (64,) + tuple(shape[1:]))
    qm = quantize(fm, calib)
    zs = [t.zero_point for t in qm.tensors.values()]
    assert any(z > 0 for z in zs)        # signed tensors got zero points
    x = RNG.uniform(0, 1, (40,) + tuple(shape[1:]))
    codes = qm.quantize_input(x)
    fl = fm.run(x).reshape(len(x), -1)
    q = np.stack([run_network(qm.net, qm.params, c).reshape(-1) for c in codes])
    for c, r in zip(codes[:3], q[:3]):
        assert np.array_equal(qm.run(c).reshape(-1), r)
    deq = qm.dequantize_output(q)
    assert np.corrcoef(deq.ravel(), fl.ravel())[0, 1] > 0.98
    assert (deq.argmax(1) == fl.argmax(1)).mean() >= 0.8
    qm.save(tmp_path / "m.pimgen")
    qm2 = QuantModel.load(tmp_path / "m.pimgen")
    assert qm2.params == qm.params and np.array_equal(run_network(qm2.net, qm2.params, codes[0]),
                                                     run_network(qm.net, qm.params, codes[0]))


@pytest.mark.parametrize("auto_pad,stride", [("SAME_UPPER", 1), ("SAME_LOWER", 1), ("VALID", 1), ("VALID", 2),
                                             ("NOTSET", 2)])
def test_conv_auto_pad_and_gemm(tmp_path, auto_pad, stride):
    g = G((1, 2, 9, 9))
    kw = {"pads": [1, 1, 1, 1]} if auto_pad == "NOTSET" else {"auto_pad": auto_pad}
    x = g.op("Relu", [g.conv("x", 2, 4, strides=[stride, stride], **kw)])
    x = g.op("Flatten", [x])
    n = 4 * ((9 + (2 if auto_pad != "VALID" else 0) - 3) // stride + 1) ** 2
    x = g.op("Gemm", [x, g.c(RNG.normal(0, .2, (n, 3))), g.c(RNG.normal(0, .1, 3))], alpha=0.5, beta=2.0)
    _check_float(g.save(x, tmp_path / "a.onnx"), g.shape)


def _refused(tmp_path, g, out, match):
    with pytest.raises(ValueError, match=match) as e:
        load_onnx(g.save(out, tmp_path / "bad.onnx", check=False))
    assert "\n" not in str(e.value)


def test_refusals_name_the_node(tmp_path):
    g = G()
    _refused(tmp_path, g, g.op("Tanh", [g.conv("x", 3, 4)]), r"node 'tanh\d+' \(Tanh\): unsupported operator")
    g = G()
    _refused(tmp_path, g, g.conv("x", 3, 4, group=1, dilations=[2, 2]), r"\(Conv\): dilations=\[2, 2\]")
    g = G()
    a = g.conv("x", 3, 4, pads=[1, 1, 1, 1])
    b = g.conv("x", 3, 4)
    _refused(tmp_path, g, g.op("Add", [a, b]), r"node 'add\d+' \(Add\): input shapes differ")
    g = G()
    _refused(tmp_path, g, g.conv("x", 3, 4, auto_pad="SAME_UPPER", strides=[2, 2]), r"\(Conv\): padding .* asymmetric")
    g = G()
    a = g.op("Relu", [g.conv("x", 3, 4)])
    g.nodes.append(helper.make_node("Add", [a, "nowhere"], ["sum"], name="join"))
    _refused(tmp_path, g, "sum", r"node 'join' \(Add\): input 'nowhere' .*dangling")
    g = G()
    q = g.op("QuantizeLinear", ["x", g.c(0.1), g.c(0, np.uint8)])
    x = g.op("DequantizeLinear", [q, g.c(0.1), g.c(0, np.uint8)])
    # a quantized graph (imported as a QuantModel, tests/test_onnx_quant.py) with a float weight
    _refused(tmp_path, g, g.conv(x, 3, 4), r"node 'conv\d+' \(Conv\): the weight .* must be quantized")
    g = G()
    _refused(tmp_path, g, g.op("Relu", ["x"]), r"\(Relu\): a ReLU must follow")


def test_load_onnx_refuses_garbage(tmp_path):
    p = tmp_path / "x.onnx"
    p.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="not an ONNX model"):
        load_onnx(p)
