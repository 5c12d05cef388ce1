"""pimgen quantize / accuracy end to end on the trained digits model, and the one network argument (zoo, NeuroSim
CSV, ONNX float or quantized, .pimgen) of map, compare, topology, build and accuracy."""
from __future__ import annotations

import json

import numpy as np
import pytest

from flow.cli import main
from gen.models import DIGITS_ONNX, digits_dataset

onnx = pytest.importorskip("onnx")


def test_quantize_then_accuracy(tmp_path, capsys):
    xf, y = digits_dataset("train", codes=False)
    np.save(tmp_path / "cal.npy", xf[:200])
    xt, yt = digits_dataset("test", codes=False)
    np.save(tmp_path / "x.npy", xt[:20])
    np.save(tmp_path / "y.npy", yt[:20])
    out = tmp_path / "d.pimgen"
    assert main(["quantize", str(DIGITS_ONNX), "--calibration", str(tmp_path / "cal.npy"), "-o", str(out),
                 "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["layers"] == 6 and out.exists()
    assert main(["accuracy", str(out), "--dataset", str(tmp_path / "x.npy"), "--labels", str(tmp_path / "y.npy"),
                 "--adc-bits", "0,4", "--cell-bits", "2", "--json", "--plot", str(tmp_path / "a.png")]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["images"] == 20 and r["int8"] >= 0.9
    lossless = [g for g in r["grid"] if g["adc_bits"] is None][0]
    assert lossless["mean"] == r["int8"]          # lossless crossbar == direct integer model
    assert (tmp_path / "a.png").exists()


def test_accuracy_onnx_without_calibration_is_one_line(capsys):
    assert main(["accuracy", str(DIGITS_ONNX)]) == 2
    err = capsys.readouterr().err
    assert "give --calibration" in err and err.count("\n") == 1


# --- one network argument everywhere: zoo | NeuroSim CSV | ONNX (float / quantized) | .pimgen ------------------
def _digits_files(tmp_path):
    xf, _ = digits_dataset("train", codes=False)
    np.save(tmp_path / "cal.npy", xf[:200])
    xt, yt = digits_dataset("test", codes=False)
    np.save(tmp_path / "x.npy", xt[:20])
    np.save(tmp_path / "y.npy", yt[:20])
    return str(tmp_path / "cal.npy"), str(tmp_path / "x.npy"), str(tmp_path / "y.npy")


def test_map_compare_topology_take_a_float_onnx_without_calibration(capsys):
    assert main(["map", "digits", "--json"]) == 0
    zoo_rec = json.loads(capsys.readouterr().out)
    assert main(["map", str(DIGITS_ONNX), "--json"]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert (rec["macs"], rec["params"], rec["total_clocks"]) == (zoo_rec["macs"], zoo_rec["params"],
                                                                 zoo_rec["total_clocks"])
    assert main(["compare", str(DIGITS_ONNX), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["network"] == "digits"
    assert main(["topology", str(DIGITS_ONNX), "--topology", "mesh", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["network"] == "digits"


def test_build_digits_onnx_with_calibration(tmp_path, capsys):
    cal, _, _ = _digits_files(tmp_path)
    assert main(["build", str(DIGITS_ONNX), "-o", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert "give --calibration" in err and err.count("\n") == 1
    assert main(["build", str(DIGITS_ONNX), "--calibration", cal, "-o", str(tmp_path / "b"), "--json"]) == 0
    m = json.loads(capsys.readouterr().out)
    assert (tmp_path / "b" / "manifest.json").exists() and (tmp_path / "b" / "rtl" / "chip.v").exists()
    assert m["paths"]["manifest"].endswith("manifest.json")


def test_accuracy_on_the_digits_onnx(tmp_path, capsys):
    cal, x, y = _digits_files(tmp_path)
    assert main(["accuracy", str(DIGITS_ONNX), "--calibration", cal, "--dataset", x, "--labels", y,
                 "--adc-bits", "0", "--cell-bits", "2", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["images"] == 20 and r["float"] >= 0.9 and r["int8"] >= 0.9
    assert r["grid"][0]["mean"] == r["int8"]


def _residual_concat_onnx(path):
    """Conv+ReLU, a block whose second conv is signed (add before the ReLU), a concat of two branches,
    max-pool, flatten, Gemm: float, built with onnx.helper."""
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(3)
    inits, nodes = [], []

    def c(a):
        inits.append(numpy_helper.from_array(np.asarray(a, np.float32), f"c{len(inits)}"))
        return inits[-1].name

    def node(op, ins, **kw):
        out = f"t{len(nodes)}"
        nodes.append(helper.make_node(op, ins, [out], name=f"{op.lower()}{len(nodes)}", **kw))
        return out

    def conv(x, cin, cout, k=3):
        return node("Conv", [x, c(rng.normal(0, 1 / np.sqrt(k * k * cin), (cout, cin, k, k))), c(rng.normal(0, .1, cout))],
                    kernel_shape=[k, k], pads=[k // 2] * 4)
    a = node("Relu", [conv("x", 1, 6)])
    b = conv(node("Relu", [conv(a, 6, 6)]), 6, 6)
    r = node("Relu", [node("Add", [a, b])])
    cat = node("Concat", [node("Relu", [conv(r, 6, 4, 1)]), node("Relu", [conv(r, 6, 4)])], axis=1)
    p = node("MaxPool", [cat], kernel_shape=[2, 2], strides=[2, 2])
    y = node("Gemm", [node("Flatten", [p]), c(rng.normal(0, .2, (10, 128))), c(np.zeros(10))], transB=1)
    g = helper.make_graph(nodes, "rescat", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 8, 8])],
                          [helper.make_tensor_value_info(y, TensorProto.FLOAT, ["N", 10])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.save(m, str(path))
    return str(path)


def test_residual_concat_onnx_map_accuracy_and_build(tmp_path, capsys):
    ort = pytest.importorskip("onnxruntime")
    path = _residual_concat_onnx(tmp_path / "rescat.onnx")
    cal, x, _ = _digits_files(tmp_path)
    assert main(["map", path, "--json"]) == 0
    kinds = {l["kind"] for l in json.loads(capsys.readouterr().out)["layers"]}
    assert {"add", "concat"} <= kinds
    # labels: onnxruntime's own float predictions, so the int8 agreement with it is what is measured
    xs = np.load(x).astype(np.float32)
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    np.save(tmp_path / "ort.npy", sess.run(None, {"x": xs})[0].argmax(1))
    assert main(["accuracy", path, "--calibration", cal, "--dataset", x, "--labels", str(tmp_path / "ort.npy"),
                 "--adc-bits", "0", "--cell-bits", "2", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["float"] == 1.0 and r["int8"] >= 0.8
    # the chip builds the residual join and the concat in the tails of their engines
    assert main(["build", path, "--calibration", cal, "-o", str(tmp_path / "b"), "--json"]) == 0
    m = json.loads(capsys.readouterr().out)
    tails = [op["kind"] for st in m["plan"]["stages"] for op in st["tail"]]
    assert {"add", "concat", "maxpool"} <= set(tails) and (tmp_path / "b" / "rtl" / "chip.v").exists()


def test_quantized_onnx_and_pimgen_everywhere(tmp_path, capsys):
    from flow.commands.quantize import quantize_file
    cal, x, y = _digits_files(tmp_path)
    pim = quantize_file(str(DIGITS_ONNX), cal, str(tmp_path / "d.pimgen"))["output"]
    for cmd in (["map"], ["compare"], ["topology", "--topology", "mesh"]):
        assert main(cmd + [pim, "--json"]) == 0
        capsys.readouterr()
    assert main(["accuracy", pim, "--dataset", x, "--labels", y, "--adc-bits", "0", "--cell-bits", "2",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["int8"] >= 0.9
    assert main(["map", pim, "--calibration", cal]) == 2
    err = capsys.readouterr().err
    assert "--calibration is only for a float ONNX model" in err and err.count("\n") == 1
    assert main(["map", str(tmp_path / "missing.onnx")]) == 2
    assert "file does not exist" in capsys.readouterr().err


def test_quantized_onnx_needs_no_calibration(tmp_path, capsys):
    from test_onnx_quant import qdq_residual
    path, _, _ = qdq_residual(tmp_path)
    assert main(["map", path, "--json"]) == 0
    assert {"add", "concat"} <= {l["kind"] for l in json.loads(capsys.readouterr().out)["layers"]}
    rng = np.random.default_rng(0)
    np.save(tmp_path / "x.npy", rng.integers(0, 256, (10, 2, 8, 8)).astype(np.uint8))   # input codes
    np.save(tmp_path / "y.npy", rng.integers(0, 10, 10))
    assert main(["accuracy", path, "--dataset", str(tmp_path / "x.npy"), "--labels", str(tmp_path / "y.npy"),
                 "--adc-bits", "0", "--cell-bits", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["images"] == 10
    assert main(["quantize", path, "--calibration", str(tmp_path / "x.npy")]) == 2
    assert "already a quantized ONNX model" in capsys.readouterr().err


def test_quantized_residual_onnx_on_the_chip(tmp_path, capsys):
    """A quantized (QDQ) ONNX model with a residual add, a concat, a max-pool and a global
    average pool, built as a chip and simulated: logits bit-exact vs the golden model, clocks
    exact, its classes the int8 golden model's."""
    from test_onnx_quant import qdq_residual
    from gen.onnx_import import load_onnx
    from sim.golden import run_network
    path, _, _ = qdq_residual(tmp_path)
    x = np.random.default_rng(4).integers(0, 256, (3, 2, 8, 8)).astype(np.uint8)
    qm = load_onnx(path)
    want = [int(np.argmax(run_network(qm.net, qm.params, xi))) for xi in x]
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", np.asarray(want))
    assert main(["build", path, "-o", str(tmp_path / "b"), "--json"]) == 0
    capsys.readouterr()
    assert main(["simulate", str(tmp_path / "b"), "--images", "3", "--dataset", str(tmp_path / "x.npy"),
                 "--labels", str(tmp_path / "y.npy"), "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["passed"] and r["mismatches"] == 0 and r["measured_latency"] == r["predicted_latency"]
    assert r["measured_interval"] == r["predicted_interval"] and r["images"] == 3
    assert r["predictions"] == want and r["accuracy"] == 1.0
