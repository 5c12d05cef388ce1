"""Build folders written whole or not at all."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

__all__ = ["write_folder"]


def write_folder(out: str | Path, files: dict[str, str]) -> Path:
    """Write ``files`` (relative path -> text) as the folder ``out``: into a temporary folder
    beside it, renamed into place at the end, so an error or an interrupt leaves no
    half-written folder (and an earlier build stays until the new one is complete). A
    folder that exists but is not a pimgen build (no ``manifest.json``) is refused."""
    out = Path(out)
    if out.exists() and not (out / "manifest.json").exists():
        raise ValueError(f"{str(out)!r} exists and is not a pimgen build folder; choose another -o")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        for rel, text in files.items():
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp / rel).write_text(text)
        if out.exists():
            old = out.with_name(f".{out.name}-old")
            if old.exists():
                shutil.rmtree(old)
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
