"""Layer spec parsing, `pimgen generate` / `pimgen simulate`, engine refusals, manifest contents."""
import json
from pathlib import Path

import pytest

from conftest import requires_icarus
from flow.cli import main
from flow.layer_check import LayerDesign
from gen.config import ChipConfig, CrossbarConfig
from gen.layerspec import LayerSpec, layer_plan, parse_layer_spec
from gen.params import WeightParams
from gen.quantize import random_weights
from gen.schedule import schedule_layer

GEN = ["--rows", "16", "--cols", "16", "--cell-bits", "4", "--cols-per-adc", "4"]


def test_parse_layer_spec():
    s = parse_layer_spec("conv Cin=8 Cout=16 K=3 H=8 W=8 stride=1 pad=1")
    assert s == LayerSpec("conv", 8, 16, 3, 8, 8, 1, 1)
    assert parse_layer_spec(str(s)) == s
    assert parse_layer_spec("CONV cin=2 cout=3 k=1 h=4 w=5") == LayerSpec("conv", 2, 3, 1, 4, 5, 1, 0)
    assert parse_layer_spec("fc in=64 out=10") == LayerSpec("fc", 64, 10)
    assert LayerSpec.from_dict(s.to_dict()) == s


@pytest.mark.parametrize("text,match", [
    ("conv Cin=8 Cout=16 K=3 H=8 W=8 dilation=2", r"unknown key 'dilation'.*allowed keys for conv: Cin, Cout"),
    ("conv Cin=8 Cout=16 K=3 H=8", r"misses W"),
    ("conv Cin=8 Cout=16 K=3 H=8 W=eight", r"token 'W=eight': W must be an integer"),
    ("conv Cin=8 Cout=16 K3 H=8 W=8", r"token 'K3' is not key=value"),
    ("pool k=2", r"layer kind 'pool' is not known"),
    ("conv Cin=8 Cout=16 K=3 H=8 W=8 stride=3", r"stride=3 is not allowed"),
    ("conv Cin=8 Cout=16 K=9 H=4 W=4", r"kernel 9x9 is larger than the padded input"),
    ("fc in=0 out=3", r"cin=0 is not allowed"),
    ("", r"empty layer spec"),
])
def test_parse_layer_spec_errors(text, match):
    with pytest.raises(ValueError, match=match):
        parse_layer_spec(text)


def _chip(**kw):
    return ChipConfig(crossbar=CrossbarConfig(rows=16, cols=16, cell_bits=4, cols_per_adc=4), global_bus_bits=64,
                      tile_bus_bits=64, pe_bus_bits=32, **kw)


def test_engine_refuses_unsupported_plans():
    spec = parse_layer_spec("conv Cin=40 Cout=16 K=3 H=4 W=4 pad=1")
    # conventional: 360 rows -> 23 row-blocks x 3 column-blocks = 69 crossbars > one tile of 9
    # PEs x 4: a replica over two tiles is built
    _, lp = layer_plan(spec, _chip(), "conventional")
    assert lp.n_tiles == 2 and schedule_layer(lp, _chip()).engine_refusal() is None
    # novel replicas of unequal width (4 and 3 columns) are built: the narrower one computes
    # 4 columns too, its neighbour's last one included (gen.mapping.LayerPlan.computed_regions)
    spec = parse_layer_spec("conv Cin=4 Cout=4 K=3 H=1 W=7 pad=1")
    _, lp = layer_plan(spec, _chip(), "novel", duplication=2)
    assert lp.grid == (1, 2) and lp.regions == [(0, 1, 0, 4), (0, 1, 4, 7)]
    assert lp.computed_regions == [(0, 1, 0, 4), (0, 1, 3, 7)]
    assert schedule_layer(lp, _chip()).engine_refusal() is None
    # requantization parameters are required for a non-final layer (refused in gen, not by the engine)
    spec = parse_layer_spec("conv Cin=4 Cout=4 K=3 H=4 W=4 pad=1")
    plan, lp = layer_plan(spec, _chip(), "conventional")
    p = random_weights(plan.network, 0)["L"]
    with pytest.raises(ValueError, match="requant is None"):
        LayerDesign(spec, _chip(), params=WeightParams(p.w, p.bias, None))


def test_generate_writes_build(tmp_path, capsys):
    out = tmp_path / "L1"
    rc = main(["generate", "--layer", "conv Cin=4 Cout=4 K=3 H=5 W=5 stride=1 pad=1", "--mapping", "novel", *GEN,
               "-o", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "mapping    novel" in text and "expected" in text
    m = json.loads((out / "manifest.json").read_text())
    assert (out / "rtl" / "layer.v").read_text().startswith("/*") or "module layer" in (out / "rtl" / "layer.v").read_text()
    assert m["mapping"] == "novel" and m["subarrays"] == 9 and m["weights"]["program"] == "weights/program.hex"
    assert m["ports"]["i"]["words_per_image"] == 25 and m["ports"]["o"]["bits"] == 64 and m["ports"]["o"]["array"] == 1
    assert m["chip"]["crossbar"]["rows"] == 16 and m["expected_fm_reads"] == 25
    # the crossbars are programmed: one shared module, every row of the 9 placed blocks one beat
    beats = (out / "weights" / "program.hex").read_text().split()
    assert len(beats) == m["ports"]["prog"]["beats"] == 9 * 4
    assert (out / "rtl" / "layer.v").read_text().count("module pimgen_crossbar_") == 1
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary folder left behind"
    # --json prints the manifest
    rc = main(["generate", "--layer", "fc in=20 out=3", "--raw", *GEN, "-o", str(tmp_path / "fc"), "--json"])
    assert rc == 0 and json.loads(capsys.readouterr().out)["raw_output"] is True


@pytest.mark.parametrize("argv,match", [
    (["--layer", "conv Cin=4 Cout=4 K=3 H=5 W=5 pad=1", "--tiles", "1", "--dup", "3", "--mapping", "novel"],
     "does not fit the hardware: the novel mapping needs 3 tiles"),
    (["--layer", "conv Cin=4 Cout=4 K=3 H=5 W=5 pad=1", "--rows", "1"], "rows=1 is not allowed"),
    (["--layer", "conv Cin=4 Cout=4 K=3 H=5 W=5 pad=1", "--cell-bits", "3"], "cell_bits=3 is not allowed"),
    (["--layer", "conv Cout=4 K=3 H=5 W=5"], "misses Cin"),
])
def test_generate_refuses(tmp_path, capsys, argv, match):
    out = tmp_path / "bad"
    rc = main(["generate", *GEN, *argv, "-o", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and match in err and err.count("\n") == 1, err
    assert not out.exists() and not list(tmp_path.iterdir()), "no half-written build folder"


def test_simulate_needs_a_build(tmp_path, capsys):
    assert main(["simulate", str(tmp_path)]) == 2
    assert "is not a pimgen build folder (no manifest.json)" in capsys.readouterr().err


def test_generate_then_simulate_flat(tmp_path, capsys, sim_cache, monkeypatch):
    """`--flat`: one Verilator model, no crossbar module compiled apart (its folder is
    missing from the build), with the same checks passing; refused with Icarus."""
    import sim.runner
    monkeypatch.setattr(sim.runner, "DEFAULT_CACHE", sim_cache)
    out = tmp_path / "L1"
    assert main(["generate", "--layer", "conv Cin=4 Cout=4 K=3 H=4 W=4 stride=1 pad=1", "--mapping", "novel", *GEN,
                 "-o", str(out)]) == 0
    capsys.readouterr()
    rc = main(["simulate", str(out), "--flat", "--images", "2", "--seed", "4", "--json"])
    rep = json.loads(capsys.readouterr().out)
    assert rc == 0 and rep["passed"] and rep["mismatches"] == 0
    assert set(rep["measured_per_image"]) == {rep["predicted_clocks"]}
    build = Path(rep["log"]).parents[1]
    assert (build / "layer.v").exists() and not list(build.glob("Vpimgen_crossbar_*")), sorted(build.iterdir())
    assert main(["simulate", str(out), "--flat", "--sim", "icarus"]) == 2
    err = capsys.readouterr().err
    assert "--flat is not allowed with --sim icarus: it is a way to build a Verilator model" in err
    assert err.count("\n") == 1


@requires_icarus
def test_generate_then_simulate_icarus(tmp_path, capsys, sim_cache, monkeypatch):
    import sim.runner
    monkeypatch.setattr(sim.runner, "DEFAULT_CACHE", sim_cache)
    out = tmp_path / "L1"
    assert main(["generate", "--layer", "conv Cin=4 Cout=4 K=3 H=5 W=5 stride=1 pad=1", "--mapping",
                 "conventional", *GEN, "-o", str(out)]) == 0
    capsys.readouterr()
    rc = main(["simulate", str(out), "--sim", "icarus", "--images", "2", "--seed", "3", "--json"])
    rep = json.loads(capsys.readouterr().out)
    assert rc == 0 and rep["passed"] and rep["mismatches"] == 0
    assert rep["measured_clocks"] == rep["predicted_clocks"] and set(rep["measured_per_image"]) == {
        rep["predicted_clocks"]}
    rc = main(["simulate", str(out), "--sim", "icarus"])
    text = capsys.readouterr().out
    assert rc == 0 and "PASS" in text and "match" in text
