"""Train the zoo ``digits`` CNN on scikit-learn's bundled 8×8 digits, in numpy, deterministically.

``python -m gen.train_digits`` (about 20 s on one core) writes, under ``gen/models/``:

* ``digits.onnx`` — the float model (opset 13: Conv, Relu, MaxPool, Flatten, Gemm), so the
  ONNX path (``gen.onnx_import.load_onnx``) is exercised by the same network;
* ``digits_float.npz`` — the float weights and the held-out split (``test_idx``);
* ``digits.pimgen`` — the integer model (:class:`gen.quantize.QuantModel`: unsigned 8-bit
  activations, int8 weights, per-layer ``M``/``s``, int32 biases), calibrated on the training split;
* ``digits.json`` — the accuracies measured at training time.

The network is exactly ``gen.network.zoo("digits")``: conv1 1→16 3×3 pad 1, ReLU; conv2
16→32 3×3 pad 1, ReLU; max-pool 2; conv3 32→32 3×3 pad 1, ReLU; max-pool 2; fc 128→10
(raw logits). Inputs are the pixel values ``/ 16`` (0..1). Training: He initialisation,
Adam, cross-entropy, mini-batches of 32 for 20 epochs (cosine learning-rate decay), one-pixel random shifts as
augmentation, all from ``numpy.random.default_rng(SEED)``; the split is a seeded
permutation of the 1797 images, the last ``TEST`` of it held out. Nothing here runs at
demo time: :mod:`gen.models` loads the committed files.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

SEED = 0
TEST = 360          # held-out images (20 %)
EPOCHS = 20
BATCH = 32
LR = 2e-3
MODELS = Path(__file__).resolve().parent / "models"


def load_split(seed: int = SEED):
    """``(x [N,1,8,8] float in [0, 1], labels, train_idx, test_idx)`` of the bundled digits."""
    from sklearn.datasets import load_digits
    d = load_digits()
    x = (d.images.astype(np.float64) / 16.0)[:, None]
    perm = np.random.default_rng(seed).permutation(len(x))
    return x, d.target.astype(np.int64), np.sort(perm[:-TEST]), np.sort(perm[-TEST:])


# --- layers in NHWC with their backward passes --------------------------------------------
def _im2col(x, k=3, pad=1):
    n, h, w, c = x.shape
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    cols = np.empty((n, h, w, k, k, c), x.dtype)
    for i in range(k):
        for j in range(k):
            cols[:, :, :, i, j, :] = xp[:, i:i + h, j:j + w, :]
    return cols.reshape(n, h, w, k * k * c)


def _col2im(dcols, shape, k=3, pad=1):
    n, h, w, c = shape
    d = dcols.reshape(n, h, w, k, k, c)
    dxp = np.zeros((n, h + 2 * pad, w + 2 * pad, c), dcols.dtype)
    for i in range(k):
        for j in range(k):
            dxp[:, i:i + h, j:j + w, :] += d[:, :, :, i, j, :]
    return dxp[:, pad:pad + h, pad:pad + w, :]


def _pool(x):
    n, h, w, c = x.shape
    y = x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))
    return y


def _pool_back(x, y, dy):
    up = np.repeat(np.repeat(y, 2, axis=1), 2, axis=2)
    mask = (x == up)
    return mask * np.repeat(np.repeat(dy, 2, axis=1), 2, axis=2)


SHAPES = {"conv1": (1, 16), "conv2": (16, 32), "conv3": (32, 32)}


def init(rng):
    p = {}
    for name, (cin, cout) in SHAPES.items():
        p[name + ".w"] = rng.normal(0, np.sqrt(2.0 / (9 * cin)), (9 * cin, cout))   # rows (kh, kw, cin)
        p[name + ".b"] = np.zeros(cout)
    p["fc.w"] = rng.normal(0, np.sqrt(1.0 / 128), (128, 10))                     # rows (c, h, w)
    p["fc.b"] = np.zeros(10)
    return p


def forward(p, x_nchw, cache=None):
    x = x_nchw.transpose(0, 2, 3, 1)
    c = {} if cache is None else cache
    c["x0"] = x
    c["cols1"] = _im2col(x)
    c["a1"] = a1 = np.maximum(c["cols1"] @ p["conv1.w"] + p["conv1.b"], 0)
    c["cols2"] = _im2col(a1)
    c["a2"] = a2 = np.maximum(c["cols2"] @ p["conv2.w"] + p["conv2.b"], 0)
    c["p1"] = p1 = _pool(a2)
    c["cols3"] = _im2col(p1)
    c["a3"] = a3 = np.maximum(c["cols3"] @ p["conv3.w"] + p["conv3.b"], 0)
    c["p2"] = p2 = _pool(a3)
    c["flat"] = flat = p2.transpose(0, 3, 1, 2).reshape(len(x), -1)               # (C, H, W) order
    return flat @ p["fc.w"] + p["fc.b"]


def backward(p, c, dlogits):
    g = {}
    n = len(dlogits)
    g["fc.w"] = c["flat"].T @ dlogits
    g["fc.b"] = dlogits.sum(0)
    dp2 = (dlogits @ p["fc.w"].T).reshape(n, 32, 2, 2).transpose(0, 2, 3, 1)
    da3 = _pool_back(c["a3"], c["p2"], dp2) * (c["a3"] > 0)
    g["conv3.w"] = c["cols3"].reshape(-1, c["cols3"].shape[-1]).T @ da3.reshape(-1, 32)
    g["conv3.b"] = da3.sum((0, 1, 2))
    dp1 = _col2im(da3 @ p["conv3.w"].T, c["p1"].shape)
    da2 = _pool_back(c["a2"], c["p1"], dp1) * (c["a2"] > 0)
    g["conv2.w"] = c["cols2"].reshape(-1, c["cols2"].shape[-1]).T @ da2.reshape(-1, 32)
    g["conv2.b"] = da2.sum((0, 1, 2))
    da1 = _col2im(da2 @ p["conv2.w"].T, c["a1"].shape) * (c["a1"] > 0)
    g["conv1.w"] = c["cols1"].reshape(-1, c["cols1"].shape[-1]).T @ da1.reshape(-1, 16)
    g["conv1.b"] = da1.sum((0, 1, 2))
    return g


def _shift(x, rng):
    """One-pixel random shifts (zero fill) of a batch ``[N, 1, 8, 8]``."""
    n, _, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    dy, dx = rng.integers(0, 3, size=(2, n))
    rows = dy[:, None] + np.arange(h)[None]            # [N, H]
    cols = dx[:, None] + np.arange(w)[None]            # [N, W]
    return xp[np.arange(n)[:, None, None], 0, rows[:, :, None], cols[:, None, :]][:, None]


def train(x, y, *, seed: int = SEED, epochs: int = EPOCHS, log=print):
    rng = np.random.default_rng(seed)
    p = init(rng)
    m = {k: np.zeros_like(v) for k, v in p.items()}
    v = {k: np.zeros_like(v_) for k, v_ in p.items()}
    t = 0
    for ep in range(epochs):
        order = rng.permutation(len(x))
        lr = LR * (0.5 * (1 + np.cos(np.pi * ep / epochs)))
        loss_sum = 0.0
        for b0 in range(0, len(x), BATCH):
            idx = order[b0:b0 + BATCH]
            xb = _shift(x[idx], rng)
            cache = {}
            logits = forward(p, xb, cache)
            z = logits - logits.max(1, keepdims=True)
            prob = np.exp(z) / np.exp(z).sum(1, keepdims=True)
            loss_sum += -np.log(prob[np.arange(len(idx)), y[idx]] + 1e-12).sum()
            d = prob
            d[np.arange(len(idx)), y[idx]] -= 1
            g = backward(p, cache, d / len(idx))
            t += 1
            for k in p:
                gk = g[k] + 1e-4 * p[k] * k.endswith(".w")
                m[k] = 0.9 * m[k] + 0.1 * gk
                v[k] = 0.999 * v[k] + 0.001 * gk * gk
                p[k] -= lr * (m[k] / (1 - 0.9 ** t)) / (np.sqrt(v[k] / (1 - 0.999 ** t)) + 1e-8)
        if log and (ep % 5 == 4 or ep == epochs - 1):
            log(f"epoch {ep + 1:2d}: loss {loss_sum / len(x):.4f}")
    return p


def to_layer_weights(p) -> dict:
    """The trainer's matrices -> ``gen.floatmodel.FloatModel`` weights (``w[Cout, Cin, K, K]``, ``w[out, in]``)."""
    out = {}
    for name, (cin, cout) in SHAPES.items():
        out[name] = (p[name + ".w"].reshape(3, 3, cin, cout).transpose(3, 2, 0, 1).copy(), p[name + ".b"].copy())
    out["fc"] = (p["fc.w"].T.copy(), p["fc.b"].copy())
    return out


def export_onnx(weights: dict, path) -> None:
    """The float model as an ONNX graph (opset 13), input ``input`` ``[N, 1, 8, 8]``, output ``logits``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    inits, nodes = [], []

    def init_(name, a):
        inits.append(numpy_helper.from_array(np.asarray(a, dtype=np.float32), name))

    cur = "input"
    for name in ("conv1", "conv2", "pool1", "conv3", "pool2"):
        if name.startswith("conv"):
            w, b = weights[name]
            init_(f"{name}.weight", w)
            init_(f"{name}.bias", b)
            nodes.append(helper.make_node("Conv", [cur, f"{name}.weight", f"{name}.bias"], [f"{name}_out"],
                                          name=name, kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[1, 1]))
            nodes.append(helper.make_node("Relu", [f"{name}_out"], [f"{name}_relu"], name=f"{name}_relu"))
            cur = f"{name}_relu"
        else:
            nodes.append(helper.make_node("MaxPool", [cur], [f"{name}_out"], name=name, kernel_shape=[2, 2],
                                          strides=[2, 2]))
            cur = f"{name}_out"
    nodes.append(helper.make_node("Flatten", [cur], ["flat"], name="flatten", axis=1))
    w, b = weights["fc"]
    init_("fc.weight", w)
    init_("fc.bias", b)
    nodes.append(helper.make_node("Gemm", ["flat", "fc.weight", "fc.bias"], ["logits"], name="fc", transB=1))
    graph = helper.make_graph(nodes, "digits",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, 8, 8])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="pimgen.train_digits")
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def main(argv=None) -> int:
    import argparse
    ap = argparse.ArgumentParser(prog="python -m gen.train_digits", description=__doc__.split("\n")[0])
    ap.add_argument("-o", "--out", default=str(MODELS), help="output folder [gen/models]")
    args = ap.parse_args(argv)
    from gen.floatmodel import FloatModel
    from gen.network import zoo
    from gen.quantize import quantize
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    x, y, tr, te = load_split()
    p = train(x[tr], y[tr])
    t_train = time.time() - t0
    weights = to_layer_weights(p)
    fm = FloatModel(zoo("digits"), weights, source="gen.train_digits")
    acc_float = float((fm.predict(x[te]) == y[te]).mean())
    np.savez_compressed(out / "digits_float.npz", test_idx=te, **{f"{k}.w": w for k, (w, _) in weights.items()},
                        **{f"{k}.b": b for k, (_, b) in weights.items()})
    export_onnx(weights, out / "digits.onnx")
    qm = quantize(fm, x[tr])
    qm.meta.update({"source": "gen.train_digits", "calibration": "training split (1437 images)"})
    qm.save(out / "digits.pimgen")
    from gen import models
    accs = models.measure_accuracy(folder=out)
    accs["train_seconds"] = round(t_train, 1)
    accs["float_check"] = acc_float
    (out / "digits.json").write_text(json.dumps(accs, indent=1) + "\n")
    print(json.dumps(accs, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
