"""``pimgen sweep`` (DESIGN.md §12): grid on a Dask LocalCluster, table values, resume, accuracy, errors, Pareto."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

pytest.importorskip("dask.distributed")

from flow import sweep as sw  # noqa: E402
from flow.cli import main  # noqa: E402
from gen.config import ChipConfig  # noqa: E402
from gen.energy import energy_report  # noqa: E402
from gen.mapping import map_network  # noqa: E402
from gen.network import zoo  # noqa: E402
from gen.perf import estimate  # noqa: E402


def _sweep(capsys, *argv):
    rc = main(["sweep", *argv])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def test_pareto_front_hand_example():
    # (throughput: max, area: min). Worked by hand: (10,6) loses to (10,5); (7,4) loses to
    # (8,3); the two equal (5,1) are both kept; (10,5), (8,3), (5,1) trade off.
    pts = [(10, 5), (8, 3), (10, 6), (5, 1), (7, 4), (5, 1)]
    assert sw.pareto_front(pts, ("max", "min")) == [0, 1, 3, 5]
    # the opposite wishes: (10,5) loses to (10,6), (8,3) to (7,4); (10,6), (5,1), (7,4), (5,1) remain
    assert sw.pareto_front(pts, ("min", "max")) == [2, 3, 4, 5]
    assert sw.pareto_front([], ("max", "min")) == []
    with pytest.raises(ValueError, match="'max' or 'min'"):
        sw.pareto_front(pts, ("up", "min"))


def test_fronts_keep_inaccurate_and_invalid_points_off():
    def row(fps, area, acc, status="ok"):
        return {"status": status, "throughput_fps": fps, "area_mm2": area, "energy_uj_per_image": area,
                "accuracy": acc}
    rows = [row(10, 5, 0.98), row(10, 2, 0.10), row(8, 1, 0.97), row(20, 0.5, None, "invalid")]
    assert sw.fronts(rows)["area"] == [rows[2], rows[1]]        # by cost; the 10% point dominates (10, 5)
    assert sw.fronts(rows, 0.95)["area"] == [rows[2], rows[0]]


def test_grid_is_the_cartesian_product_in_flag_order():
    g = sw.grid(["conventional", "novel"], [32, 64], [1], [0, 5], [256])
    assert len(g) == 8 and g[0] == sw.Point("conventional", 32, 1, 0, 256) and g[-1] == sw.Point("novel", 64, 1, 5, 256)


def test_table_values_equal_the_models_and_a_rerun_computes_nothing(tmp_path, capsys):
    out = tmp_path / "sw"
    # real process workers: the settings, points and rows cross process boundaries (pickling)
    args = ["digits", "--rows", "32,64", "--adc-bits", "5,0", "--global-bus-bits", "64", "--workers", "2",
            "-o", str(out), "--json"]
    rc, so, _ = _sweep(capsys, *args)
    assert rc == 0
    r1 = json.loads(so)
    assert (r1["points"], r1["computed"], r1["skipped"], r1["invalid"], r1["failed"]) == (8, 8, 0, 0, 0)
    assert r1["workers"] == 2
    rows = sw.read_table(out / sw.TABLE)
    assert len(rows) == 8 and all(r["status"] == "ok" for r in rows)
    # the independent check of the plumbing: one point straight from gen.mapping/perf/energy
    chip = ChipConfig.preset("paper")
    chip = dataclasses.replace(chip, global_bus_bits=64, crossbar=dataclasses.replace(chip.crossbar, rows=64,
                                                                                        adc_bits=5))
    plan = map_network(zoo("digits"), chip, "novel")
    est, rep = estimate(plan), energy_report(plan)
    (row,) = [r for r in rows if (r["mapping"], r["rows"], r["adc_bits"]) == ("novel", 64, 5)]
    assert row["latency_clocks"] == est.latency_clocks and row["interval_clocks"] == est.interval_clocks
    assert row["subarrays"] == plan.n_subarrays and row["adc_resolution"] == 5 and row["lossless"] is False
    assert row["throughput_fps"] == pytest.approx(est.fps, rel=1e-12)
    assert row["area_mm2"] == pytest.approx(rep.area_mm2, rel=1e-12)
    assert row["energy_uj_per_image"] == pytest.approx(rep.energy_pj * 1e-6, rel=1e-12)
    assert row["tops_per_w"] == pytest.approx(rep.tops_per_w, rel=1e-12)
    assert row["accuracy"] is None
    assert (out / sw.PLOT).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    front = {(p["mapping"], p["rows"], p["adc_bits"]) for p in r1["pareto"]["area"]}
    expect = sw.pareto_front([(r["throughput_fps"], r["area_mm2"]) for r in rows], ("max", "min"))
    assert front == {(rows[i]["mapping"], rows[i]["rows"], rows[i]["adc_bits"]) for i in expect}

    # resume: the same grid computes nothing (and starts no cluster); a wider grid only the new points
    rc, so, _ = _sweep(capsys, *args)
    r2 = json.loads(so)
    assert rc == 0 and (r2["computed"], r2["skipped"], r2["workers"]) == (0, 8, 0)
    rc, so, _ = _sweep(capsys, *[a if a != "32,64" else "32,64,128" for a in args[:-1]], "--threads", "--json")
    r3 = json.loads(so)
    assert rc == 0 and (r3["points"], r3["computed"], r3["skipped"]) == (12, 4, 8)
    assert len(sw.read_table(out / sw.TABLE)) == 12


def test_accuracy_column_is_the_crossbar_exact_model(tmp_path, capsys):
    from gen.models import digits_dataset, digits_params
    from sim.golden import run_network
    n = 6
    out = tmp_path / "acc"
    rc, so, _ = _sweep(capsys, "digits", "--mapping", "novel", "--rows", "32", "--adc-bits", "0,2", "--accuracy",
                       "--limit", str(n), "--workers", "2", "--threads", "-o", str(out), "--json")
    assert rc == 0 and json.loads(so)["computed"] == 2
    rows = {r["adc_bits"]: r for r in sw.read_table(out / sw.TABLE)}
    net, params, _ = digits_params()
    x, y = digits_dataset("test")
    # a lossless ADC makes the crossbar-exact model equal the plain integer network, bit for bit
    int8 = float(np.mean([run_network(net, params, xi).ravel().argmax() == yi for xi, yi in zip(x[:n], y[:n])]))
    assert rows[0]["accuracy"] == int8 and rows[0]["images"] == n and rows[0]["lossless"] is True
    assert rows[2]["accuracy"] is not None and rows[2]["accuracy"] < int8   # a 2-bit ADC saturates
    assert rows[0]["dataset"] == rows[2]["dataset"]
    # asking again computes nothing; on other data, the points are recomputed (rows replaced)
    rc, so, _ = _sweep(capsys, "digits", "--mapping", "novel", "--rows", "32", "--adc-bits", "0,2", "--accuracy",
                       "--limit", str(n), "--workers", "1", "--threads", "-o", str(out), "--json")
    assert json.loads(so)["computed"] == 0
    rc, so, _ = _sweep(capsys, "digits", "--mapping", "novel", "--rows", "32", "--adc-bits", "0", "--accuracy",
                       "--limit", "3", "--workers", "1", "--threads", "-o", str(out), "--json")
    assert json.loads(so)["computed"] == 1
    rows = sw.read_table(out / sw.TABLE)
    assert len(rows) == 2 and {r["images"] for r in rows} == {3, n}


def test_invalid_point_is_a_row_not_a_traceback(tmp_path, capsys):
    out = tmp_path / "inv"
    rc, so, err = _sweep(capsys, "digits", "--mapping", "conventional", "--cell-bits", "1,3", "--workers", "1",
                         "--threads", "-o", str(out), "--json")
    r = json.loads(so)
    assert rc == 0 and (r["computed"], r["invalid"]) == (2, 1) and "Traceback" not in err
    (bad,) = [row for row in sw.read_table(out / sw.TABLE) if row["status"] == "invalid"]
    assert bad["cell_bits"] == 3 and "cell_bits" in bad["error"] and bad["latency_clocks"] is None
    rc, so, _ = _sweep(capsys, "digits", "--mapping", "conventional", "--cell-bits", "1,3", "-o", str(out), "--json")
    assert json.loads(so)["computed"] == 0        # an invalid point is finished too


def test_a_point_that_raises_is_reported_and_retried(tmp_path, capsys, monkeypatch):
    real = sw.evaluate_point

    def flaky(settings, point, acc=None):
        if point.rows == 64:
            raise RuntimeError("worker lost")
        return real(settings, point, acc)
    monkeypatch.setattr(sw, "evaluate_point", flaky)   # thread workers share this module
    out = tmp_path / "flaky"
    argv = ["digits", "--mapping", "novel", "--rows", "32,64", "--workers", "1", "--threads", "-o", str(out), "--json"]
    rc, so, err = _sweep(capsys, *argv)
    r = json.loads(so)
    assert rc == 1 and (r["computed"], r["failed"]) == (1, 1) and "worker lost" in err
    monkeypatch.setattr(sw, "evaluate_point", real)
    rc, so, _ = _sweep(capsys, *argv)
    assert rc == 0 and json.loads(so)["computed"] == 1


@pytest.mark.parametrize("argv, words", [
    (["digits", "--rows", "32,x"], "--rows '32,x' is not allowed"),
    (["digits", "--adc-bits", "5;8"], "--adc-bits '5;8' is not allowed"),
    (["digits", "--mapping", "conventional,diagonal"], "--mapping 'diagonal' is not allowed"),
    (["digits", "--workers", "0"], "--workers 0 is not allowed"),
    (["resnet18", "--accuracy"], "--accuracy needs trained weights"),
    (["digits", "--accuracy", "--dataset", "x.npy"], "--dataset and --labels go together"),
    (["digits", "--limit", "3"], "add --accuracy"),
    (["digits", "--min-accuracy", "0.9"], "add --accuracy"),
    (["digits", "--accuracy", "--min-accuracy", "90"], "--min-accuracy 90.0 is not allowed"),
    (["nosuchnet"], "nosuchnet"),
])
def test_bad_flags_exit_2_with_one_line(tmp_path, capsys, argv, words):
    rc, so, err = _sweep(capsys, *argv, "-o", str(tmp_path / "x"), "--json")
    assert rc == 2 and so == ""
    assert words in err and len(err.strip().splitlines()) == 1 and err.startswith("pimgen sweep: error:")
    assert not (tmp_path / "x").exists()


def test_a_foreign_folder_is_refused(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    rc, _, err = _sweep(capsys, "digits", "-o", str(tmp_path))
    assert rc == 2 and "not a pimgen sweep folder" in err and (tmp_path / "notes.txt").read_text() == "mine"
