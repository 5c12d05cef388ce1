"""The ``pimgen`` command line: help, JSON output, exit statuses, one-line errors."""
import json
import subprocess
import sys

import numpy as np
import pytest

from flow.cli import main

PIMGEN = [sys.executable, "-m", "flow.cli"]


def test_help_lists_commands():
    out = subprocess.run(PIMGEN + ["--help"], capture_output=True, text=True, check=True).stdout
    for cmd in ("crossbar", "demo"):
        assert cmd in out


def test_crossbar_json(capsys, sim_cache, monkeypatch):
    monkeypatch.setenv("PIMGEN_SIM_CACHE", str(sim_cache))
    rc = main(["crossbar", "--rows", "8", "--cols", "9", "--cell-bits", "1", "--vectors", "4", "--json"])
    rep = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert rep["passed"] is True and rep["mismatches"] == 0
    # 8 input cycles x 8 columns per ADC, then 5 pipeline registers (hw/crossbar.py)
    assert rep["measured_clocks"] == rep["predicted_clocks"] == 8 * 8 + 5


def test_crossbar_mismatch_exits_1(capsys, monkeypatch):
    import hw.crossbar as hwx
    import flow.crossbar_check as chk

    from gen.cells import CellArray

    class Broken(hwx.Crossbar):
        """The cell rows upside down: every dot product uses the wrong weights."""
        def __init__(self, cfg, cells):
            super().__init__(cfg, CellArray.from_conductances(np.flipud(cells.conductances()), cfg))

    monkeypatch.setattr(chk, "Crossbar", Broken)
    rc = main(["crossbar", "--rows", "8", "--cols", "9", "--cell-bits", "1", "--vectors", "3"])
    assert rc == 1
    assert "FAIL" in capsys.readouterr().out


def test_bad_config_is_one_line_exit_2():
    r = subprocess.run(PIMGEN + ["crossbar", "--cell-bits", "3"], capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip() == "pimgen crossbar: error: cell_bits=3 is not allowed: cell_bits must be one of 1, 2, 4"
    r = subprocess.run(PIMGEN + ["crossbar", "--config", "/nonexistent.toml"], capture_output=True, text=True)
    assert r.returncode == 2 and "does not exist" in r.stderr and "Traceback" not in r.stderr


def test_build_programs_the_device_models_cells(tmp_path):
    """Device flags on `pimgen build`: the manifest records the model, and the programming
    image holds its cells (checked against gen.devices' maps, decoded from the beats)."""
    from amaranth.hdl import Shape
    from gen.cells import CellArray
    from gen.devices import DeviceModel
    from flow.chip_check import load_build
    from hw.pe import prog_layout
    out = tmp_path / "faulty"
    r = subprocess.run(PIMGEN + ["build", "digits", "-o", str(out), "--g-frac-bits", "2", "--stuck-at", "0.02",
                                 "--variation", "0.2", "--seed", "3"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "cells      stuck-at-0 0.02, stuck-at-1 0, variation 0.2, seed 3; 4-bit levels, g_frac_bits=2" in r.stdout
    d = load_build(out)
    assert d.device == DeviceModel(stuck_at_0=0.02, variation=0.2, seed=3) and d.chip.crossbar.g_frac_bits == 2
    cfg, lay = d.chip.crossbar, prog_layout(d.chip.crossbar, d.cp.n_xbars)
    field = lambda v, f: (v >> lay[f].offset) & ((1 << Shape.cast(lay[f].shape).width) - 1)   # noqa: E731
    rows = {}
    for v in (int(h, 16) for h in (out / "weights" / "program.hex").read_text().split()):
        rows[(field(v, "xbar"), field(v, "row"))] = field(v, "cells")
    want = d.conductances
    ideal = {(x, r): w for x, r, w in d.cp.programming()}
    assert rows.keys() == ideal.keys() and sum(rows[k] != ideal[k] for k in rows) > len(rows) // 2
    for n, p in enumerate(d.cp.plan.placements):
        used = p.rows[1] - p.rows[0]
        got = CellArray(cfg, tuple(rows[(n, r)] for r in range(used)) + (0,) * (cfg.rows - used)).conductances()
        assert np.array_equal(got[:used], want[p][:used]), p


def test_build_writes_a_chip_folder(tmp_path):
    out = tmp_path / "digits"
    r = subprocess.run(PIMGEN + ["build", "digits", "-o", str(out), "--json"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    m = json.loads(r.stdout)
    assert m["kind"] == "chip" and m["schema"] == 5 and m["source"] == "trained" and m["pimgen"]
    assert m["device"] is None
    assert m["topology"] == "5pp" and m["plan"]["topology"]["hops"] == [1, 1, 1]
    assert "module chip(" in (out / "rtl" / "chip.v").read_text()
    assert len((out / "weights" / "program.hex").read_text().split()) == m["ports"]["prog"]["beats"]
    assert m["paths"]["manifest"] == str(out / "manifest.json")
    # the crossbar module is emitted once, whatever the number of crossbars
    assert (out / "rtl" / "chip.v").read_text().count("module pimgen_crossbar_") == 1 < m["crossbars"]


def test_build_residual_chip_on_a_mesh(tmp_path):
    """A residual network on a mesh: its skips take two hops and the flows share the routers
    in 2 time slots, which the summary says and the manifest records per link."""
    out = tmp_path / "r"
    r = subprocess.run(PIMGEN + ["build", "resnet20-mini", "--preset", "small", "--topology", "mesh", "-o", str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "on mesh 5x5, the flows sharing its routers in 2 time slots" in r.stdout, r.stdout
    m = json.loads((out / "manifest.json").read_text())
    links = m["plan"]["links"]
    assert {ln["period"] for ln in links} == {2} and {ln["slot"] for ln in links} == {0, 1}
    assert max(m["plan"]["topology"]["hops"]) == 2


def test_build_refusal_is_one_line_and_writes_nothing(tmp_path):
    """A design the planner refuses (here a duplication whose reorder outlasts the stage):
    one line, exit 2, and no folder, not even the temporary one."""
    out = tmp_path / "d"
    r = subprocess.run(PIMGEN + ["build", "digits", "--topology", "mesh", "--duplication", "32", "-o", str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("pimgen build: error: layer 'conv2': its 32 replicas")
    assert not out.exists() and not list(tmp_path.iterdir())


@pytest.mark.parametrize("dup, says", [
    # 32 replicas of conv2's 8x8 output finish an image sooner than its pixels can leave in raster order
    ("32", "pimgen build: error: layer 'conv2': its 32 replicas finish an image in 191 clocks, less than the "
           "64 x 4 + 3 clocks its pixels take to leave in raster order; choose a lower duplication"),
    ("x", "pimgen build: error: --duplication 'x' is not allowed: use an integer >= 1, 'auto' or 'balance'"),
    ("0", "pimgen build: error: --duplication '0' is not allowed: use an integer >= 1, 'auto' or 'balance'"),
])
def test_build_refuses_a_duplication_it_cannot_build(tmp_path, dup, says):
    out = tmp_path / "d"
    r = subprocess.run(PIMGEN + ["build", "digits", "-o", str(out), "--duplication", dup], capture_output=True,
                       text=True)
    assert r.returncode == 2 and r.stderr.startswith(says) and r.stderr.count("\n") == 1, r.stderr
    assert not out.exists()


def test_build_duplicated_chip(tmp_path):
    """`--duplication 2`: the manifest records it and the replicas of every stage (the 1x1
    classifier keeps one); the build folder rebuilds the same design."""
    from flow.chip_check import load_build
    out = tmp_path / "d"
    r = subprocess.run(PIMGEN + ["build", "digits", "-o", str(out), "--duplication", "2"], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    assert "conv1 conventional x2" in r.stdout and "conv3 novel x2" in r.stdout, r.stdout
    m = json.loads((out / "manifest.json").read_text())
    assert m["duplication"] == 2
    assert [len(s["schedule"]["replicas"]) for s in m["plan"]["stages"]] == [2, 2, 2, 1]
    assert [len(s.replicas) for s in load_build(out).cp.stages] == [2, 2, 2, 1]


def test_simulate_refuses_a_foreign_schema(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"kind": "chip", "schema": 999}))
    r = subprocess.run(PIMGEN + ["simulate", str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 2 and "rebuild" in r.stderr and "Traceback" not in r.stderr


def test_version():
    r = subprocess.run(PIMGEN + ["--version"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("pimgen ")


@pytest.mark.parametrize("flags, says", [
    (["--stuck-at", "2"], "--stuck-at 2.0 is not allowed: --stuck-at must be a number in [0, 1]"),
    (["--stuck-at", "0.6", "--stuck-at-1", "0.6"], "--stuck-at 0.6 + --stuck-at-1 0.6 is not allowed"),
    (["--drift", "0.1", "--time", "0"], "--time 0.0 is not allowed: --time must be a number > 0"),
    (["--fault-aware"], "--fault-aware needs a device model to work around: give --stuck-at"),
])
def test_build_refuses_bad_device_flags_naming_the_flag(tmp_path, flags, says):
    out = tmp_path / "x"
    r = subprocess.run(PIMGEN + ["build", "digits", "-o", str(out), *flags], capture_output=True, text=True)
    assert r.returncode == 2 and says in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not out.exists()
