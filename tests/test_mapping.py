"""Chip configuration and mapping plans: invariants, hand-counted placements, duplication."""
import dataclasses

import numpy as np
import pytest

from gen.config import ChipConfig, CrossbarConfig
from gen.mapping import map_network, neurosim_duplication, novel_reason, replica_grid
from gen.network import Conv2d, Linear, Network, zoo

SMALL = ChipConfig(crossbar=CrossbarConfig(rows=16, cols=21, cell_bits=2), subarrays_per_pe=2, pes_per_tile=9)


# --- ChipConfig -----------------------------------------------------------------------------
def test_paper_preset_is_the_default_and_mirrors_the_case_study():
    c = ChipConfig.preset("paper")
    assert c == ChipConfig()
    x = c.crossbar
    assert (x.rows, x.cols, x.w_bits, x.a_bits, x.cell_bits, x.dac_bits, x.cols_per_adc) == (128, 128, 8, 8, 1, 1, 8)
    assert c.pes_per_tile == 9 and c.clock_mhz == 1000
    assert c.weights_per_subarray == 128 * ((128 - 1) // 8)
    assert c.subarrays_per_tile == c.subarrays_per_pe * 9
    assert c.max_novel_kernel == 3


@pytest.mark.parametrize("field, value, match", [
    ("subarrays_per_pe", 0, "subarrays_per_pe=0"),
    ("pes_per_tile", -1, "pes_per_tile=-1"),
    ("tiles", 0, "tiles=0"),
    ("global_bus_bits", 0, "global_bus_bits=0"),
    ("clock_mhz", 1.5, "clock_mhz=1.5"),
    ("crossbar", {"rows": 4}, "crossbar must be a CrossbarConfig"),
])
def test_chip_config_validation(field, value, match):
    with pytest.raises(ValueError, match=match):
        ChipConfig(**{field: value})


def test_chip_config_toml(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text("[crossbar]\nrows = 64\ncols = 64\n\n[chip]\npes_per_tile = 25\nglobal_bus_bits = 512\n")
    c = ChipConfig.from_toml(p)
    assert c.crossbar.rows == 64 and c.pes_per_tile == 25 and c.global_bus_bits == 512
    assert c.subarrays_per_pe == ChipConfig().subarrays_per_pe
    p.write_text("[chip]\nbogus = 1\n")
    with pytest.raises(ValueError, match="unknown chip field"):
        ChipConfig.from_toml(p)
    with pytest.raises(ValueError, match="unknown preset"):
        ChipConfig.preset("nope")
    assert ChipConfig.from_dict(ChipConfig().to_dict()) == ChipConfig()


# --- invariants -----------------------------------------------------------------------------
def check_invariants(plan):
    chip = plan.chip
    xb = chip.crossbar
    seen = set()
    tiles_by_layer = {}
    for lp in plan.layers:
        if not lp.has_weights:
            assert not lp.placements
            continue
        layer = lp.layer
        nr, nc = layer.weight_rows, layer.weight_cols
        cover = np.zeros((lp.duplication, nr, nc), dtype=np.int64)
        for p in lp.placements:
            assert p.layer == lp.name
            r0, r1 = p.rows
            c0, c1 = p.cols
            assert 0 < r1 - r0 <= xb.rows and 0 < c1 - c0 <= xb.outputs      # subarray capacity
            assert 0 <= p.pe < chip.pes_per_tile and 0 <= p.subarray < chip.subarrays_per_pe
            assert p.tile in lp.tiles
            key = (p.tile, p.pe, p.subarray)
            assert key not in seen, f"subarray {key} used twice"
            seen.add(key)
            m0, m1 = p.matrix_rows(layer.cin, layer.k)
            if p.kpos is not None:
                assert lp.mapping == "novel" and p.pe == p.kpos[0] * layer.k + p.kpos[1]
                assert r1 <= layer.cin
            cover[p.replica, m0:m1, c0:c1] += 1
        assert (cover == 1).all(), f"{lp.name}: some weight is not placed exactly once per replica"
        u = lp.utilization(chip)
        assert all(0 < v <= 1 for v in u.values()), u
        assert lp.duplication == len(lp.regions) == lp.grid[0] * lp.grid[1]
        # replica regions tile the output exactly
        _, ho, wo = lp.out_shape
        own = np.zeros((ho, wo), dtype=int)
        for y0, y1, x0, x1 in lp.regions:
            own[y0:y1, x0:x1] += 1
        assert (own == 1).all()
        tiles_by_layer[lp.name] = set(lp.tiles)
    all_tiles = [t for ts in tiles_by_layer.values() for t in ts]
    assert len(all_tiles) == len(set(all_tiles)) == plan.n_tiles       # layers do not share tiles
    assert all(0 < v <= 1 for v in plan.utilization().values())


@pytest.mark.parametrize("name", ["digits", "resnet20", "vgg8", "resnet34"])
@pytest.mark.parametrize("mapping", ["conventional", "novel"])
def test_plan_invariants_zoo(name, mapping):
    check_invariants(map_network(zoo(name), ChipConfig(), mapping=mapping))


@pytest.mark.parametrize("mapping", ["conventional", "novel"])
@pytest.mark.parametrize("dup", [2, 5, {"conv2": 3, "fc": 2}, "auto"])
def test_plan_invariants_small_chip_with_duplication(mapping, dup):
    check_invariants(map_network(zoo("digits"), SMALL, mapping=mapping, duplication=dup))
    check_invariants(map_network(zoo("resnet20"), SMALL, mapping=mapping, pipeline=True))


def test_hand_counted_subarrays():
    """ResNet-34 layer4.1.conv1 (3x3, 512 -> 512) on 128x128 subarrays, 8 one-bit columns per
    weight: 15 outputs per subarray. Conventional: ceil(4608/128)=36 row-blocks x ceil(512/15)=35
    column-blocks = 1260 subarrays, 315 PEs, 35 tiles. Novel: 9 kernel positions x ceil(512/128)=4
    x 35 = 1260 subarrays; 140 blocks per position in groups of 4 -> 35 tiles of 9 PEs."""
    net = zoo("resnet34")
    conv = map_network(net, mapping="conventional")["layer4.1.conv1"]
    assert (conv.n_subarrays, conv.n_pes, conv.n_tiles) == (1260, 315, 35)
    nov = map_network(net, mapping="novel")["layer4.1.conv1"]
    assert nov.mapping == "novel"
    assert (nov.n_subarrays, nov.n_pes, nov.n_tiles) == (1260, 315, 35)
    # every novel tile holds all 9 kernel positions of the same channel/output ranges
    t0 = [p for p in nov.placements if p.tile == nov.tiles[0]]
    assert sorted({p.kpos for p in t0}) == [(i, j) for i in range(3) for j in range(3)]
    assert len({(p.rows, p.cols) for p in t0}) == 4


def test_novel_fallbacks_are_recorded():
    chip = ChipConfig()
    plan = map_network(zoo("resnet34"), chip, mapping="novel")
    assert plan["conv1"].mapping == "conventional" and "7x7 kernel needs 49 PEs" in plan["conv1"].reason
    assert plan["layer2.0.downsample"].reason == "1x1 kernel"
    assert plan["fc"].reason == "FC layer"
    assert plan["layer1.0.conv1"].mapping == "novel" and plan["layer1.0.conv1"].reason == ""
    small = map_network(zoo("resnet20"), chip, mapping="novel")
    assert "fits one subarray" in small["conv1"].reason            # 3*3*3 = 27 <= 128 rows
    assert novel_reason(Conv2d(name="c", cin=15, cout=4, k=3), chip) == ""          # 135 > 128 rows
    assert novel_reason(Conv2d(name="c", cin=14, cout=4, k=3), chip) == "K*K*Cin=126 fits one subarray's 128 rows"
    assert novel_reason(Linear(name="f", in_features=9, out_features=3), chip) == "FC layer"
    conv = map_network(zoo("resnet34"), chip, mapping="conventional")
    assert all(lp.mapping in ("conventional", "none") and lp.reason == "" for lp in conv.layers)


def test_replica_grid():
    assert replica_grid(5, 5, 1) == (1, 1)
    assert replica_grid(5, 5, 4) == (2, 2)          # 3x3 rectangles
    assert replica_grid(56, 56, 64) == (8, 8)       # 7x7 rectangles
    assert replica_grid(1, 1, 7) == (1, 1)          # an FC layer cannot be split
    assert replica_grid(7, 7, 3) == (3, 1)          # bands of 3 rows (3x7=21) beat 7x3 columns? tie -> rows
    dr, dc = replica_grid(14, 14, 10)
    assert dr * dc <= 10


def test_neurosim_duplication_by_hand():
    """ResNet-34, speed-up degree 8: maxIFM 224 -> bound 28; dup = ceil((IFM/28)^2)."""
    d = neurosim_duplication(zoo("resnet34"), 8)
    assert d["conv1"] == 64                     # IFM 224
    assert d["layer1.0.conv1"] == 4             # IFM 56
    assert d["layer2.0.conv1"] == 4             # IFM 56 (stride-2 conv reads the 56x56 map)
    assert d["layer2.1.conv1"] == 1             # IFM 28
    assert d["layer4.2.conv2"] == 1             # IFM 7
    assert d["fc"] == 1
    full = neurosim_duplication(zoo("resnet34"), None)   # capped at 224 // 7 = 32 -> bound 7
    assert full["layer1.0.conv1"] == 64 and full["layer4.2.conv2"] == 1
    plan = map_network(zoo("resnet34"), pipeline=True)
    assert plan["layer1.0.conv1"].duplication == 4 and plan["layer1.0.add"].duplication == 4


def test_bad_arguments():
    with pytest.raises(ValueError, match="mapping='diagonal'"):
        map_network(zoo("digits"), mapping="diagonal")
    with pytest.raises(ValueError, match="duplication=0"):
        map_network(zoo("digits"), duplication=0)
    with pytest.raises(ValueError, match="unknown weight layer"):
        map_network(zoo("digits"), duplication={"nope": 2})


def test_chip_tile_limit_reported():
    plan = map_network(zoo("resnet20"), dataclasses.replace(ChipConfig(), tiles=3))
    assert not plan.fits
    assert map_network(zoo("digits"), ChipConfig()).fits


def test_balanced_duplication_follows_layer_clocks():
    from gen.perf import estimate
    net = zoo("resnet20")
    plan = map_network(net, ChipConfig(), pipeline=True, duplication="balance", speedup=4)
    check_invariants(plan)
    one = estimate(map_network(net, ChipConfig(), duplication=1))
    target = -(-max(lt.clocks for lt in one.layers) // 4)
    for lp in plan.weight_layers:
        assert lp.requested_duplication == max(1, -(-one[lp.name].clocks // target))
    assert estimate(plan).interval_clocks < one.total_clocks
