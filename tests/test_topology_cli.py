"""``pimgen topology``: the comparison table, JSON, plot, refusal; and the plan adapter."""
from __future__ import annotations

import json

import pytest

from flow.cli import main


def test_topology_all_resnet32_json(capsys):
    assert main(["topology", "resnet32", "--topology", "all", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    rows = {r["kind"]: r for r in out["topologies"]}
    assert set(rows) == {"kpp", "mesh", "torus", "ring", "bus"}
    assert rows["kpp"]["one_hop"] and rows["kpp"]["hops"] == {"1": out["graph"]["flows"]}
    # on 5PP every flow has its own channel, so its max equals the largest single flow
    assert rows["kpp"]["max_bw"] == pytest.approx(max(f["bits_per_clock"] for f in out["flows"]))
    assert rows["kpp"]["max_bw"] <= min(rows[k]["max_bw"] for k in ("mesh", "torus", "ring"))


def test_topology_table_and_plot(capsys, tmp_path):
    png = tmp_path / "p.png"
    assert main(["topology", "resnet20", "--topology", "5pp,mesh", "--plot", str(png)]) == 0
    text = capsys.readouterr().out
    assert "5pp" in text and "mesh" in text and "max bw" in text
    assert png.exists() and png.stat().st_size > 10_000


def test_topology_refuses_with_offending_edge(capsys):
    assert main(["topology", "resnet20", "--topology", "3pp"]) == 2
    err = capsys.readouterr().err
    assert "does not map one hop onto 3pp" in err and " -> " in err and "spans" in err


def test_topology_kpp_sweep_marks_unmappable(capsys):
    assert main(["topology", "resnet20", "--topology", "kpp", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["topologies"]
    assert [r["topology"] for r in rows] == [f"{k}pp" for k in range(3, 9)]
    assert "error" in rows[0] and all(r["one_hop"] for r in rows[2:])


def test_topology_bad_name(capsys):
    assert main(["topology", "resnet20", "--topology", "hypercube"]) == 2
    assert main(["topology", "nosuchnet"]) == 2


def test_comm_graph_from_mapping_plan():
    from gen import mapping
    from gen.commgraph import comm_graph
    from gen.config import ChipConfig
    from gen.network import zoo
    net = zoo("resnet20")
    plan = mapping.map_network(net, ChipConfig())
    cg = comm_graph(plan, crossbars_per_core=10**9)  # one core per weight layer
    assert [c.layer for c in cg.cores] == [l.name for l in net.weight_layers]
    assert cg.meta["crossbars"] == {lp.name: lp.n_subarrays for lp in plan.weight_layers}
    # resnet20: 19 convs + 2 projection shortcuts + fc = 22 weight layers, 22 cores. Forward:
    # every weight layer but the first has one input tensor -> 21 flows. Skip: one per Add,
    # 9 blocks -> 9 flows (identity: block input -> conv2; projection: the Add runs on the
    # later producer, the downsample, so conv2 -> downsample). No pair repeats.
    assert cg.n == 22
    kinds = [f.kind for f in cg.flows]
    assert (kinds.count("forward"), kinds.count("skip"), kinds.count("reduce")) == (21, 9, 0)


def test_topology_per_link_traffic(capsys):
    assert main(["topology", "resnet20", "--topology", "mesh,torus,ring", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    flows = out["flows"]
    for r in out["topologies"]:
        ch = r["channel_load"]
        # conservation: every flow loads one channel per hop
        hops_bits = sum(c["bits_per_image"] for c in ch)
        assert hops_bits == pytest.approx(r["mean_hops_traffic"] * sum(f["bits_per_image"] for f in flows))
    assert main(["topology", "resnet20", "--topology", "5pp", "--links"]) == 0
    text = capsys.readouterr().out
    assert "channels of resnet20 on 5pp" in text and "layer1.0.conv1" in text


def test_topology_writes_fabric_verilog(capsys, tmp_path):
    v = tmp_path / "f.v"
    assert main(["topology", "digits", "--topology", "5pp", "--verilog", str(v)]) == 0
    assert "module fabric" in v.read_text() and "PointToPointFabric" in capsys.readouterr().out
    assert main(["topology", "digits", "--topology", "all", "--verilog", str(v)]) == 2
