"""The bounded simulator build cache (``sim.cache``) and ``pimgen cache``, on fake build folders:
no simulator runs here."""
from __future__ import annotations

import json
import multiprocessing
import os
from pathlib import Path

import pytest

import sim.runner
from flow.cli import main
from sim.cache import (DEFAULT_MAX, ENV_MAX, MARKER, cache_limit, clean, entries, evict, folder_size, hold,
                       parse_size)

KB = 1024


def fake_build(cache: Path, name: str, size: int, used: float | None) -> Path:
    """A build folder of ``size`` bytes (two files, one in a sub-folder like Verilator's) last used at ``used``
    (``None``: no marker, as a build made before the cache was bounded)."""
    d = cache / name
    (d / "obj").mkdir(parents=True)
    (d / "top.v").write_bytes(b"v" * (size // 2))
    (d / "obj" / "Vtop").write_bytes(b"x" * (size - size // 2))
    if used is not None:
        (d / MARKER).touch()
        os.utime(d / MARKER, (used, used))
    else:
        os.utime(d, (1000.0, 1000.0))
    return d


@pytest.fixture
def cache(tmp_path):
    """Four 10 KB builds, used at t = 1000 (no marker: the folder's time), 2000, 3000, 4000."""
    c = tmp_path / "sim_cache"
    c.mkdir()
    fake_build(c, "d-verilator-4", 10 * KB, 4000.0)
    fake_build(c, "b-verilator-2", 10 * KB, 2000.0)
    fake_build(c, "a-icarus-old", 10 * KB, None)
    fake_build(c, "c-verilator-3", 10 * KB, 3000.0)
    return c


def names(cache: Path) -> list[str]:
    return [e.path.name for e in entries(cache)]


def test_entries_are_least_recently_used_first(cache):
    assert names(cache) == ["a-icarus-old", "b-verilator-2", "c-verilator-3", "d-verilator-4"]
    assert [e.size for e in entries(cache)] == [10 * KB] * 4
    assert folder_size(cache) == 40 * KB


def test_using_a_build_moves_it_to_the_back(cache):
    with hold(cache / "a-icarus-old"):
        pass
    assert names(cache)[-1] == "a-icarus-old"


def test_evict_removes_the_oldest_whole_folders_until_under_the_limit(cache):
    ev = evict(cache, 25 * KB)
    assert [e.path.name for e in ev.removed] == ["a-icarus-old", "b-verilator-2"]
    assert (ev.size_before, ev.size_after, ev.skipped_busy) == (40 * KB, 20 * KB, 0)
    assert names(cache) == ["c-verilator-3", "d-verilator-4"]
    assert not list(cache.glob(".trash-*"))


def test_evict_under_the_limit_removes_nothing(cache):
    assert evict(cache, 40 * KB).removed == []
    assert len(names(cache)) == 4


def test_evict_never_removes_the_kept_folder_nor_one_in_use(cache):
    with hold(cache / "b-verilator-2"):          # another worker runs a test in it
        ev = evict(cache, 0, keep=cache / "a-icarus-old")
    assert names(cache) == ["a-icarus-old", "b-verilator-2"]
    assert ev.skipped_busy == 1


def test_one_eviction_at_a_time(cache):
    import fcntl
    with open(cache / ".evict.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        assert evict(cache, 0) is None
    assert len(names(cache)) == 4


def test_stale_trash_is_removed_and_not_counted(cache):
    (cache / ".trash-x-1" / "obj").mkdir(parents=True)
    assert ".trash-x-1" not in names(cache)
    evict(cache, 10 ** 9)
    assert not (cache / ".trash-x-1").exists()


def test_hold_recreates_an_evicted_folder(cache):
    clean(cache)
    with hold(cache / "c-verilator-3") as d:
        assert d.is_dir() and (d / MARKER).exists()


def test_clean_empties_the_cache_but_keeps_the_saved_limit(cache):
    (cache / ".max_size").write_text("1G\n")
    ev = clean(cache)
    assert len(ev.removed) == 4 and names(cache) == []
    assert cache_limit(cache) == (1024 ** 3, str(cache / ".max_size"))


def _evict_worker(cache: str, limit: int) -> int:
    ev = evict(Path(cache), limit)
    return -1 if ev is None else len(ev.removed)


def test_parallel_evictions_agree(tmp_path):
    """Four processes (xdist workers) finishing a build at once: no crash, the cache ends under the limit."""
    c = tmp_path / "sim_cache"
    for i in range(40):
        fake_build(c, f"b{i:02d}", 4 * KB, 1000.0 + i)
    with multiprocessing.get_context("fork").Pool(4) as pool:
        pool.starmap(_evict_worker, [(str(c), 50 * KB)] * 4)
    evict(c, 50 * KB)           # a pass that was skipped because another ran is made up by the next build
    left = names(c)
    assert sum(e.size for e in entries(c)) <= 50 * KB
    assert left == [f"b{i:02d}" for i in range(40 - len(left), 40)]      # the newest survive


# --- the limit ----------------------------------------------------------------------------------
@pytest.mark.parametrize("text, n", [("0", 0), ("4096", 4096), ("500M", 500 * 1024 ** 2), ("2G", 2 * 1024 ** 3),
                                     ("2g", 2 * 1024 ** 3), ("1.5GiB", 3 * 1024 ** 3 // 2), ("64KB", 64 * KB),
                                     (" 1T ", 1024 ** 4)])
def test_parse_size(text, n):
    assert parse_size(text, "--max") == n


@pytest.mark.parametrize("text", ["", "abc", "-1G", "2X", "G", "1,5G", "2 GB extra"])
def test_bad_size_is_one_line_naming_the_source_and_the_form(text):
    with pytest.raises(ValueError) as e:
        parse_size(text, "--max")
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("--max ") and "K, M, G or T" in msg and "500M" in msg


def test_limit_from_env_default_and_bad_env(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_MAX, raising=False)
    assert cache_limit(tmp_path) == (DEFAULT_MAX, "default")
    monkeypatch.setenv(ENV_MAX, "500M")
    assert cache_limit(tmp_path) == (500 * 1024 ** 2, f"${ENV_MAX}")
    monkeypatch.setenv(ENV_MAX, "lots")
    with pytest.raises(ValueError, match=rf"^{ENV_MAX} 'lots' is not a size: use .*2G$"):
        cache_limit(tmp_path)


# --- pimgen cache -------------------------------------------------------------------------------
def cli_json(capsys, *argv: str) -> dict:
    assert main(["cache", "--json", *argv]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.fixture
def cli_cache(cache, monkeypatch):
    monkeypatch.setattr(sim.runner, "DEFAULT_CACHE", cache)
    monkeypatch.delenv(ENV_MAX, raising=False)
    return cache


def test_cli_json_shows_path_entries_size_limit(cli_cache, capsys):
    rep = cli_json(capsys)
    assert rep["path"] == str(cli_cache)
    assert rep["entries"] == 4 and rep["total_bytes"] == 40 * KB
    assert rep["limit_bytes"] == DEFAULT_MAX and rep["limit_source"] == "default" and rep["over_limit"] is False
    assert [b["name"] for b in rep["builds"]][0] == "a-icarus-old"
    assert set(rep["builds"][0]) == {"name", "bytes", "last_used"}
    assert rep["removed"] == [] and rep["freed_bytes"] == 0


def test_cli_max_saves_the_limit_and_trims(cli_cache, capsys):
    rep = cli_json(capsys, "--max", "25K")
    assert rep["limit_bytes"] == 25 * KB and rep["limit_source"].endswith(".max_size")
    assert rep["removed"] == ["a-icarus-old", "b-verilator-2"] and rep["freed_bytes"] == 20 * KB
    assert cli_json(capsys)["limit_bytes"] == 25 * KB            # saved for later builds


def test_cli_clean(cli_cache, capsys):
    rep = cli_json(capsys, "--clean")
    assert rep["entries"] == 0 and rep["total_bytes"] == 0 and len(rep["removed"]) == 4


def test_cli_text_and_bad_max(cli_cache, capsys):
    assert main(["cache"]) == 0
    out = capsys.readouterr().out
    assert str(cli_cache) in out and "40 KB of 2.0 GB" in out
    assert main(["cache", "--max", "huge"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--max 'huge' is not a size" in err
    assert not (cli_cache / ".max_size").exists()
