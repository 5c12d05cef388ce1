"""Output folders and files are written whole or not at all (flow/buildfolder.py): refusals of
a user's folder or file, --force, replacing an earlier build, errors and SIGINT mid-way."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flow.buildfolder import check_output, write_file, write_folder
from flow.cli import main

ROOT = Path(__file__).resolve().parents[1]


def leftovers(parent: Path, name: str) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(f".{name}-"))


def test_refuses_a_users_folder_and_file(tmp_path):
    user = tmp_path / "mine"
    user.mkdir()
    (user / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not a pimgen build.*--force"):
        write_folder(user, {"manifest.json": "{}"})
    assert (user / "notes.txt").read_text() == "keep me"
    f = tmp_path / "file"
    f.write_text("keep me too")
    with pytest.raises(ValueError, match="is a file"):
        write_folder(f, {"manifest.json": "{}"})
    assert f.read_text() == "keep me too"
    with pytest.raises(ValueError, match="current or home"):
        check_output(".", force=True)
    write_folder(user, {"manifest.json": "{}"}, force=True)       # --force: replaced
    assert sorted(p.name for p in user.iterdir()) == ["manifest.json"]
    assert leftovers(tmp_path, "mine") == []


def test_replaces_an_earlier_build_and_an_error_leaves_nothing(tmp_path):
    out = tmp_path / "b"
    write_folder(out, {"manifest.json": '{"n": 1}', "rtl/x.v": "old"})
    write_folder(out, {"manifest.json": '{"n": 2}', "rtl/y.v": "new"})
    assert json.loads((out / "manifest.json").read_text()) == {"n": 2} and not (out / "rtl/x.v").exists()
    with pytest.raises(TypeError):
        write_folder(out, {"manifest.json": '{"n": 3}', "rtl/z.v": object()})    # fails mid-way
    assert json.loads((out / "manifest.json").read_text()) == {"n": 2}          # the earlier build stays
    with pytest.raises(TypeError):
        write_folder(tmp_path / "new", {"manifest.json": "{}", "x": object()})
    assert not (tmp_path / "new").exists()
    assert leftovers(tmp_path, "b") == [] and leftovers(tmp_path, "new") == []


def test_write_file_is_atomic(tmp_path):
    p = tmp_path / "m.pimgen"
    p.write_text("old")

    def boom(tmp):
        tmp.write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_file(p, writer=boom)
    assert p.read_text() == "old" and [q.name for q in tmp_path.iterdir()] == ["m.pimgen"]
    write_file(p, "new")
    assert p.read_text() == "new"


def _one_line(argv, capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_cli_refuses_before_working(tmp_path, capsys):
    user = tmp_path / "mine"
    user.mkdir()
    (user / "a.txt").write_text("x")
    t0 = time.perf_counter()
    assert "--force" in _one_line(["generate", "--layer", "fc in=4 out=4", "-o", str(user)], capsys)
    assert "--force" in _one_line(["build", "digits", "-o", str(user)], capsys)
    assert time.perf_counter() - t0 < 5                       # refused before emitting any RTL
    assert (user / "a.txt").read_text() == "x"
    f = tmp_path / "notes.txt"
    f.write_text("mine")
    assert "not a pimgen quantized model" in _one_line(
        ["quantize", str(ROOT / "gen/models/digits.onnx"), "--calibration", "x.npy", "-o", str(f)], capsys)
    assert f.read_text() == "mine"
    assert "not a pimgen build folder" in _one_line(["simulate", str(user)], capsys)


def test_sigint_during_build_leaves_nothing(tmp_path):
    """`pimgen build resnet20 -o DIR` interrupted mid-way by a Ctrl-C, which reaches the whole
    process group (the conversion's forked workers and its Yosys server too): exit 130, no
    DIR, no temporary folder, and nothing but the interruption on the standard error (no
    traceback from any process, no warnings about the components left unconverted)."""
    out = tmp_path / "chip"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "flow.cli", "build", "resnet20", "-o", str(out), "-j", "2"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    time.sleep(6)                        # imports done, the Verilog being converted (14 s in all, quiet)
    assert proc.poll() is None, "the build finished before the interrupt; the test needs a longer build"
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err and "UnusedElaboratable" not in err, err[-2000:]
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []
