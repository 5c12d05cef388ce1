"""``pimgen quantize``: a float ONNX model + calibration images -> one ``.pimgen`` file of integers."""
from __future__ import annotations

HELP = "quantize a float ONNX model with calibration images into pimgen's integers (one .pimgen file)"
DESCRIPTION = (HELP + ". Per-tensor activation scales and zero points from the calibration ranges, symmetric "
               "int8 weights, per-layer M/s, int32 biases (DESIGN.md section 3). The result is taken by "
               "`pimgen accuracy` and by gen.quantize.QuantModel.load.")


def add_arguments(p):
    p.add_argument("model", metavar="MODEL.onnx", help="float ONNX model")
    p.add_argument("--calibration", required=True, metavar="X.npy",
                   help="float calibration images [N, C, H, W] (as the model takes them)")
    p.add_argument("-o", "--output", metavar="OUT.pimgen", help="output file [MODEL.pimgen]")
    p.add_argument("--percentile", type=float, help="clip activation ranges at this percentile (e.g. 99.99) "
                                                     "instead of min/max")
    from flow.commands._common import knob_help
    p.add_argument("--a-bits", type=int, default=8, help=f"{knob_help('a_bits')} [8]")
    p.add_argument("--w-bits", type=int, default=8, help=f"{knob_help('w_bits')} [8]")
    p.add_argument("--force", action="store_true",
                   help="overwrite OUT.pimgen even if it is not a pimgen quantized model")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")


def check_output_file(out, force: bool = False) -> None:
    """Refuse an output that is a folder, or an existing file that is not a ``.pimgen`` model (the
    input ONNX, a user's file), unless ``force``."""
    import json
    from pathlib import Path

    from gen.quantize import QUANT_FORMAT
    out = Path(out)
    if out.is_dir():
        raise ValueError(f"-o {str(out)!r} is a folder; give a file name such as model.pimgen")
    if out.exists() and not force:
        try:
            ok = json.loads(out.read_text()).get("format") == QUANT_FORMAT
        except (OSError, UnicodeDecodeError, ValueError, AttributeError):
            ok = False
        if not ok:
            raise ValueError(f"-o {str(out)!r} exists and is not a pimgen quantized model; choose another -o or "
                             f"add --force to overwrite it")


def quantize_file(model: str, calibration: str, output: str | None = None, *, percentile=None, a_bits=8,
                  w_bits=8, force: bool = False) -> dict:
    """What ``pimgen quantize --json`` prints; writes the ``.pimgen`` file (atomically: a temporary
    file renamed into place, so an error or Ctrl-C leaves no half-written file)."""
    from pathlib import Path

    import numpy as np

    from flow.buildfolder import write_file
    from gen.onnx_import import load_onnx
    from gen.quantize import QuantModel, quantize
    out = Path(output) if output else Path(model).with_suffix(".pimgen")
    check_output_file(out, force)
    if percentile is not None and not 0 < percentile <= 100:
        raise ValueError(f"--percentile {percentile:g} is not allowed: it must be in (0, 100]")
    for flag, v in (("--a-bits", a_bits), ("--w-bits", w_bits)):
        if not 2 <= v <= 16:
            raise ValueError(f"{flag} {v} is not allowed: it must be an integer in [2, 16]")
    try:
        calib = np.load(calibration)
    except (OSError, ValueError) as e:
        raise ValueError(f"--calibration {calibration}: cannot read a .npy array ({e})") from None
    fm = load_onnx(model)
    if isinstance(fm, QuantModel):
        raise ValueError(f"{model} is already a quantized ONNX model: map, compare, topology, build and accuracy "
                         f"take it as it is, without --calibration")
    qm = quantize(fm, calib, a_bits=a_bits, w_bits=w_bits, percentile=percentile)
    write_file(out, writer=qm.save)
    return {"model": str(model), "output": str(out), "network": qm.net.name, "layers": len(qm.net.layers),
            "input": {"scale": qm.input.scale, "zero_point": qm.input.zero_point},
            "output_scale": qm.output_scale, "notes": fm.notes,
            "tensors": {k: {"scale": t.scale, "zero_point": t.zero_point} for k, t in qm.tensors.items()}}


def run(args) -> int:
    from flow.commands._common import print_json
    r = quantize_file(args.model, args.calibration, args.output, percentile=args.percentile, a_bits=args.a_bits,
                      w_bits=args.w_bits, force=args.force)
    if args.json:
        print_json(r)
        return 0
    print(f"{r['model']} -> {r['output']}: {r['layers']} layers, input scale {r['input']['scale']:.6g} "
          f"zero point {r['input']['zero_point']}")
    for n in r["notes"]:
        print(f"  note: {n}")
    print(f"  {'tensor':<24} {'scale':>12} {'zero':>5}")
    for k, t in r["tensors"].items():
        print(f"  {k:<24} {t['scale']:>12.6g} {t['zero_point']:>5}")
    return 0
