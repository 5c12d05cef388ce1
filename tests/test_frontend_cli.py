"""pimgen quantize / pimgen accuracy end to end on the trained digits model."""
from __future__ import annotations

import json

import numpy as np
import pytest

from flow.cli import main
from gen.models import DIGITS_ONNX, digits_dataset

pytest.importorskip("onnx")


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
