"""``pimgen sweep``: a design-space grid evaluated on Dask into one resumable table and a Pareto plot."""
from __future__ import annotations

import argparse
import sys
import time

HELP = "sweep a grid of chip knobs on Dask: one resumable table (latency, throughput, area, energy, accuracy)"
DESCRIPTION = (HELP + ". Every knob flag takes comma-separated values; every combination is a point. The rest of "
               "the chip comes from the preset/--chip-config and the chip flags. Points already in DIR/sweep.csv "
               "are not recomputed; DIR/pareto.png plots throughput vs area and vs energy per image.")

#: (flag, dest, help) of the integer knobs; each takes comma-separated values
_INT_KNOBS = [   # (flag, field, what the list may hold beyond the field's help)
    ("--rows", "rows", ""),
    ("--cell-bits", "cell_bits", ""),
    ("--adc-bits", "adc_bits", "; 0 = lossless"),
    ("--global-bus-bits", "global_bus_bits", ""),
]


def add_arguments(p: argparse.ArgumentParser) -> None:
    from flow.commands.map import add_chip_args, add_network_args, add_plan_args
    add_network_args(p)
    # the chip flags come from `pimgen map`; the knob flags below take lists instead, and
    # "resolve" lets them replace map's single-value --rows/--cell-bits/--global-bus-bits
    p.conflict_handler = "resolve"
    add_chip_args(p)
    add_plan_args(p)
    g = p.add_argument_group("grid (comma-separated values; the grid is every combination)")
    g.add_argument("--mapping", default="conventional,novel", help="weight mappings [conventional,novel]")
    from flow.commands._common import knob_help
    for flag, field, extra in _INT_KNOBS:
        g.add_argument(flag, metavar="N[,N...]", help=f"{knob_help(field)}{extra} [the chip's]")
    p.add_argument("--pipeline", action="store_true", help="layer-pipelined chip (duplication 'auto' by default)")
    p.add_argument("--energy-table", metavar="FILE.toml",
                   help="per-event energies and per-block areas (default: gen/presets/energy.toml, ISAAC 32 nm)")
    a = p.add_argument_group("accuracy (crossbar-exact golden model)")
    a.add_argument("--accuracy", action="store_true",
                   help="add top-1 accuracy per point (NAME must be 'digits' or a FILE.pimgen model)")
    a.add_argument("--dataset", metavar="X.npy", help="float images [N,C,H,W] or uint8 input codes [digits: test split]")
    a.add_argument("--labels", metavar="Y.npy", help="integer labels [N]")
    a.add_argument("--limit", type=int, help="use only the first N images")
    a.add_argument("--min-accuracy", type=float, metavar="A",
                   help="keep points below top-1 accuracy A (0..1) off the Pareto fronts (grey in the plot)")
    d = p.add_argument_group("dask")
    d.add_argument("--scheduler", metavar="ADDRESS", help="a running Dask scheduler (host:port) [a LocalCluster]")
    d.add_argument("--workers", type=int, help="LocalCluster workers [CPU count]")
    d.add_argument("--threads", action="store_true",
                   help="LocalCluster workers as threads of this process (no start-up cost; Python-bound)")
    p.add_argument("-o", "--out", metavar="DIR", required=True, help="sweep folder (table, plot); re-use to resume")
    p.add_argument("--no-plot", action="store_true", help="do not draw DIR/pareto.png")
    p.add_argument("--json", action="store_true", help="machine-readable summary on stdout (no progress)")


def parse_ints(flag: str, text: str) -> list[int]:
    """``"64,128"`` -> ``[64, 128]``; anything else is a one-line ``ValueError`` naming the flag."""
    try:
        vals = [int(v) for v in text.split(",")]
    except ValueError:
        raise ValueError(f"{flag} {text!r} is not allowed: give comma-separated integers, e.g. {flag} 64,128") \
            from None
    return list(dict.fromkeys(vals))


def parse_mappings(text: str) -> list[str]:
    from flow.sweep import MAPPINGS
    vals = [v.strip() for v in text.split(",")]
    bad = [v for v in vals if v not in MAPPINGS]
    if bad:
        raise ValueError(f"--mapping {bad[0]!r} is not allowed: use one or more of {', '.join(MAPPINGS)}, "
                         f"comma-separated")
    return list(dict.fromkeys(vals))


def _chip_without_knobs(args):
    """The fixed part of the chip, from map's chip flags (the knob flags hold lists here)."""
    from flow.commands.map import chip_from_args
    return chip_from_args(argparse.Namespace(**{**vars(args), **{dest: None for _, dest, _ in _INT_KNOBS}}))


def _model_and_data(args):
    """The quantized model and the (codes, labels) of the accuracy column."""
    import numpy as np

    from gen.quantize import QuantModel
    name = args.network or ""
    if args.neurosim_csv or not (name == "digits" or name.endswith(".pimgen")):
        raise ValueError("--accuracy needs trained weights: NAME must be 'digits' or a FILE.pimgen model "
                         f"(got {args.neurosim_csv or name or 'none'!r})")
    if (args.dataset is None) != (args.labels is None):
        raise ValueError("--dataset and --labels go together: give both or neither")
    if name == "digits":
        from gen.models import digits_dataset, digits_model
        qm = digits_model()
        x, y = digits_dataset("test") if args.dataset is None else (np.load(args.dataset), np.load(args.labels))
    else:
        if args.dataset is None:
            raise ValueError(f"--accuracy with {name}: give --dataset X.npy and --labels Y.npy")
        qm = QuantModel.load(name)
        x, y = np.load(args.dataset), np.load(args.labels)
    if args.min_accuracy is not None and not 0 <= args.min_accuracy <= 1:
        raise ValueError(f"--min-accuracy {args.min_accuracy} is not allowed: use a fraction in [0, 1]")
    if args.limit is not None:
        if args.limit < 1:
            raise ValueError(f"--limit {args.limit} is not allowed: use an integer >= 1")
        x, y = x[:args.limit], y[:args.limit]
    codes = x if x.dtype == np.uint8 else qm.quantize_input(x)   # uint8 arrays are input codes already
    y = np.asarray(y).astype(np.int64).reshape(-1)
    if len(codes) != len(y):
        raise ValueError(f"--dataset has {len(codes)} images but --labels has {len(y)} labels")
    return qm, codes, y


def setup(args):
    """``(settings, points, accuracy data or None)`` from the flags; bad values are ``ValueError``."""
    import dataclasses

    from flow.commands.map import duplication_from_args, network_from_args
    from flow.sweep import AccuracyData, Settings, grid
    from gen.energy import EnergyModel
    chip = _chip_without_knobs(args)
    knobs = {dest: parse_ints(flag, getattr(args, dest)) if getattr(args, dest) is not None else None
             for flag, dest, _ in _INT_KNOBS}
    defaults = {"rows": chip.crossbar.rows, "cell_bits": chip.crossbar.cell_bits,
                "adc_bits": chip.crossbar.adc_bits or 0, "global_bus_bits": chip.global_bus_bits}
    knobs = {k: v if v is not None else [defaults[k]] for k, v in knobs.items()}
    points = grid(parse_mappings(args.mapping), **knobs)
    if args.workers is not None and args.workers < 1:
        raise ValueError(f"--workers {args.workers} is not allowed: use an integer >= 1")
    acc = None
    if args.accuracy:
        qm, codes, labels = _model_and_data(args)
        net = qm.net
        # the crossbar-exact model needs the model's weight and activation widths
        chip = dataclasses.replace(chip, crossbar=dataclasses.replace(chip.crossbar, w_bits=qm.w_bits,
                                                                      a_bits=qm.a_bits))
        acc = AccuracyData(qm.params, codes, labels)
    else:
        if args.dataset or args.labels or args.limit or args.min_accuracy is not None:
            raise ValueError("--dataset/--labels/--limit/--min-accuracy are for --accuracy; add --accuracy")
        net = network_from_args(args)
    settings = Settings(net, chip, EnergyModel.from_toml(args.energy_table), pipeline=args.pipeline,
                        overlap=not args.serial, duplication=duplication_from_args(args), speedup=args.speedup)
    return settings, points, acc


def _progress_printer(out):
    start = time.monotonic()

    def show(done, total, row):
        what = " ".join(f"{k}={row.get(k)}" for k in ("mapping", "rows", "cell_bits", "adc_bits", "global_bus_bits"))
        out.write(f"\r  [{done}/{total}] {time.monotonic() - start:6.1f} s  {row.get('status', '?'):<8} {what}"
                  + " " * 8 + ("\n" if done == total else ""))
        out.flush()
    return show


def _fmt(v, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def print_rows(rows, out=None) -> None:
    """The grid's rows as a text table."""
    out = out or sys.stdout
    hdr = (f"{'mapping':<12} {'rows':>5} {'cell':>4} {'adc':>8} {'gbus':>5} {'latency clk':>12} {'images/s':>12} "
           f"{'mm2':>9} {'uJ/image':>10} {'TOPS/W':>7} {'acc':>6}")
    print(hdr, file=out)
    print("-" * len(hdr), file=out)
    for r in rows:
        head = (f"{r['mapping']:<12} {r['rows']:>5} {r['cell_bits']:>4} {r['adc_bits'] or 'lossless':>8} "
                f"{r['global_bus_bits']:>5}")
        if r["status"] != "ok":
            print(f"{head} {r['status']}: {r['error']}", file=out)
            continue
        print(f"{head} {r['latency_clocks']:>12,} {r['throughput_fps']:>12,.1f} {r['area_mm2']:>9.3f} "
              f"{r['energy_uj_per_image']:>10.3f} {r['tops_per_w']:>7.3f} {_fmt(r.get('accuracy'), '6.4f'):>6}",
              file=out)


def _knobs(r) -> dict:
    from flow.sweep import KNOBS
    return {k: r[k] for k in KNOBS}


def run(args) -> int:
    from flow.commands._common import print_json
    from flow.sweep import FRONTS, PLOT, TABLE, dask_client, fronts, plot_pareto, prepare_folder, run_sweep
    settings, points, acc = setup(args)
    out = prepare_folder(args.out)   # refuse a foreign folder before starting a cluster
    show = _progress_printer(sys.stderr) if not args.json and sys.stderr.isatty() else None
    t0 = time.monotonic()
    res = run_sweep(lambda: dask_client(args.scheduler, args.workers, processes=not args.threads),
                    settings, points, out, acc, progress=show)
    seconds = time.monotonic() - t0
    plot = None
    if not args.no_plot and any(r["status"] == "ok" for r in res.rows):
        plot = out / PLOT
        plot_pareto(res.rows, plot, f"{settings.network.name}: {len(res.rows)} points", args.min_accuracy)
    front = fronts(res.rows, args.min_accuracy)
    for f in res.failed:
        print(f"pimgen sweep: point {_knobs(f)} failed: {f['error']}", file=sys.stderr)
    if args.json:
        print_json({"network": settings.network.name, "settings": settings.fingerprint(), **res.summary(),
                    "seconds": round(seconds, 3), "scheduler": args.scheduler or "LocalCluster",
                    "table": str(out / TABLE), "plot": str(plot) if plot else None,
                    "pareto": {k: [_knobs(r) for r in v] for k, v in front.items()},
                    "failures": res.failed})
        return 1 if res.failed else 0
    s = res.summary()
    print(f"pimgen sweep {settings.network.name}: {s['points']} points, {s['computed']} computed, "
          f"{s['skipped']} already in the table, {s['invalid']} invalid, {s['failed']} failed "
          f"({seconds:.1f} s" + (f" on {s['workers']} Dask workers)" if s["workers"] else ")"))
    print()
    print_rows(res.rows)
    for name, rows in front.items():
        col, _, unit = FRONTS[name]
        print(f"\nPareto front, throughput vs {name}:")
        for r in rows:
            print(f"  {r['throughput_fps']:>12,.1f} images/s  {r[col]:>10,.3f} {unit:<3}  "
                  + ", ".join(f"{k} {v}" for k, v in _knobs(r).items()))
    print(f"\ntable: {out / TABLE}" + (f"\nplot: {plot}" if plot else ""))
    return 1 if res.failed else 0
