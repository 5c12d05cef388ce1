"""Design-space sweeps (DESIGN.md §12): a grid of chip knobs evaluated on Dask, one resumable table.

The grid is the cartesian product of comma-separated values for the knobs in :data:`KNOBS`
(mapping, crossbar rows, cell bits, ADC bits, global-bus width) over a fixed rest of the
chip (:class:`Settings`). Every point is evaluated by :func:`evaluate_point`, a pure
function of ``(settings, point, accuracy data)`` that calls the existing models —
``gen.mapping.map_network``, ``gen.perf.estimate``, ``gen.energy.energy_report`` and, when
asked, ``sim.golden.run_plan`` (crossbar-exact) — and derives no number of its own.

:func:`run_sweep` sends the points that are not yet in the table to a ``dask.distributed``
client and rewrites the table (CSV) atomically after every finished point, so an
interrupted sweep keeps what it finished and a re-run computes only what is missing. A
point is identified by its knob values plus a fingerprint of everything else that changes
its numbers (network, the rest of the chip, pipeline/duplication, the energy table): the
same folder can hold sweeps of several settings side by side.

:func:`pareto_front` (pure) and :func:`plot_pareto` draw throughput against area and
against energy per image, coloured by mapping.
"""
from __future__ import annotations

import contextlib
import csv
import dataclasses
import hashlib
import io
import itertools
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from gen.mapping import MAPPINGS

__all__ = ["KNOBS", "MAPPINGS", "COLUMNS", "TABLE", "PLOT", "FRONTS", "Point", "Settings", "AccuracyData", "grid",
           "point_chip", "evaluate_point", "read_table", "write_table", "atomic_write", "pending", "pareto_front",
           "eligible", "fronts", "plot_pareto", "prepare_folder", "SweepResult", "run_sweep", "dask_client"]

#: The swept knobs, in table order. ``adc_bits`` 0 means the lossless ADC width.
KNOBS = ("mapping", "rows", "cell_bits", "adc_bits", "global_bus_bits")
TABLE = "sweep.csv"
PLOT = "pareto.png"

#: Table columns and their types (CSV is text; :func:`read_table` restores the types).
COLUMNS: dict[str, type] = {
    "network": str, "settings": str, "mapping": str, "rows": int, "cell_bits": int, "adc_bits": int,
    "global_bus_bits": int, "status": str, "error": str,
    "adc_resolution": int, "lossless": bool, "pipeline": bool,
    "latency_clocks": int, "interval_clocks": int, "clock_mhz": int, "throughput_fps": float, "latency_ms": float,
    "subarrays": int, "pes": int, "tiles": int, "fits": bool,
    "area_mm2": float, "energy_uj_per_image": float, "tops_per_w": float,
    "accuracy": float, "images": int, "dataset": str,
}


@dataclass(frozen=True)
class Point:
    """One grid point: the swept knob values (``adc_bits`` 0 = lossless)."""
    mapping: str
    rows: int
    cell_bits: int
    adc_bits: int
    global_bus_bits: int

    def key(self, settings_id: str) -> tuple:
        """The point's identity in the table (its knobs under one set of fixed settings)."""
        return (settings_id,) + dataclasses.astuple(self)


@dataclass(frozen=True)
class Settings:
    """Everything a sweep keeps fixed: the network, the chip the knobs are applied to, the
    plan options and the energy model (:class:`gen.energy.EnergyModel`)."""
    network: Any
    chip: Any
    energy: Any
    pipeline: bool = False
    overlap: bool = True
    duplication: Any = None
    speedup: int | None = 8

    def fingerprint(self) -> str:
        """A short hash of what changes a point's numbers besides its knobs. The chip's own
        values of the swept knobs are left out: every point overrides them."""
        chip = self.chip.to_dict()
        chip.pop("global_bus_bits")
        for k in ("rows", "cell_bits", "adc_bits"):
            chip["crossbar"].pop(k)
        energy = dataclasses.asdict(self.energy)
        energy.pop("source")   # where the table came from does not matter, its values do
        blob = json.dumps({"network": self.network.to_dict(), "chip": chip, "energy": energy,
                           "pipeline": self.pipeline, "overlap": self.overlap,
                           "duplication": self.duplication, "speedup": self.speedup},
                          sort_keys=True, default=str)
        return hashlib.sha1(blob.encode()).hexdigest()[:10]

    def describe(self) -> dict:
        """The settings as JSON-able values (written beside the table, keyed by fingerprint)."""
        return {"network": self.network.name, "chip": self.chip.to_dict(), "energy_table": self.energy.source,
                "pipeline": self.pipeline, "overlap": self.overlap, "duplication": self.duplication,
                "speedup": self.speedup}


@dataclass(frozen=True, eq=False)
class AccuracyData:
    """Quantized parameters and a labelled data set for the accuracy column: ``codes`` are
    input codes ``[N, C, H, W]``, ``labels`` ``[N]``; ``fingerprint`` names the data set
    in the table (a point computed on other data is recomputed)."""
    params: Any
    codes: Any
    labels: Any

    @property
    def fingerprint(self) -> str:
        h = hashlib.sha1(self.codes.tobytes())
        h.update(self.labels.tobytes())
        return f"{len(self.labels)}:{h.hexdigest()[:10]}"


def grid(mappings: Sequence[str], rows: Sequence[int], cell_bits: Sequence[int], adc_bits: Sequence[int],
         global_bus_bits: Sequence[int]) -> list[Point]:
    """The cartesian product of the knob values, in flag order (duplicates dropped)."""
    seen = dict.fromkeys(Point(*v) for v in itertools.product(mappings, rows, cell_bits, adc_bits, global_bus_bits))
    return list(seen)


def point_chip(chip, point: Point):
    """``chip`` with the point's knobs; gen.config validation raises ``ValueError`` for a bad value."""
    xb = dataclasses.replace(chip.crossbar, rows=point.rows, cell_bits=point.cell_bits,
                             adc_bits=point.adc_bits or None)
    return dataclasses.replace(chip, crossbar=xb, global_bus_bits=point.global_bus_bits)


def evaluate_point(settings: Settings, point: Point, acc: AccuracyData | None = None) -> dict:
    """One table row: the knobs, latency/throughput (``gen.perf``), area/energy/TOPS/W
    (``gen.energy``) and, with ``acc``, top-1 accuracy of the crossbar-exact model
    (``sim.golden.run_plan``). A value refused by config validation or by the mapper is an
    ``invalid`` row carrying the message, never an exception."""
    import numpy as np

    from gen.energy import energy_report
    from gen.mapping import map_network
    from gen.perf import estimate
    row: dict[str, Any] = {"network": settings.network.name, "settings": settings.fingerprint(),
                           **dataclasses.asdict(point), "pipeline": settings.pipeline}
    try:
        chip = point_chip(settings.chip, point)
        plan = map_network(settings.network, chip, mapping=point.mapping, pipeline=settings.pipeline,
                           duplication=settings.duplication, speedup=settings.speedup)
    except ValueError as e:
        return {**row, "status": "invalid", "error": str(e)}
    est = estimate(plan, overlap=settings.overlap)
    rep = energy_report(plan, settings.energy, interval_clocks=est.interval_clocks)
    row.update({"status": "ok", "adc_resolution": chip.crossbar.adc_resolution,
                "lossless": chip.crossbar.is_lossless, "latency_clocks": est.latency_clocks,
                "interval_clocks": est.interval_clocks, "clock_mhz": chip.clock_mhz, "throughput_fps": est.fps,
                "latency_ms": est.latency_s * 1e3, "subarrays": est.subarrays, "pes": est.pes, "tiles": est.tiles,
                "fits": plan.fits, "area_mm2": rep.area_mm2, "energy_uj_per_image": rep.energy_pj * 1e-6,
                "tops_per_w": rep.tops_per_w})
    if acc is not None:
        from sim.golden import run_plan
        pred = np.array([run_plan(plan, acc.params, c).reshape(-1).argmax() for c in acc.codes])
        row.update({"accuracy": float((pred == acc.labels).mean()), "images": int(len(acc.labels)),
                    "dataset": acc.fingerprint})
    return row


# --- the table -----------------------------------------------------------------------
def _parse(typ: type, text: str):
    if text == "":
        return None
    if typ is bool:
        return text == "True"
    return typ(text)


def read_table(path: str | Path) -> list[dict]:
    """The rows of a sweep table (``[]`` if there is none), typed as in :data:`COLUMNS`."""
    p = Path(path)
    if not p.exists():
        return []
    with p.open(newline="") as f:
        reader = csv.DictReader(f)
        missing = set(COLUMNS) - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{str(p)!r} is not a pimgen sweep table (no column {sorted(missing)[0]!r}); "
                             f"choose another -o")
        return [{k: _parse(t, r[k]) for k, t in COLUMNS.items()} for r in reader]


def atomic_write(path: str | Path, data: str | bytes) -> None:
    """Write ``path`` whole or not at all: a temporary file beside it, renamed over it."""
    p = Path(path)
    tmp = p.with_name(f".{p.name}.tmp-{os.getpid()}")
    try:
        if isinstance(data, bytes):
            tmp.write_bytes(data)
        else:
            tmp.write_text(data)
        os.replace(tmp, p)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_table(path: str | Path, rows: Iterable[dict]) -> None:
    """Write the table atomically, so an interrupt leaves the previous complete table."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(COLUMNS), extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: "" if r.get(k) is None else r[k] for k in COLUMNS})
    atomic_write(path, buf.getvalue())


def _row_key(r: dict) -> tuple:
    return (r["settings"],) + tuple(r[k] for k in KNOBS)


def pending(points: Sequence[Point], rows: Sequence[dict], settings_id: str,
            dataset: str | None = None) -> list[Point]:
    """The points the table does not answer yet: absent, or (when ``dataset`` names the
    accuracy data) a valid row without an accuracy on that data set."""
    have = {_row_key(r): r for r in rows}
    todo = []
    for p in points:
        r = have.get(p.key(settings_id))
        if r is None or (dataset is not None and r["status"] == "ok" and r.get("dataset") != dataset):
            todo.append(p)
    return todo


# --- Pareto front --------------------------------------------------------------------
def pareto_front(points: Sequence[Sequence[float]], senses: Sequence[str]) -> list[int]:
    """Indices (in input order) of the points no other point dominates. ``senses`` gives
    ``"max"`` or ``"min"`` per coordinate; ``a`` dominates ``b`` when it is at least as good
    in every coordinate and better in one. Equal points are all kept."""
    sign = [1 if s == "max" else -1 if s == "min" else None for s in senses]
    if None in sign:
        raise ValueError(f"senses {list(senses)!r}: each must be 'max' or 'min'")
    v = [[s * x for s, x in zip(sign, p)] for p in points]

    def dominates(a, b):
        return all(x >= y for x, y in zip(a, b)) and any(x > y for x, y in zip(a, b))
    return [i for i, b in enumerate(v) if not any(dominates(a, b) for a in v)]


#: The two fronts: throughput (higher is better) against area and against energy per image.
#: ``name: (column, axis label, unit)``.
FRONTS = {"area": ("area_mm2", "area", "mm²"), "energy": ("energy_uj_per_image", "energy per image", "µJ")}


def eligible(r: dict, min_accuracy: float | None = None) -> bool:
    """A valid row that may be on a front: with ``min_accuracy``, only rows measured at least that accurate."""
    return r["status"] == "ok" and (min_accuracy is None or (r.get("accuracy") or 0.0) >= min_accuracy)


def fronts(rows: Sequence[dict], min_accuracy: float | None = None) -> dict[str, list[dict]]:
    """The eligible rows (:func:`eligible`) on each front of :data:`FRONTS`, sorted by the cost axis."""
    ok = [r for r in rows if eligible(r, min_accuracy)]
    out = {}
    for name, (col, _, _) in FRONTS.items():
        idx = pareto_front([(r["throughput_fps"], r[col]) for r in ok], ("max", "min"))
        out[name] = sorted((ok[i] for i in idx), key=lambda r: r[col])
    return out


def plot_pareto(rows: Sequence[dict], path: str | Path, title: str = "", min_accuracy: float | None = None) -> None:
    """Throughput vs area and vs energy per image, one colour per mapping (rows below
    ``min_accuracy`` in grey), the fronts drawn as steps; written atomically (matplotlib, Agg)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ok = [r for r in rows if r["status"] == "ok"]
    front = fronts(rows, min_accuracy)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    colors = {"conventional": "#4c72b0", "novel": "#dd8452"}
    for ax, (name, (col, label, unit)) in zip(axes, FRONTS.items()):
        for m in MAPPINGS:
            pts = [(r[col], r["throughput_fps"]) for r in ok if r["mapping"] == m and eligible(r, min_accuracy)]
            if pts:
                ax.scatter(*zip(*pts), s=22, color=colors[m], label=m, alpha=0.8)
        low = [(r[col], r["throughput_fps"]) for r in ok if not eligible(r, min_accuracy)]
        if low:
            ax.scatter(*zip(*low), s=22, color="#bbbbbb", label=f"accuracy < {min_accuracy}")
        if front[name]:
            xs = [r[col] for r in front[name]]
            ys = [r["throughput_fps"] for r in front[name]]
            ax.step(xs, ys, where="post", color="k", lw=1, label="Pareto front")
            ax.scatter(xs, ys, s=60, facecolors="none", edgecolors="k")
        for axis, vals in (("x", [r[col] for r in ok]), ("y", [r["throughput_fps"] for r in ok])):
            # orders of magnitude apart (e.g. pipelined vs layer-by-layer): log axes keep all points apart
            if vals and min(vals) > 0 and max(vals) / min(vals) > 20:
                getattr(ax, f"set_{axis}scale")("log")
        ax.set_xlabel(f"{label} ({unit})")
        ax.set_ylabel("throughput (images/s)")
        ax.set_title(f"throughput vs {name}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write(path, buf.getvalue())


# --- the sweep -----------------------------------------------------------------------
@dataclass(frozen=True)
class SweepResult:
    """What :func:`run_sweep` did: ``rows`` are the table rows of the asked grid (in grid
    order), ``failed`` the points whose evaluation raised (not written; a re-run retries
    them), ``workers`` the Dask workers used (0: nothing to compute, no cluster started)."""
    rows: list
    computed: int
    skipped: int
    invalid: int
    failed: list
    workers: int = 0

    def summary(self) -> dict:
        return {"points": len(self.rows) + len(self.failed), "computed": self.computed, "skipped": self.skipped,
                "invalid": self.invalid, "failed": len(self.failed), "workers": self.workers}


def prepare_folder(out: str | Path) -> Path:
    """The sweep folder: created if absent; an existing folder must be empty or hold a sweep
    table (anything else is refused rather than written into)."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / TABLE).exists())):
        raise ValueError(f"-o {str(out)!r} exists and is not a pimgen sweep folder (no {TABLE}); choose another")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _record_settings(out: Path, settings_id: str, settings: Settings) -> None:
    p = out / "settings.json"
    known = json.loads(p.read_text()) if p.exists() else {}
    if settings_id not in known:
        known[settings_id] = settings.describe()
        atomic_write(p, json.dumps(known, indent=2, default=str) + "\n")


def run_sweep(connect: Callable[[], Any], settings: Settings, points: Sequence[Point], out: str | Path,
              acc: AccuracyData | None = None,
              progress: Callable[[int, int, dict], None] | None = None) -> SweepResult:
    """Evaluate the points the table in ``out`` lacks on Dask and merge them into the table
    (rewritten atomically after every point, so an interrupt keeps what finished).
    ``connect()`` returns a context manager yielding a ``dask.distributed.Client`` (e.g.
    ``lambda: dask_client(workers=2)``); it is entered only when there is something to
    compute. ``progress(done, total, row)`` is called as points finish."""
    out = prepare_folder(out)
    table = out / TABLE
    sid = settings.fingerprint()
    rows = read_table(table)
    _record_settings(out, sid, settings)
    todo = pending(points, rows, sid, acc.fingerprint if acc is not None else None)
    index = {_row_key(r): i for i, r in enumerate(rows)}
    failed: list[dict] = []
    workers = 0
    if todo:
        from dask.distributed import as_completed
        with connect() as client:
            workers = len(client.scheduler_info()["workers"])
            # the network and the data set go to every worker once, not once per point
            s_f = client.scatter(settings, broadcast=True)
            a_f = client.scatter(acc, broadcast=True) if acc is not None else None
            futs = {client.submit(evaluate_point, s_f, p, a_f, pure=False): p for p in todo}
            for n, fut in enumerate(as_completed(futs), 1):
                p = futs[fut]
                try:
                    row = fut.result()
                except Exception as e:   # a bug or a lost worker: reported, not written, retried next run
                    row = {**dataclasses.asdict(p), "status": "failed", "error": f"{type(e).__name__}: {e}"}
                    failed.append(row)
                else:
                    k = _row_key(row)
                    if k in index:
                        rows[index[k]] = row
                    else:
                        index[k] = len(rows)
                        rows.append(row)
                    write_table(table, rows)
                if progress:
                    progress(n, len(todo), row)
    if not table.exists():
        write_table(table, rows)
    done = [rows[index[p.key(sid)]] for p in points if p.key(sid) in index]
    todo_keys = {p.key(sid) for p in todo}
    computed = sum(1 for r in done if _row_key(r) in todo_keys)
    return SweepResult(done, computed, len(done) - computed, sum(r["status"] == "invalid" for r in done), failed,
                       workers)


@contextlib.contextmanager
def dask_client(scheduler: str | None = None, workers: int | None = None, processes: bool = True):
    """A ``dask.distributed.Client`` for a ``with`` block: connected to ``scheduler``
    (``host:port``), or to a new ``LocalCluster`` of ``workers`` single-threaded workers
    (processes, or threads in this process with ``processes=False``), closed at the end.
    An unreachable scheduler is a ``ValueError`` naming ``--scheduler``."""
    import logging

    from dask.distributed import Client, LocalCluster
    if scheduler:
        try:
            client = Client(scheduler, timeout="10s")
        except (OSError, TimeoutError) as e:
            raise ValueError(f"--scheduler {scheduler!r}: cannot connect to a Dask scheduler there ({e})") from None
        with client:
            yield client
        return
    # one thread per worker: the models are Python-bound, so parallelism comes from workers;
    # no dashboard (no port to collide on, no bokeh needed), and Dask's own logs only on error
    with LocalCluster(n_workers=workers or os.cpu_count() or 1, threads_per_worker=1, processes=processes,
                      dashboard_address=None, silence_logs=logging.ERROR) as cluster, Client(cluster) as client:
        yield client
