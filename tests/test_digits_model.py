"""The trained digits model shipped in gen/models (gen.train_digits): API, accuracy, golden-model agreement."""
from __future__ import annotations

import numpy as np
import pytest

from gen.models import DIGITS_ONNX, digits_accuracy, digits_dataset, digits_float, digits_model, digits_params
from gen.network import zoo
from gen.quantize import QuantModel
from sim.golden import run_network


def test_api_shapes_and_net_is_the_zoo_digits():
    net, params, quantize_input = digits_params()
    assert net.to_dict() == zoo("digits").to_dict()
    params.check(net, w_bits=8)
    x, y = digits_dataset("test")
    assert x.shape == (360, 1, 8, 8) and x.dtype == np.uint8 and y.shape == (360,)
    xf, yf = digits_dataset("test", codes=False)
    assert np.array_equal(quantize_input(xf), x) and np.array_equal(y, yf)
    xt, _ = digits_dataset("train")
    assert len(xt) + len(x) == 1797


def test_int8_golden_accuracy_close_to_float():
    net, params, _ = digits_params()
    x, y = digits_dataset("test")
    pred = np.array([run_network(net, params, xi).ravel().argmax() for xi in x])
    acc = (pred == y).mean()
    xf, _ = digits_dataset("test", codes=False)
    facc = (digits_float().predict(xf) == y).mean()
    assert acc >= 0.95 and facc >= 0.95 and abs(acc - facc) <= 0.02
    assert digits_accuracy()["int8"] == pytest.approx(acc)


def test_quant_model_run_equals_run_network_and_round_trips(tmp_path):
    qm = digits_model()
    x, _ = digits_dataset("test")
    for xi in x[:5]:
        assert np.array_equal(qm.run(xi), run_network(qm.net, qm.params, xi))
    qm.save(tmp_path / "m.pimgen")
    qm2 = QuantModel.load(tmp_path / "m.pimgen")
    assert qm2.params == qm.params and qm2.net.to_dict() == qm.net.to_dict() and qm2.input == qm.input


def test_onnx_export_matches_float_model():
    ort = pytest.importorskip("onnxruntime")
    xf, _ = digits_dataset("test", codes=False)
    sess = ort.InferenceSession(str(DIGITS_ONNX), providers=["CPUExecutionProvider"])
    ref = sess.run(None, {"input": xf.astype(np.float32)})[0]
    ours = digits_float().run(xf).reshape(len(xf), -1)
    np.testing.assert_allclose(ours, ref, atol=1e-4, rtol=1e-4)
