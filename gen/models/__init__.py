"""Trained models shipped with pimgen (committed files; nothing is trained at import or demo time).

The digits model — the zoo ``digits`` CNN trained on scikit-learn's bundled 8×8 digits by
``python -m gen.train_digits`` (which regenerates every file here):

* :func:`digits_params` -> ``(net, params, quantize_input)``: the ``gen.network.Network``
  (``zoo("digits")``), its :class:`gen.params.NetworkParams` (int8 weights, int32 biases,
  per-layer ``M``/``s``, all zero points 0) and ``quantize_input(x_float [N,1,8,8] in [0,1])``
  -> uint8 codes. ``sim.golden.run_network(net, params, codes[i])`` gives the 10 raw logits.
* :func:`digits_model` -> the :class:`gen.quantize.QuantModel` (same net/params plus
  ``dequantize_output``, the activation scales, ``meta``).
* :func:`digits_float` -> the :class:`gen.floatmodel.FloatModel` (float weights).
* :func:`digits_dataset` ``(split="test")`` -> ``(x_codes [N,1,8,8] uint8, labels [N] int64)``:
  the held-out split (360 images) by default, ``"train"`` (1437) or ``"all"``; ``codes=False``
  gives the float images (pixel / 16) instead.
* :data:`DIGITS_ONNX`: path of the float ONNX export; :func:`digits_accuracy`: the figures
  recorded when the model was trained (``digits.json``).
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np

FOLDER = Path(__file__).resolve().parent
DIGITS_ONNX = FOLDER / "digits.onnx"
DIGITS_QUANT = FOLDER / "digits.pimgen"
DIGITS_FLOAT = FOLDER / "digits_float.npz"

__all__ = ["digits_params", "digits_model", "digits_float", "digits_dataset", "digits_accuracy", "DIGITS_ONNX",
           "DIGITS_QUANT", "int8_logits"]


def _missing(path: Path):
    return ValueError(f"{path} is missing: regenerate the digits model with `python -m gen.train_digits`")


@lru_cache(maxsize=4)
def _load_quant(folder: str):
    from gen.quantize import QuantModel
    p = Path(folder) / "digits.pimgen"
    if not p.exists():
        raise _missing(p)
    return QuantModel.load(p)


def digits_model(folder=FOLDER):
    """The trained digits model as a :class:`gen.quantize.QuantModel`."""
    return _load_quant(str(folder))


def digits_params(folder=FOLDER):
    """``(net, params, quantize_input)`` of the trained digits model (see the module docstring)."""
    qm = digits_model(folder)
    return qm.net, qm.params, qm.quantize_input


def digits_float(folder=FOLDER):
    """The trained digits model's float weights as a :class:`gen.floatmodel.FloatModel`."""
    from gen.floatmodel import FloatModel
    from gen.network import zoo
    p = Path(folder) / "digits_float.npz"
    if not p.exists():
        raise _missing(p)
    z = np.load(p)
    names = ("conv1", "conv2", "conv3", "fc")
    return FloatModel(zoo("digits"), {n: (z[f"{n}.w"], z[f"{n}.b"]) for n in names}, source=str(p))


def digits_dataset(split: str = "test", *, codes: bool = True, folder=FOLDER):
    """``(x, labels)`` of scikit-learn's bundled 8×8 digits: ``split`` ``"test"`` (the held-out 360
    images the model never saw), ``"train"`` or ``"all"``; ``x`` as uint8 input codes
    ``[N, 1, 8, 8]`` (``codes=True``) or float images in [0, 1]."""
    from gen.train_digits import load_split
    if split not in ("test", "train", "all"):
        raise ValueError(f"split={split!r} is not allowed: choose test, train or all")
    x, y, tr, te = load_split()
    p = Path(folder) / "digits_float.npz"
    if p.exists():          # the split the committed model was trained with
        te = np.load(p)["test_idx"]
        tr = np.setdiff1d(np.arange(len(x)), te)
    idx = {"test": te, "train": tr, "all": np.arange(len(x))}[split]
    x, y = x[idx], y[idx]
    return (digits_model(folder).quantize_input(x) if codes else x), y


def int8_logits(qm, codes) -> np.ndarray:
    """Raw last-layer accumulators ``[N, classes]`` of ``qm`` on input codes ``[N, C, H, W]`` by the
    direct integer arithmetic (``gen.intops``, what ``sim.golden.run_network`` runs)."""
    return np.stack([qm.run(c).reshape(-1) for c in np.asarray(codes)])


def digits_accuracy(folder=FOLDER) -> dict:
    """The accuracies recorded when the model was trained (``digits.json``)."""
    p = Path(folder) / "digits.json"
    return json.loads(p.read_text()) if p.exists() else {}


def measure_accuracy(folder=FOLDER) -> dict:
    """Float and int8 (direct integer) top-1 accuracy of the digits model on the held-out split."""
    qm = _load_quant.__wrapped__(str(folder))
    fm = digits_float(folder)
    xf, y = digits_dataset("test", codes=False, folder=folder)
    codes = qm.quantize_input(xf)
    pf = fm.predict(xf)
    pq = int8_logits(qm, codes).argmax(axis=1)
    return {"test_images": int(len(y)), "float": float((pf == y).mean()), "int8": float((pq == y).mean()),
            "int8_vs_float_agreement": float((pf == pq).mean())}
