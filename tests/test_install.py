"""A non-editable install works: ``pip install .`` ships flow, the presets, the trained model and
the FPGA constraints as package data, and ``pimgen`` runs from a folder outside the checkout.

Fast variant of a fresh-venv install: the dependencies are this interpreter's (a ``.pth`` in
the new venv points at our site-packages, without running its ``.pth`` files, so the editable
install of this checkout stays out) and pimgen itself is built from a copy of the sources with
``--no-deps``: only the build back end (setuptools, ~1 MB, usually from pip's cache) comes from the
package registry, and nothing is written into the checkout.
"""
from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ["pyproject.toml", "README.md", "gen", "hw", "sim", "flow"]


def _run(cmd: list[str], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PIMGEN_SIM_CACHE")}
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))} exited {proc.returncode}:\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    """A venv with pimgen installed non-editably; returns its ``bin`` folder."""
    root = tmp_path_factory.mktemp("install")
    src = root / "src"
    for name in SOURCES:
        p = ROOT / name
        if p.is_dir():
            shutil.copytree(p, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            src.mkdir(exist_ok=True)
            shutil.copy2(p, src / name)
    env_dir = root / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], cwd=root)
    purelib = Path(_run([str(env_dir / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                        cwd=root).stdout.strip())
    # plain path lines: our packages become importable, our .pth files (the editable pimgen) do not run
    (purelib / "_pimgen_test_deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    # build isolation: pyproject.toml wants setuptools>=68 (and its bdist_wheel), newer than many venvs carry
    _run([str(env_dir / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", str(src)], cwd=root)
    return env_dir / "bin"


@pytest.fixture
def outside(tmp_path) -> Path:
    """A working folder outside the checkout."""
    assert ROOT not in tmp_path.parents
    return tmp_path


def test_installed_package_is_not_the_checkout(venv, outside):
    out = _run([str(venv / "python"), "-c", "import flow, gen, sim, hw; print(flow.__file__, gen.__file__)"],
               cwd=outside).stdout
    assert str(ROOT) not in out and str(venv.parent) in out


def test_version(venv, outside):
    out = _run([str(venv / "pimgen"), "--version"], cwd=outside).stdout
    assert out.startswith("pimgen ") and "unknown" not in out


def test_map_digits_json(venv, outside):
    rep = json.loads(_run([str(venv / "pimgen"), "map", "digits", "--json"], cwd=outside).stdout)
    assert rep


def test_build_digits(venv, outside):
    _run([str(venv / "pimgen"), "build", "digits", "-o", str(outside / "x")], cwd=outside)
    assert (outside / "x" / "manifest.json").exists()


def test_crossbar_help(venv, outside):
    assert "--rows" in _run([str(venv / "pimgen"), "crossbar", "--help"], cwd=outside).stdout


def test_package_data(venv, outside):
    """Presets, the trained model, the FPGA constraints and the cocotb testbenches come with the install."""
    code = ("from gen.config import ChipConfig; from gen.models import digits_params, DIGITS_ONNX; "
            "from flow.fpga import TARGETS, constraint_text; import sim.tb.chip; "
            "digits_params(); assert DIGITS_ONNX.exists(); ChipConfig.preset('paper'); "
            "print([constraint_text(t)[1] for t in TARGETS])")
    out = _run([str(venv / "python"), "-c", code], cwd=outside).stdout
    assert out.startswith("[")
