"""gen.energy (events x per-event energies, areas) and gen.neurosim_accounting (NeuroSim's
copies in spare subarrays/PEs, stages added)."""
import dataclasses

import pytest

from gen.config import ChipConfig, CrossbarConfig
from gen.energy import KINDS, EnergyModel, energy_report
from gen.mapping import map_network
from gen.network import Conv2d, Network, zoo
from gen.neurosim_accounting import extra_duplication, neurosim_account
from gen.perf import estimate


def test_preset_loads_and_every_default_has_a_source():
    m = EnergyModel.from_toml()
    text = open(m.source).read()
    for key in list(m.energy_pj) + list(m.area_um2):
        line = next(i for i, l in enumerate(text.splitlines()) if l.startswith(f"{key} ="))
        comment = text.splitlines()[line - 1]
        assert comment.startswith("#") and ("ISAAC" in comment or "pimgen" in comment or "derived" in comment
                                            or "->" in comment or "Isaac" in comment), key
    assert m.adc_pj(8) == pytest.approx(1.67) and m.adc_pj(5) == pytest.approx(0.99)
    assert m.adc_pj(12) == pytest.approx(2.379 * 4)      # outside the table: 2**bits from the nearest


def test_bad_table_is_refused(tmp_path):
    p = tmp_path / "e.toml"
    p.write_text("[energy_pj]\ncell_read = 1\n")
    with pytest.raises(ValueError, match="missing"):
        EnergyModel.from_toml(p)
    with pytest.raises(ValueError, match="does not exist"):
        EnergyModel.from_toml(tmp_path / "nope.toml")


def test_events_of_one_layer_by_hand():
    """A 3x3 conv, Cin=20, Cout=4 on 16-row crossbars with 2-bit cells: every count by hand."""
    xb = CrossbarConfig(rows=16, cols=21, cell_bits=2, cols_per_adc=7)      # 5 outputs, 3 ADCs
    chip = ChipConfig(crossbar=xb, subarrays_per_pe=2, pes_per_tile=9)
    net = Network("one", (20, 6, 6), [Conv2d(name="c", cin=20, cout=4, k=3, stride=1, pad=1)])
    plan = map_network(net, chip, mapping="conventional")
    rep = energy_report(plan)
    ev = rep.layers[0].events
    # 180 matrix rows -> 12 row-blocks (11 x 16 + 4), 1 column block; 36 output pixels
    assert ev["mvms"] == 36 * 12
    assert ev["dac_drives"] == 36 * 180 * xb.input_cycles
    assert ev["cell_reads"] == 36 * 180 * xb.input_cycles * 21
    assert ev["conversions"] == 36 * 12 * xb.input_cycles * 3 * 7
    assert ev["psum_adds"] == 36 * 4 * 11
    e = rep.layers[0].energy_pj
    assert e["adc"] == pytest.approx(ev["conversions"] * EnergyModel.from_toml().adc_pj(xb.adc_resolution))
    assert set(rep.by_kind()) == set(KINDS)
    assert rep.tops_per_w == pytest.approx(2 * net.macs / (rep.energy_pj * 1e-12) / 1e12)


def test_energy_scales_with_events():
    net = zoo("resnet20")
    chip = ChipConfig.preset("paper")
    r1 = energy_report(map_network(net, chip, mapping="conventional"))
    lossy = dataclasses.replace(chip, crossbar=dataclasses.replace(chip.crossbar, adc_bits=5))
    r2 = energy_report(map_network(net, lossy, mapping="conventional"))
    assert r2.by_kind()["adc"] < r1.by_kind()["adc"]                 # a 5-bit ADC costs less per conversion
    assert r2.by_kind()["cells"] == r1.by_kind()["cells"]
    assert r2.area_um2["adc"] < r1.area_um2["adc"]
    # the novel mapping moves fewer bits over the global bus (input reuse)
    rn = energy_report(map_network(net, chip, mapping="novel"))
    assert rn.by_kind()["router"] < r1.by_kind()["router"]


def test_neurosim_copies_follow_the_rule():
    """Paper preset (2x2 subarrays per PE, 3x3 PEs per tile, 15 outputs per subarray): a novel
    64->64 layer needs 1x5 subarrays per kernel position, so its PE holds 2 copies in rows
    (NeuroSim SubArrayDup); a 512->512 one needs 4x35 and holds 1; the conventional 3x3 64->64
    layer (576 rows: 5x5 subarrays) fits no copy; a 1x1 128->256 layer (1x18) gets 2 copies of
    a PE's rows x 3 PE rows of the tile."""
    net = zoo("resnet34")
    chip = ChipConfig.preset("paper")
    nov = extra_duplication(map_network(net, chip, mapping="novel"))
    con = extra_duplication(map_network(net, chip, mapping="conventional"))
    assert nov["layer1.0.conv1"]["copies"] == 2 and nov["layer4.1.conv1"]["copies"] == 1
    assert con["layer1.0.conv1"]["copies"] == 1
    assert con["layer3.0.downsample"] == nov["layer3.0.downsample"]
    assert con["layer3.0.downsample"]["subarray"] == 2 and con["layer3.0.downsample"]["pe"] == 3


def test_neurosim_account_adds_stages_on_the_duplicated_plan():
    net = zoo("resnet20")
    chip = ChipConfig.preset("paper")
    acc = neurosim_account(net, chip, "novel")
    want = estimate(map_network(net, chip, mapping="novel",
                                duplication={n: c["copies"] for n, c in acc.copies.items()}), overlap=False)
    assert acc.total_clocks == want.latency_clocks
    assert acc.plan.n_subarrays <= acc.dup_plan.n_subarrays
