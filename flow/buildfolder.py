"""Build folders (and single output files) written whole or not at all.

* :func:`check_output` — called by a command *before* its expensive work: an output path that
  exists and is not a pimgen build folder (no ``manifest.json``) is refused unless ``force``.
* :func:`write_folder` — the one writer of build folders (``build``, ``generate``, ``demo``): files go
  to a temporary folder beside the output, which is renamed into place at the end. An error or
  an interrupt (SIGINT) removes the temporary folder, so no half-written output is ever left;
  a previous build is swapped out with SIGINT held off and only then deleted.
* :func:`write_file` — the same for one file (``quantize``'s ``.pimgen``, plots, Verilog).
* :func:`read_manifest` — a build folder's ``manifest.json`` as a dict, or one ``ValueError`` line.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import tempfile
import threading
from pathlib import Path

__all__ = ["check_output", "write_folder", "write_file", "read_manifest", "reading_build", "is_build", "watch_sigint",
           "interrupted"]

_SIGINT_SEEN = threading.Event()


def watch_sigint() -> None:
    """Make SIGINT raise ``KeyboardInterrupt`` as Python's default handler does, and also
    remember it: a tool that runs in-process (Yosys under wasmtime, behind Amaranth's
    Verilog back end) can swallow the exception, and an interrupted build must still stop
    before it writes anything (:func:`write_folder` checks :func:`interrupted`)."""
    _SIGINT_SEEN.clear()
    if threading.current_thread() is not threading.main_thread():
        return

    def handler(signum, frame):
        _SIGINT_SEEN.set()
        raise KeyboardInterrupt

    with contextlib.suppress(ValueError):
        signal.signal(signal.SIGINT, handler)


def interrupted() -> bool:
    """A SIGINT arrived since :func:`watch_sigint` (even one some tool swallowed)."""
    return _SIGINT_SEEN.is_set()


def is_build(path: str | Path) -> bool:
    """True when ``path`` is a folder holding a ``manifest.json`` (a pimgen build)."""
    p = Path(path)
    return p.is_dir() and (p / "manifest.json").is_file()


def check_output(out: str | Path, *, force: bool = False, flag: str = "-o") -> Path:
    """Refuse (``ValueError``) an output folder path that exists and is not a pimgen build, unless
    ``force``; call it before doing the work, so a refusal costs nothing."""
    out = Path(out)
    if str(out) in ("", ".") or out.resolve() == Path.cwd().resolve() or out.resolve() == Path.home().resolve():
        raise ValueError(f"{flag} {str(out)!r} is not allowed: give a new or earlier build folder, not the current "
                         f"or home folder")
    if out.exists() and not is_build(out) and not force:
        what = "a file" if not out.is_dir() else "a folder that is not a pimgen build (no manifest.json)"
        raise ValueError(f"{flag} {str(out)!r} is {what}; choose another {flag} or add --force to replace it")
    parent = out.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if parent.exists() and not parent.is_dir():
        raise ValueError(f"{flag} {str(out)!r} is not allowed: {str(parent)!r} is a file, not a folder")
    return out


@contextlib.contextmanager
def _sigint_held():
    """Hold SIGINT off (main thread only) for a few renames; a Ctrl-C meanwhile is raised after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    got = []
    try:
        old = signal.signal(signal.SIGINT, lambda *a: got.append(a))
    except ValueError:       # no signals here (embedded interpreter)
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)
        if got:
            raise KeyboardInterrupt


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


def _swap_in(tmp: Path, out: Path) -> None:
    """Rename ``tmp`` to ``out``; an existing ``out`` is moved to a fresh hidden name first and
    deleted once the new one is in place. SIGINT is held off between the two renames."""
    if not out.exists() and not out.is_symlink():
        tmp.rename(out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}-old-", dir=out.parent))
    old.rmdir()                          # a unique free name for the old output
    with _sigint_held():
        out.rename(old)
        try:
            tmp.rename(out)
        except BaseException:
            old.rename(out)              # put the earlier output back
            raise
    _remove(old)


def write_folder(out: str | Path, files: dict[str, str | bytes], *, force: bool = False) -> Path:
    """Write ``files`` (relative path -> text or bytes) as the folder ``out``, atomically (see the
    module docstring). An existing ``out`` that is not a pimgen build is refused unless ``force``."""
    out = check_output(out, force=force)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-tmp-", dir=out.parent))
    try:
        for rel, data in files.items():
            p = tmp / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(data, bytes):
                p.write_bytes(data)
            else:
                p.write_text(data)
        if interrupted():
            raise KeyboardInterrupt
        _swap_in(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def write_file(path: str | Path, data: str | bytes | None = None, *, writer=None) -> Path:
    """Write one file atomically: into a temporary file beside it, renamed over ``path`` at the end
    (``os.replace``). ``writer(tmp_path)`` writes it instead of ``data`` (matplotlib's ``savefig``)."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{str(path)!r} is a folder; give a file name")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.stem}-tmp-", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        if writer is not None:
            writer(tmp)
        elif isinstance(data, bytes):
            tmp.write_bytes(data)
        else:
            tmp.write_text(data or "")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    return path


def read_manifest(folder: str | Path, *, hint: str = "`pimgen build NETWORK -o DIR` or `pimgen generate`") -> dict:
    """``folder/manifest.json`` as a dict; anything else is one ``ValueError`` line saying what is wrong."""
    folder = Path(folder)
    if not folder.exists():
        raise ValueError(f"{str(folder)!r} does not exist; a build folder is written by {hint}")
    if not folder.is_dir():
        raise ValueError(f"{str(folder)!r} is a file, not a build folder (written by {hint})")
    mf = folder / "manifest.json"
    if not mf.is_file():
        raise ValueError(f"{str(folder)!r} is not a pimgen build folder (no manifest.json); one is written by {hint}")
    try:
        m = json.loads(mf.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{str(mf)!r} is not a readable manifest ({e}); rebuild the folder") from None
    if not isinstance(m, dict):
        raise ValueError(f"{str(mf)!r} is not a pimgen manifest (a JSON object is expected, got "
                         f"{type(m).__name__}); rebuild the folder")
    return m


@contextlib.contextmanager
def reading_build(folder: str | Path, what: str, rebuild: str):
    """Around re-creating a design from a build folder: a missing key or file, a malformed value or
    a design its own checks refuse becomes one ``ValueError`` line naming the folder and ``rebuild``."""
    folder = Path(folder)
    try:
        yield
    except KeyError as e:
        raise ValueError(f"{str(folder / 'manifest.json')!r} is damaged: it misses {e}; rebuild it with "
                         f"{rebuild}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{str(folder)!r} is damaged: {e}; rebuild it with {rebuild}") from None
    except (TypeError, AttributeError, json.JSONDecodeError) as e:
        raise ValueError(f"{str(folder)!r} is damaged: a malformed manifest or params.json ({e}); rebuild it "
                         f"with {rebuild}") from None
    except ValueError as e:
        raise ValueError(f"{str(folder)!r} does not hold a valid {what}: {str(e).splitlines()[0]}") from None
