"""Independent oracles for the golden model (not pimgen code)."""
from __future__ import annotations

import numpy as np


def onnx_conv_integer(x: np.ndarray, w: np.ndarray, stride: int, pad: int) -> np.ndarray:
    """``ConvInteger`` in onnxruntime: uint8 x[Cin,H,W], int8 w[Cout,Cin,K,K] -> int32 [Cout,Ho,Wo]."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    node = helper.make_node("ConvInteger", ["x", "w"], ["y"], strides=[stride, stride], pads=[pad] * 4)
    graph = helper.make_graph(
        [node], "conv",
        [helper.make_tensor_value_info("x", TensorProto.UINT8, [1, *x.shape]),
         helper.make_tensor_value_info("w", TensorProto.INT8, list(w.shape))],
        [helper.make_tensor_value_info("y", TensorProto.INT32, [None, None, None, None])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x[None].astype(np.uint8), "w": w.astype(np.int8)})[0][0]


def scipy_conv(x: np.ndarray, w: np.ndarray, stride: int, pad: int) -> np.ndarray:
    """Cross-correlation with scipy.signal, summed over input channels."""
    from scipy.signal import correlate2d

    xp = np.pad(x.astype(np.int64), ((0, 0), (pad, pad), (pad, pad)))
    out = np.array([sum(correlate2d(xp[c], w[o, c].astype(np.int64), mode="valid") for c in range(x.shape[0]))
                    for o in range(w.shape[0])])
    return out[:, ::stride, ::stride]


def crossbar_mvm_scalar(x_vec, w, cfg) -> list[int]:
    """DESIGN.md §3 read a second time, loop by loop, for one input vector.

    Written independently of ``sim.golden``: cells from offset binary, bit-serial input,
    per-column sums, saturating/coarse ADC, per-column shift-add, slice recombination,
    reference-column correction.
    """
    n_rows, n_out = len(w), len(w[0])
    slices = cfg.w_bits // cfg.cell_bits
    ncols = n_out * slices + 1
    cell = [[0] * ncols for _ in range(n_rows)]
    for r in range(n_rows):
        for o in range(n_out):
            u = w[r][o] + 2 ** (cfg.w_bits - 1)
            for k in range(slices):
                cell[r][o * slices + k] = (u // 2 ** (k * cfg.cell_bits)) % 2 ** cfg.cell_bits
        cell[r][ncols - 1] = 1
    adc_max = 2 ** cfg.adc_resolution - 1
    p = [0] * ncols
    for t in range(cfg.a_bits // cfg.dac_bits):
        for c in range(ncols):
            s = 0
            for r in range(n_rows):
                xt = (x_vec[r] // 2 ** (t * cfg.dac_bits)) % 2 ** cfg.dac_bits
                s += xt * cell[r][c]
            q = min(s // 2 ** cfg.adc_shift, adc_max) * 2 ** cfg.adc_shift
            p[c] += q * 2 ** (t * cfg.dac_bits)
    out = []
    for o in range(n_out):
        dot = sum(p[o * slices + k] * 2 ** (k * cfg.cell_bits) for k in range(slices))
        out.append(dot - 2 ** (cfg.w_bits - 1) * p[ncols - 1])
    return out
