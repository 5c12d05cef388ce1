"""``pimgen map`` and ``pimgen compare``: tables, JSON, plots, errors."""
import json
import subprocess
import sys

import pytest

from flow.cli import main

PIMGEN = [sys.executable, "-m", "flow.cli"]
LAYER_KEYS = {"name", "mapping", "clocks", "subarrays", "duplication", "utilization"}
MAP_KEYS = {"network", "mapping", "params", "macs", "total_clocks", "fps", "layers"}


def test_map_table(capsys):
    assert main(["map", "digits", "--mapping", "novel"]) == 0
    out = capsys.readouterr().out
    assert "15,338 parameters" in out and "452,864 MACs" in out
    for name in ("conv1", "conv2", "pool1", "conv3", "fc"):
        assert f"\n{name} " in out
    assert "fell back to conventional" in out and "FC layer" in out


def test_map_json(capsys):
    assert main(["map", "resnet34", "--mapping", "novel", "--json"]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert MAP_KEYS <= set(rec)
    assert rec["network"] == "resnet34" and rec["mapping"] == "novel"
    assert rec["params"] == pytest.approx(21.8e6, rel=0.01) and rec["macs"] == pytest.approx(3.6e9, rel=0.03)
    assert rec["total_clocks"] == sum(l["clocks"] for l in rec["layers"])          # layer by layer
    for l in rec["layers"]:
        assert LAYER_KEYS <= set(l)
        if l["subarrays"]:
            assert 0 < l["utilization"] <= 1
    assert {l["mapping"] for l in rec["layers"]} == {"novel", "conventional", "none"}


def test_map_pipeline_and_overrides(capsys):
    assert main(["map", "resnet20", "--pipeline", "--json", "--global-bus-bits", "64", "--rows", "64",
                 "--cols", "64"]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec["pipeline"] is True
    assert rec["total_clocks"] == max(l["clocks"] for l in rec["layers"])
    assert max(l["duplication"] for l in rec["layers"]) > 1
    assert main(["map", "digits", "--duplication", "2", "--json"]) == 0
    rec = json.loads(capsys.readouterr().out)
    dups = {l["name"]: l["duplication"] for l in rec["layers"] if l["subarrays"]}
    assert dups == {"conv1": 2, "conv2": 2, "conv3": 2, "fc": 1}     # a 1x1 output cannot be split


def test_map_neurosim_csv_round_trip(tmp_path, capsys):
    f = tmp_path / "NetWork_vgg8.csv"
    assert main(["map", "vgg8", "--write-csv", str(f), "--json"]) == 0
    a = json.loads(capsys.readouterr().out)
    assert main(["map", "--neurosim-csv", str(f), "--json"]) == 0
    b = json.loads(capsys.readouterr().out)
    assert b["network"] == "vgg8"
    assert (a["params"], a["macs"], a["total_clocks"]) == (b["params"], b["macs"], b["total_clocks"])


@pytest.mark.parametrize("argv, msg", [
    (["map", "nope"], "unknown network 'nope'"),
    (["map"], "no network"),
    (["map", "digits", "--neurosim-csv", "x.csv"], "not both"),
    (["map", "--neurosim-csv", "/nonexistent.csv"], "does not exist"),
    (["map", "digits", "--pes-per-tile", "0"], "pes_per_tile=0"),
    (["map", "digits", "--duplication", "many"], "--duplication 'many'"),
    (["compare", "digits", "--preset", "nope"], "unknown preset 'nope': use one of paper, small or a chip TOML"),
    (["map", "digits", "--preset", "energy"], "unknown preset 'energy'"),      # the energy table is no chip
    (["map", "digits", "--preset", ""], "--preset '' is not allowed"),
    (["accuracy", "digits", "--adc-bits", "5,99"], "--adc-bits 99 is not allowed"),
    (["accuracy", "digits", "--adc-bits", "-1"], "--adc-bits -1 is not allowed"),
    (["accuracy", "digits", "--cell-bits", "3"], "--cell-bits 3: cell_bits=3 is not allowed"),
    (["accuracy", "digits", "--dac-bits", "0"], "--dac-bits 0:"),
    (["accuracy", "digits", "--limit", "0"], "--limit 0 is not allowed"),
    (["map", "digits", "--preset", "paper", "--chip-config", "gen/presets/small.toml"], "both name the chip"),
    (["compare", "digits", "--energy-table", "/nonexistent.toml"], "does not exist"),
])
def test_errors_exit_2_with_one_line(argv, msg, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert msg in err and err.count("\n") == 1


def test_bad_csv_reports_line(tmp_path, capsys):
    f = tmp_path / "bad.csv"
    f.write_text("32,32,3,3,3,16,0,1\n32,32,16,3,3,16,0\n")
    assert main(["map", "--neurosim-csv", str(f)]) == 2
    assert "line 2" in capsys.readouterr().err


def test_compare_json(capsys):
    assert main(["compare", "resnet34", "--json"]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert {"network", "conventional", "novel", "speedup", "paper"} <= set(rec)
    for side in ("conventional", "novel"):
        assert MAP_KEYS <= set(rec[side]) and rec[side]["mapping"] == side
    assert rec["speedup"] == pytest.approx(rec["conventional"]["total_clocks"] / rec["novel"]["total_clocks"])
    assert rec["paper"]["speedup"] == 2.03 and rec["paper"]["pipelined_fps"] == 132476
    assert rec["pipelined"]["novel_interval"] > 0 and rec["serial"]["speedup"] > 0


def test_compare_table_and_plot(tmp_path, capsys):
    png = tmp_path / "b.png"
    assert main(["compare", "vgg16", "--plot", str(png), "--layers"]) == 0
    out = capsys.readouterr().out
    assert "2.10x" in out and "seed paper" in out and "conv5_3" in out
    assert png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"
    assert main(["compare", "digits"]) == 0
    assert "seed paper" not in capsys.readouterr().out


@pytest.mark.parametrize("name", ["resnet34", "vgg16"])
def test_compare_subprocess(name):
    # run time is a benchmark (bench/cli_speed.py), not a test
    r = subprocess.run(PIMGEN + ["compare", name], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "novel speed-up" in r.stdout


def test_compare_three_accountings_and_energy_json(capsys):
    assert main(["compare", "resnet34", "--json"]) == 0
    rec = json.loads(capsys.readouterr().out)
    acc = rec["accountings"]
    names = [r["name"] for r in acc["layers"]]
    assert len(names) == 37 and names[0] == "conv1" and names[-1] == "fc"
    for i in range(2):
        assert acc["total"]["neurosim"][i] == sum(r["neurosim"][i] for r in acc["layers"]) + \
            acc["post_layers_clocks"]["neurosim"][i]
        assert acc["total"]["overlapped"][i] == sum(r["overlapped"][i] for r in acc["layers"]) + \
            acc["post_layers_clocks"]["overlapped"][i]
    assert acc["total"]["overlapped"] == [rec["layer_by_layer"]["conventional_clocks"],
                                          rec["layer_by_layer"]["novel_clocks"]]
    for r in acc["layers"]:
        assert r["mechanism"]
        if r["mapping"] == "novel" and r["copies"][0] == r["copies"][1]:
            assert r["mvm_busy"][0] == r["mvm_busy"][1]       # equal MVM clocks at equal copies
    assert acc["pipelined_bounding_layer"]["novel"]["layer"] in names
    e = rec["energy"]
    for mode in ("layer", "pipe"):
        c, n = e[mode]["conventional"], e[mode]["novel"]
        assert c["tops_per_w"] > 0 and n["area_mm2"] > 0
        assert e[mode]["efficiency_gain"] == pytest.approx(n["tops_per_w"] / c["tops_per_w"])


def test_compare_text_has_three_columns_and_mechanism(capsys):
    assert main(["compare", "vgg16"]) == 0
    out = capsys.readouterr().out
    assert "pimgen, NeuroSim accounting" in out and "pimgen, overlapped (what the RTL does)" in out
    assert "pipelined chip bounded by" in out and "TOPS/W" in out and "mechanism" in out


def test_preset_takes_a_file_and_each_command_states_its_default(capsys):
    """--preset FILE.toml is that chip; map's default is the paper chip, build's the small one."""
    assert main(["map", "digits", "--preset", "gen/presets/small.toml", "--json"]) == 0
    small = json.loads(capsys.readouterr().out)
    assert main(["map", "digits", "--preset", "small", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == small
    from flow.cli import build_parser
    helps = {c: build_parser().parse_args([c, "x", "-o", "y"] if c == "build" else [c, "x"]).default_preset
             for c in ("map", "build")}
    assert helps == {"map": "paper", "build": "small"}
