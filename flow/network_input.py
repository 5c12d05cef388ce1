"""The one place a command turns its network argument into a network (``map``, ``compare``,
``topology``, ``build``, ``accuracy``; ``sweep`` through ``flow.commands.map``).

``NETWORK`` is a zoo name, a NeuroSim network CSV (positional, or ``--neurosim-csv FILE``), an ONNX
file or a ``.pimgen`` quantized model. A float ONNX file is quantized on the fly with
``--calibration X.npy``; a quantized ONNX file (QDQ / QLinear* / *Integer) and a ``.pimgen`` file
already carry their integers. Commands that need only the architecture (``map``, ``compare``,
``topology``) take a float ONNX file without calibration. Every refusal is one ``ValueError`` line.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

__all__ = ["NetworkInput", "add_network_args", "network_input", "network_from_args"]

NETWORK_HELP = "zoo name, NeuroSim CSV, ONNX file (float: with --calibration where weights are needed) or .pimgen"


def add_network_args(p: argparse.ArgumentParser) -> None:
    """The network argument and its flags, identical in every command that takes a network."""
    p.add_argument("network", nargs="?", metavar="NETWORK", help=NETWORK_HELP)
    p.add_argument("--neurosim-csv", metavar="FILE", help="read the network from a NeuroSim network CSV")
    p.add_argument("--calibration", metavar="X.npy",
                   help="float calibration images [N, C, H, W] to quantize a float ONNX model on the fly")


@dataclass(frozen=True)
class NetworkInput:
    """A network as a command received it.

    ``kind``: ``zoo`` | ``csv`` | ``onnx`` (float) | ``onnx-quantized`` | ``pimgen``; ``net``: the
    :class:`gen.network.Network`; ``quant``: its :class:`gen.quantize.QuantModel` when the input
    carries (or was given the calibration for) integers, else ``None``; ``float_model``: the
    :class:`gen.floatmodel.FloatModel` of a float ONNX input.
    """
    kind: str
    source: str
    net: object
    quant: object = None
    float_model: object = None


def _kind(spec: str) -> str:
    low = spec.lower()
    if low.endswith(".onnx"):
        return "onnx"
    if low.endswith(".pimgen"):
        return "pimgen"
    if low.endswith(".csv"):
        return "csv"
    return "zoo"


def _load_calibration(path: str):
    import numpy as np
    try:
        return np.load(path)
    except (OSError, ValueError) as e:
        raise ValueError(f"--calibration {path}: cannot read a .npy array ({e})") from None


def network_input(args, *, need_params: bool) -> NetworkInput:
    """The command's network (see the module docstring). ``need_params``: the command needs the
    integers (``build``, ``accuracy``), so a float ONNX file without ``--calibration`` is refused."""
    from gen.network import zoo
    spec, csv, calib = getattr(args, "network", None), getattr(args, "neurosim_csv", None), \
        getattr(args, "calibration", None)
    if csv and spec:
        raise ValueError("give a network NAME or --neurosim-csv FILE, not both")
    if not (csv or spec):
        raise ValueError(f"no network: give a zoo NAME ({', '.join(zoo())}), a NeuroSim CSV, an ONNX file or a "
                         f".pimgen file")
    kind = "csv" if csv else _kind(spec)
    source = csv or spec
    if kind in ("onnx", "pimgen") and not Path(source).is_file():
        raise ValueError(f"{source}: file does not exist")
    if calib and kind != "onnx":
        raise ValueError(f"--calibration is only for a float ONNX model, not for {source!r}")
    if kind == "zoo":
        return NetworkInput("zoo", source, zoo(source))
    if kind == "csv":
        from gen.neurosim import read_neurosim_csv
        return NetworkInput("csv", source, read_neurosim_csv(source))
    if kind == "pimgen":
        from gen.quantize import QuantModel
        qm = QuantModel.load(source)
        return NetworkInput("pimgen", source, qm.net, qm)
    from gen.onnx_import import load_onnx
    from gen.quantize import QuantModel, quantize
    m = load_onnx(source)
    if isinstance(m, QuantModel):
        if calib:
            raise ValueError(f"--calibration is only for a float ONNX model; {source} is already quantized")
        return NetworkInput("onnx-quantized", source, m.net, m)
    if calib:
        return NetworkInput("onnx", source, m.net, quantize(m, _load_calibration(calib)), m)
    if need_params:
        raise ValueError(f"{source} is a float ONNX model: give --calibration X.npy to quantize it (or quantize it "
                         f"once with `pimgen quantize`)")
    return NetworkInput("onnx", source, m.net, None, m)


def network_from_args(args):
    """The :class:`gen.network.Network` of the command's network argument (architecture only)."""
    return network_input(args, need_params=False).net
