"""``pimgen accuracy``: top-1 accuracy of a quantized model on the crossbar-exact golden model over a
grid of ADC / cell / DAC bits, next to the float and ideal-int8 accuracies."""
from __future__ import annotations

import sys

HELP = ("top-1 accuracy over a grid of ADC/cell/DAC bits and device faults (crossbar-exact golden model), "
        "vs float and int8")
DESCRIPTION = (HELP + ". NETWORK: 'digits' (the trained model in gen/models; its held-out split is the default "
               "data set), a .pimgen file, a quantized ONNX file, or a float ONNX file with --calibration. Device "
               "axes (--variation, --stuck-at, --stuck-at-1, --g-frac-bits) run every faulty point with --seeds "
               "device seeds (gen.devices.DeviceModel, one conductance map per crossbar) and report min/mean/max.")


def _ints(s: str, flag: str = "") -> list[int]:
    return _numbers(s, flag, int, "integers")


def _floats(s: str, flag: str = "") -> list[float]:
    return _numbers(s, flag, float, "numbers")


def _numbers(s: str, flag: str, kind, what: str) -> list:
    """A comma-separated list of ``kind``; a bad list is one line naming the flag."""
    try:
        vals = [kind(v) for v in s.split(",") if v.strip()]
    except ValueError:
        vals = []
    if not vals:
        raise ValueError(f"{flag + ' ' if flag else ''}{s!r} is not a comma-separated list of {what}")
    return vals


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
    p.add_argument("--variation", default="0", metavar="SIGMA,...",
                   help="programming variation sigmas, in levels [0]")
    p.add_argument("--stuck-at", default="0", metavar="RATE,...", help="stuck-at-0 cell rates [0]")
    p.add_argument("--stuck-at-1", default="0", metavar="RATE,...", help="stuck-at-1 cell rates [0]")
    p.add_argument("--g-frac-bits", default="0", metavar="F,...",
                   help="conductance fraction bits (sub-level variation needs F > 0) [0]")
    p.add_argument("--seeds", type=int, default=1, help="device seeds 0..N-1 per faulty grid point [1]")
    p.add_argument("--fault-aware", action="store_true",
                   help="run every faulty point twice: plain cells, and cells programmed around the measured stuck "
                        "cells (gen.fault_aware)")
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
    from gen.devices import DeviceModel, plan_conductances
    from gen.mapping import map_network
    from sim.golden import run_network, run_plan
    if not isinstance(args.seeds, int) or args.seeds < 1:
        raise ValueError(f"--seeds {args.seeds} is not allowed: it must be an integer >= 1")
    devices = [DeviceModel(stuck_at_0=s0, stuck_at_1=s1, variation=v)      # validated before the long run
               for s0 in _floats(args.stuck_at, "--stuck-at") for s1 in _floats(args.stuck_at_1, "--stuck-at-1")
               for v in _floats(args.variation, "--variation")]
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit {args.limit} is not allowed: it must be >= 1 (images)")
    axes = {"--cell-bits": _ints(args.cell_bits, "--cell-bits"), "--adc-bits": _ints(args.adc_bits, "--adc-bits"),
            "--dac-bits": _ints(args.dac_bits, "--dac-bits"), "--g-frac-bits": _ints(args.g_frac_bits, "--g-frac-bits")}
    for flag, field in (("--cell-bits", "cell_bits"), ("--dac-bits", "dac_bits"), ("--g-frac-bits", "g_frac_bits")):
        for v in axes[flag]:      # each value on its own, before the long run: the flag's name in the error
            try:
                dataclasses.replace(ChipConfig().crossbar, **{field: v})
            except ValueError as e:
                raise ValueError(f"{flag} {v}: {e}") from None
    bad_adc = [v for v in axes["--adc-bits"] if v < 0 or v > 32]
    if bad_adc:
        raise ValueError(f"--adc-bits {bad_adc[0]} is not allowed: use 0 (lossless) or 1..32 bits")
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
    points = [(cb, ab, db, f) for cb in axes["--cell-bits"] for ab in axes["--adc-bits"] for db in axes["--dac-bits"]
              for f in axes["--g-frac-bits"]]
    runs = [(p, d, fa) for p in points for d in devices
            for fa in ((False, True) if args.fault_aware and not d.is_ideal else (False,))]
    total = len(runs)
    for n, ((cb, ab, db, f), dev, fa) in enumerate(runs, 1):
        row = {"cell_bits": cb, "adc_bits": ab or None, "dac_bits": db, "g_frac_bits": f,
               "stuck_at_0": dev.stuck_at_0, "stuck_at_1": dev.stuck_at_1, "variation": dev.variation,
               "fault_aware": fa}
        try:
            xb = dataclasses.replace(chip0.crossbar, cell_bits=cb, dac_bits=db, adc_bits=None, g_frac_bits=f,
                                     w_bits=qm.w_bits, a_bits=qm.a_bits)
            if ab:
                xb = dataclasses.replace(xb, adc_bits=min(ab, xb.lossless_adc_bits))
            plan = map_network(qm.net, dataclasses.replace(chip0, crossbar=xb), args.mapping)
        except ValueError as e:
            row["refused"] = str(e)
            grid.append(row)
            continue
        # an ideal device gives the ideal maps whatever the seed: one run stands for all seeds
        seeds = [0] if dev.is_ideal else list(range(args.seeds))
        accs = []
        for seed in seeds:
            maps = None if dev.is_ideal else plan_conductances(plan, qm.params, dataclasses.replace(dev, seed=seed),
                                                               fault_aware=fa)
            pred = np.array([run_plan(plan, qm.params, c, conductances=maps).reshape(-1).argmax() for c in codes])
            accs.append(float((pred == y).mean()))
        # an ADC wider than the lossless width converts exactly as the lossless one: say which was used
        row.update({"adc_bits_used": xb.adc_resolution, "lossless": xb.is_lossless, "seeds": len(seeds),
                    "accuracies": accs,
                    "min": min(accs), "mean": float(np.mean(accs)), "max": max(accs)})
        grid.append(row)
        if not args.json:
            print(f"  [{n}/{total}] cell {cb} adc {ab or 'lossless'} dac {db} F {f} {_device_label(row)}: "
                  f"{row['mean']:.4f}", file=sys.stderr, flush=True)
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
    print(f"{'cell':>4} {'adc':>8} {'dac':>3} {'F':>2} {'device':<30} {'seeds':>5} {'min':>7} {'mean':>7} {'max':>7}")
    for g in r["grid"]:
        adc = "lossless" if g["adc_bits"] is None else str(g["adc_bits"])
        head = f"{g['cell_bits']:>4} {adc:>8} {g['dac_bits']:>3} {g['g_frac_bits']:>2} {_device_label(g):<30}"
        if "refused" in g:
            print(f"{head}  refused: {g['refused']}")
        else:
            print(f"{head} {g['seeds']:>5} {g['min']:>7.4f} {g['mean']:>7.4f} {g['max']:>7.4f}"
                  + ("  (lossless)" if g["lossless"] and g["adc_bits"] else ""))
    return 0


def _device_label(g) -> str:
    """``ideal`` or the row's non-zero device effects, e.g. ``sa0 2% var 0.1`` (``+ fault-aware``
    when the cells were programmed around the stuck ones)."""
    parts = [f"{k} {g[f]:.3g}{u}" if u != "%" else f"{k} {100 * g[f]:.3g}%" for k, f, u in
             (("sa0", "stuck_at_0", "%"), ("sa1", "stuck_at_1", "%"), ("var", "variation", "")) if g[f]]
    return (" ".join(parts) or "ideal") + (" + fault-aware" if g.get("fault_aware") else "")


def _plot(r, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    # one line per cell/DAC/F/device point, accuracy (seed mean) over ADC bits
    lines: dict[tuple, list] = {}
    for g in r["grid"]:
        if "mean" in g:
            key = (g["cell_bits"], g["dac_bits"], g["g_frac_bits"], _device_label(g))
            lines.setdefault(key, []).append((g["adc_bits"] or 16, g["mean"]))
    for (cb, db, f, dev), pts in sorted(lines.items()):
        pts.sort()
        label = f"{cb} bit/cell, {db} bit DAC" + (f", F {f}" if f else "") + ("" if dev == "ideal" else f", {dev}")
        ax.plot(*zip(*pts), marker="o", label=label)
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
