"""``pimgen accuracy``: top-1 accuracy of a quantized model on the crossbar-exact golden model over a
grid of ADC / cell / DAC bits, next to the float and ideal-int8 accuracies."""
from __future__ import annotations

import sys

HELP = "top-1 accuracy over a grid of ADC/cell/DAC bits (crossbar-exact golden model), vs float and int8"
DESCRIPTION = (HELP + ". NETWORK: 'digits' (the trained model in gen/models; its held-out split is the default "
               "data set), a .pimgen file, a quantized ONNX file, or a float ONNX file with --calibration. Device "
               "variation and stuck-at faults plug into the grid when the device model lands (reliability issue).")


def _ints(s: str) -> list[int]:
    try:
        return [int(v) for v in s.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{s!r} is not a comma-separated list of integers") from None


def add_arguments(p):
    from flow.network_input import add_network_args
    add_network_args(p)
    p.add_argument("--dataset", metavar="X.npy", help="float images [N, C, H, W] (uint8 arrays are taken as input "
                                                       "codes) [digits: the held-out split]")
    p.add_argument("--labels", metavar="Y.npy", help="integer labels [N]")
    p.add_argument("--adc-bits", default="4,5,6,8", help="ADC bits to try; 0 = lossless [4,5,6,8]")
    p.add_argument("--cell-bits", default="1,2", help="bits per cell [1,2]")
    p.add_argument("--dac-bits", default="1", help="input bits per cycle [1]")
    p.add_argument("--mapping", choices=["novel", "conventional"], default="novel", help="mapping [novel]")
    p.add_argument("--variation", default="0", help="device variation sigmas (needs the device model; 0 only)")
    p.add_argument("--stuck-at", default="0", help="stuck-at rates (needs the device model; 0 only)")
    p.add_argument("--seeds", type=int, default=1, help="seeds per grid point (device draws) [1]")
    p.add_argument("--limit", type=int, help="use only the first N images")
    p.add_argument("--plot", metavar="F.png", help="write a plot of accuracy vs ADC bits")
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def _load(args):
    import numpy as np

    from flow.network_input import network_input
    ni = network_input(args, need_params=True)
    qm, fm = ni.quant, ni.float_model
    if ni.kind == "zoo" and ni.source == "digits":
        from gen.models import digits_dataset, digits_float, digits_model
        qm, fm = digits_model(), digits_float()
        if args.dataset is None:
            x, y = digits_dataset("test", codes=False)
            return qm, fm, x, y
    elif qm is None:
        raise ValueError(f"{ni.source}: no trained weights (accuracy needs a trained model: digits, an ONNX file "
                         f"or a .pimgen file)")
    if not args.dataset or not args.labels:
        raise ValueError("give --dataset X.npy and --labels Y.npy")
    return qm, fm, np.load(args.dataset), np.load(args.labels)


def accuracy(args) -> dict:
    """What ``pimgen accuracy --json`` prints."""
    import dataclasses

    import numpy as np

    from gen.config import ChipConfig
    from gen.mapping import map_network
    from sim.golden import run_network, run_plan
    if any(float(v) for v in args.variation.split(",")) or any(float(v) for v in args.stuck_at.split(",")):
        raise ValueError("--variation/--stuck-at need the device model (reliability issue), not built yet; "
                         "only 0 is accepted")
    qm, fm, x, y = _load(args)
    if args.limit:
        x, y = x[:args.limit], y[:args.limit]
    y = np.asarray(y).astype(np.int64).reshape(-1)
    codes = x if x.dtype == np.uint8 else qm.quantize_input(x)
    if len(codes) != len(y):
        raise ValueError(f"{len(codes)} images but {len(y)} labels")
    res = {"model": args.network or args.neurosim_csv, "images": int(len(y)), "mapping": args.mapping}
    if fm is not None and x.dtype != np.uint8:
        res["float"] = float((fm.predict(x) == y).mean())
    pred8 = np.array([run_network(qm.net, qm.params, c).reshape(-1).argmax() for c in codes])
    res["int8"] = float((pred8 == y).mean())
    chip0 = ChipConfig()
    grid = []
    points = [(cb, ab, db) for cb in _ints(args.cell_bits) for ab in _ints(args.adc_bits) for db in _ints(args.dac_bits)]
    for n, (cb, ab, db) in enumerate(points, 1):
        row = {"cell_bits": cb, "adc_bits": ab or None, "dac_bits": db}
        try:
            xb = dataclasses.replace(chip0.crossbar, cell_bits=cb, dac_bits=db, adc_bits=None,
                                     w_bits=qm.w_bits, a_bits=qm.a_bits)
            if ab:
                xb = dataclasses.replace(xb, adc_bits=min(ab, xb.lossless_adc_bits))
            plan = map_network(qm.net, dataclasses.replace(chip0, crossbar=xb), args.mapping)
        except ValueError as e:
            row["refused"] = str(e)
            grid.append(row)
            continue
        accs = []
        for _seed in range(args.seeds):     # device draws plug in here (identical without a device model)
            pred = np.array([run_plan(plan, qm.params, c).reshape(-1).argmax() for c in codes])
            accs.append(float((pred == y).mean()))
        row.update({"lossless": xb.is_lossless, "min": min(accs), "mean": float(np.mean(accs)), "max": max(accs)})
        grid.append(row)
        if not args.json:
            print(f"  [{n}/{len(points)}] cell {cb} adc {ab or 'lossless'} dac {db}: {row['mean']:.4f}",
                  file=sys.stderr, flush=True)
    res["grid"] = grid
    return res


def run(args) -> int:
    from flow.commands._common import print_json
    r = accuracy(args)
    if args.plot:
        _plot(r, args.plot)
    if args.json:
        print_json(r)
        return 0
    head = f"{r['model']}: {r['images']} images, {r['mapping']} mapping"
    if "float" in r:
        head += f"; float {r['float']:.4f}"
    print(head + f"; ideal int8 {r['int8']:.4f}")
    print(f"{'cell':>4} {'adc':>8} {'dac':>3} {'min':>7} {'mean':>7} {'max':>7}")
    for g in r["grid"]:
        adc = "lossless" if g["adc_bits"] is None else str(g["adc_bits"])
        if "refused" in g:
            print(f"{g['cell_bits']:>4} {adc:>8} {g['dac_bits']:>3}  refused: {g['refused']}")
        else:
            print(f"{g['cell_bits']:>4} {adc:>8} {g['dac_bits']:>3} {g['min']:>7.4f} {g['mean']:>7.4f} {g['max']:>7.4f}"
                  + ("  (lossless)" if g["lossless"] and g["adc_bits"] else ""))
    return 0


def _plot(r, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    for cb in sorted({g["cell_bits"] for g in r["grid"]}):
        for db in sorted({g["dac_bits"] for g in r["grid"]}):
            pts = [(g["adc_bits"] or 16, g["mean"]) for g in r["grid"]
                   if g["cell_bits"] == cb and g["dac_bits"] == db and "mean" in g]
            if pts:
                pts.sort()
                ax.plot(*zip(*pts), marker="o", label=f"{cb} bit/cell, {db} bit DAC")
    ax.axhline(r["int8"], color="k", ls="--", lw=1, label="ideal int8")
    if "float" in r:
        ax.axhline(r["float"], color="g", ls=":", lw=1, label="float")
    ax.set_xlabel("ADC bits (16 = lossless)")
    ax.set_ylabel("top-1 accuracy")
    ax.set_title(f"{r['model']} ({r['images']} images)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
