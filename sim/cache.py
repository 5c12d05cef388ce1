"""The simulator build cache: a size limit with least-recently-used eviction.

The cache (``build/sim_cache`` or ``$PIMGEN_SIM_CACHE``) holds one folder per build, named
by :mod:`sim.runner` after a hash of the Verilog, top module, simulator and tracing. Each
use of a folder touches its ``.last_used`` marker; after a build, the oldest whole folders
are removed until the cache is under its limit.

The limit is, first found: ``$PIMGEN_SIM_CACHE_MAX``, the size saved by
``pimgen cache --max`` (``.max_size`` in the cache), :data:`DEFAULT_MAX` (2 GB).

Several processes (pytest-xdist workers) share one cache, so removal is guarded by locks:

* ``.inuse`` in a build folder: every user holds it *shared* from before the build until its
  run has ended (:func:`hold`); eviction takes it *exclusive, non-blocking* and skips a
  folder it cannot get. The build itself keeps its own exclusive ``.lock`` (``sim.runner``).
* A folder is removed by renaming it to ``.trash-*`` first (atomic), so a user never sees a
  half-deleted build: one that opened ``.inuse`` just before the rename notices that the
  file it locked is no longer the folder's and starts over on a fresh folder.
* ``.evict.lock`` in the cache: one eviction at a time (others skip: one is enough).
"""
from __future__ import annotations

import fcntl
import os
import re
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

ENV_DIR = "PIMGEN_SIM_CACHE"
ENV_MAX = "PIMGEN_SIM_CACHE_MAX"
DEFAULT_MAX = 2 * 1024 ** 3
MARKER = ".last_used"
INUSE = ".inuse"
SAVED_MAX = ".max_size"
EVICT_LOCK = ".evict.lock"
TRASH = ".trash-"

_UNITS = {"": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3, "t": 1024 ** 4}
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*", re.I)
SIZE_FORM = "a number of bytes with an optional K, M, G or T suffix (powers of 1024), e.g. 500M or 2G"


def default_cache_dir() -> Path:
    """``$PIMGEN_SIM_CACHE``, else ``build/sim_cache`` under the current folder."""
    return Path(os.environ.get(ENV_DIR) or Path.cwd() / "build" / "sim_cache")


def parse_size(text: str, source: str) -> int:
    """Bytes in ``text`` (``"500M"``, ``"2G"``, ``"1.5GiB"``, ``"4096"``); ``source`` (the flag or
    environment variable it came from) names it in the one-line ``ValueError`` for a bad size."""
    m = _SIZE.fullmatch(str(text))
    if m is None:
        raise ValueError(f"{source} {text!r} is not a size: use {SIZE_FORM}")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def format_size(n: int) -> str:
    """``n`` bytes for people: ``"1.2 GB"``, ``"340 MB"``, ``"12 KB"``, ``"5 B"`` (powers of 1024)."""
    for unit, scale in (("TB", 1024 ** 4), ("GB", 1024 ** 3), ("MB", 1024 ** 2), ("KB", 1024)):
        if n >= scale:
            v = n / scale
            return f"{v:.1f} {unit}" if v < 10 else f"{v:.0f} {unit}"
    return f"{n} B"


def cache_limit(cache_dir: Path) -> tuple[int, str]:
    """The limit in bytes and where it came from (``"$PIMGEN_SIM_CACHE_MAX"``, the saved file, ``"default"``)."""
    env = os.environ.get(ENV_MAX)
    if env:
        return parse_size(env, ENV_MAX), f"${ENV_MAX}"
    saved = Path(cache_dir) / SAVED_MAX
    if saved.is_file():
        return parse_size(saved.read_text().strip(), str(saved)), str(saved)
    return DEFAULT_MAX, "default"


def save_limit(cache_dir: Path, text: str, source: str = "--max") -> int:
    """Check ``text`` as a size and keep it as the cache's limit (``pimgen cache --max``); returns bytes."""
    n = parse_size(text, source)
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    (Path(cache_dir) / SAVED_MAX).write_text(text.strip() + "\n")
    return n


@dataclass(frozen=True)
class Entry:
    """One build folder of the cache."""

    path: Path
    size: int           # bytes of all files below it
    last_used: float    # time of its last use (the marker's mtime; the folder's for older builds)


def folder_size(path: Path) -> int:
    """Bytes of all regular files below ``path`` (apparent size, symlinks not followed)."""
    total = 0
    stack = [Path(path)]
    while stack:
        try:
            with os.scandir(stack.pop()) as it:
                for e in it:
                    try:
                        if e.is_dir(follow_symlinks=False):
                            stack.append(Path(e.path))
                        elif e.is_file(follow_symlinks=False):
                            total += e.stat(follow_symlinks=False).st_size
                    except OSError:     # removed while we looked: another worker evicted it
                        pass
        except OSError:
            pass
    return total


def _last_used(path: Path) -> float:
    for p in (path / MARKER, path):
        try:
            return p.stat().st_mtime
        except OSError:
            pass
    return 0.0


def entries(cache_dir: Path) -> list[Entry]:
    """The build folders of ``cache_dir``, least recently used first (dot folders are not builds)."""
    cache_dir = Path(cache_dir)
    if not cache_dir.is_dir():
        return []
    found = [Entry(p, folder_size(p), _last_used(p)) for p in cache_dir.iterdir()
             if p.is_dir() and not p.name.startswith(".")]
    return sorted(found, key=lambda e: (e.last_used, e.path.name))


def touch(build_dir: Path) -> None:
    """Mark ``build_dir`` as used now (its LRU position)."""
    (Path(build_dir) / MARKER).touch()


@contextmanager
def hold(build_dir: Path) -> Iterator[Path]:
    """Create (if need be) and use ``build_dir``: a shared ``.inuse`` lock for the whole block, so
    no eviction removes it meanwhile, and its marker touched. Yields ``build_dir``."""
    build_dir = Path(build_dir)
    while True:
        build_dir.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(build_dir / INUSE, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:      # evicted between mkdir and open: start over
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            try:
                same = os.stat(build_dir / INUSE).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if not same:               # we locked the file of a folder that was evicted meanwhile
                continue
            touch(build_dir)
            yield build_dir
            return
        finally:
            os.close(fd)               # closing releases the lock


def _claim(path: Path) -> int | None:
    """An exclusive ``.inuse`` lock on ``path`` if no one uses it (the fd), else ``None``."""
    try:
        fd = os.open(path / INUSE, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def _remove(entry: Entry) -> bool:
    """Remove one build folder if no one uses it; ``True`` if it went."""
    fd = _claim(entry.path)
    if fd is None:
        return False
    try:
        trash = entry.path.with_name(f"{TRASH}{entry.path.name}-{os.getpid()}")
        try:
            entry.path.rename(trash)
        except OSError:
            return False
    finally:
        os.close(fd)
    shutil.rmtree(trash, ignore_errors=True)
    return True


@dataclass(frozen=True)
class Eviction:
    """What :func:`evict` did."""

    removed: list[Entry]
    size_before: int
    size_after: int
    skipped_busy: int   # folders over the limit that were in use and kept


def evict(cache_dir: Path, limit: int, keep: Path | None = None) -> Eviction | None:
    """Remove the least recently used build folders of ``cache_dir`` until it holds at most
    ``limit`` bytes; never ``keep`` nor a folder someone uses. ``None`` if another process is
    evicting right now (its pass serves us too)."""
    cache_dir = Path(cache_dir)
    if not cache_dir.is_dir():
        return Eviction([], 0, 0, 0)
    lock_fd = os.open(cache_dir / EVICT_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return None
        # trash left by an eviction that died half-way (we hold the eviction lock: no one else removes it)
        for stale in cache_dir.glob(f"{TRASH}*"):
            shutil.rmtree(stale, ignore_errors=True)
        found = entries(cache_dir)
        before = total = sum(e.size for e in found)
        removed, busy = [], 0
        keep = Path(keep).resolve() if keep is not None else None
        for e in found:
            if total <= limit:
                break
            if keep is not None and e.path.resolve() == keep:
                continue
            if _remove(e):
                removed.append(e)
                total -= e.size
            else:
                busy += 1
        return Eviction(removed, before, total, busy)
    finally:
        os.close(lock_fd)


def clean(cache_dir: Path) -> Eviction | None:
    """Empty the cache: every build folder no one uses right now (the saved limit stays)."""
    return evict(cache_dir, -1)
