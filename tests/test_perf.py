"""Cycle model: hand-checkable single layers, worked out here from the formulas' definitions."""
import dataclasses

import pytest

from gen.config import ChipConfig, CrossbarConfig
from gen.mapping import map_network
from gen.network import Add, Conv2d, MaxPool, Network, zoo
from gen.perf import estimate
from gen.timing import adder_tree_clocks, crossbar_latency, transfer_clocks

# 16-row crossbar, 2-bit cells -> 4 columns per 8-bit weight, 17 columns -> 4 outputs;
# 4 columns per ADC -> 8 input cycles * 4 = 32 conversion clocks (+ the crossbar's pipeline).
XB = CrossbarConfig(rows=16, cols=17, cell_bits=2, cols_per_adc=4)
CHIP = ChipConfig(crossbar=XB, subarrays_per_pe=2, pes_per_tile=9, global_bus_bits=32, tile_bus_bits=16,
                  pe_bus_bits=8, clock_mhz=100)
NET = Network("one", (4, 5, 5), [Conv2d(name="c", cin=4, cout=6, k=3, stride=1, pad=1)])
L = crossbar_latency(XB)


def test_helpers():
    assert XB.outputs == 4 and XB.conversion_clocks == 32
    assert transfer_clocks(0, 8) == 0 and transfer_clocks(1, 8) == 1 and transfer_clocks(17, 8) == 3
    assert [adder_tree_clocks(n) for n in (1, 2, 3, 4, 5, 9)] == [0, 1, 2, 2, 3, 4]


def test_conventional_layer_by_hand():
    """Matrix 36 x 6: row-blocks 16,16,4; column-blocks 4,2 -> 6 blocks, 2 per PE:
    PE0 = (c0: r0, r1), PE1 = (c0: r2; c1: r0), PE2 = (c1: r1, r2); one tile.
    gbus_in = 9 kernel positions x ceil(4 channels * 8 bits / 32) = 9 words, + 1 (read latency) = 10;
    tbus_in = ceil(288/16) = 18, pbus_in = ceil(32 rows*8/8) = 32, accumulate = ceil(log2 3) = 2,
    post = 3, gbus_out = ceil(6 raw outputs * 32 bits / 32) = 6.
    25 output pixels: fill + 24 * II. Stand-alone engine: + load = 25 pixels x 1 word."""
    plan = map_network(NET, CHIP, mapping="conventional")
    lt = estimate(plan).layers[0]
    assert lt.step == {"gbus_in": 10, "tbus_in": 18, "pe_pass": 0, "pbus_in": 32, "mvm": L, "accumulate": 2,
                       "post": 3, "gbus_out": 6}
    ii = max(10, 18, 32, L, 2, 3, 6)
    fill = 10 + 18 + 32 + L + 2 + 3 + 6
    assert lt.interval == ii and lt.steps == 25 and lt.warmup == 0 and lt.prologue == 0
    assert lt.clocks == fill + 24 * ii
    assert lt.load == 25 and lt.engine_clocks == 25 + lt.clocks
    serial = estimate(plan, overlap=False).layers[0]
    assert serial.clocks == 25 * fill


def test_novel_layer_by_hand():
    """Novel: each kernel position holds a 4 x 6 matrix: one row-block, column-blocks 4,2 ->
    one group of 2 subarrays per PE, one tile of 9 PEs, n_t = 4 channels (1 word of 32 bits).
    gbus_in = s*s*1 word + 1 = 2, tbus_in = ceil(1*3*4*8/16) = 6,
    pe_pass = pbus_in = ceil(4*8/8) = 4, accumulate = ceil(log2 9) = 4, post 3, gbus_out 6.
    Warm-up: wu = ceil((3-1)/1) = 2 steps per output row, each followed after
    II_wu = max(gbus_in, tbus_in, pe_pass) = 6. Prologue: the K-s = 2 window rows above the
    first output row's new row are padded rows -1 and 0; real row 0 only: 5 pixels x 1 word
    + 1 = 6. 5x5 outputs: prologue + fill + 5*2*II_wu + (25 - 1) * II."""
    plan = map_network(NET, CHIP, mapping="novel")
    lp = plan["c"]
    assert lp.mapping == "novel" and (lp.n_subarrays, lp.n_pes, lp.n_tiles) == (18, 9, 1)
    lt = estimate(plan).layers[0]
    assert lt.step == {"gbus_in": 2, "tbus_in": 6, "pe_pass": 4, "pbus_in": 4, "mvm": L, "accumulate": 4,
                       "post": 3, "gbus_out": 6}
    assert lt.interval_warmup == 6 and lt.prologue == 6
    assert lt.warmup == 2 and lt.steps == 5 * (5 + 2)
    ii = max(2, 6, 4, 4, L, 4, 3, 6)
    fill = 2 + 6 + 4 + 4 + L + 4 + 3 + 6
    assert lt.clocks == 6 + fill + 5 * 2 * 6 + 24 * ii
    s = estimate(plan, overlap=False).layers[0]
    # serial: an output step costs fill, a warm-up step its input stages 2 + 6 + 4
    assert s.clocks == 6 + fill + 5 * 2 * (2 + 6 + 4) + 24 * fill


def test_novel_stride2_prologue_by_hand():
    """Stride 2, K = 3, pad 1: wu = ceil((3-2)/2) = 1; the line buffers hold K-s = 1 row, padded
    row -1 for the first output row: no real row, no prologue. 3x3 outputs from 5x5."""
    net = Network("s2", (4, 5, 5), [Conv2d(name="c", cin=4, cout=6, k=3, stride=2, pad=1)])
    lt = estimate(map_network(net, CHIP, mapping="novel")).layers[0]
    assert lt.prologue == 0 and lt.warmup == 1 and lt.region == (3, 3)
    # gbus_in = 2*2 new pixels x 1 word + 1; tbus_in = ceil(2*3*4*8/16) = 12
    assert lt.step["gbus_in"] == 5 and lt.step["tbus_in"] == 12 and lt.interval_warmup == 12
    fill = sum(lt.step.values())
    assert lt.clocks == fill + 3 * 1 * 12 + (9 - 1) * max(lt.step.values())


def test_duplication_by_hand():
    """Two replicas: 5x5 output in bands of 3 and 2 rows; both replicas' 3 PEs share the tile,
    so the tile reads both windows over its global-bus port (2 x 9 words + 1 = 19) and receives
    2 x 36 rows per step (tbus_in = 36); gbus_out = 12 values."""
    plan = map_network(NET, CHIP, mapping="conventional", duplication=2)
    lp = plan["c"]
    assert lp.regions == [(0, 3, 0, 5), (3, 5, 0, 5)] and lp.n_tiles == 1 and lp.n_pes == 6
    lt = estimate(plan).layers[0]
    assert (lt.step["gbus_in"], lt.step["tbus_in"], lt.step["gbus_out"]) == (19, 36, 12)
    ii = max(19, 36, 32, L, 2, 3, 12)
    assert lt.clocks == (19 + 36 + 32 + L + 2 + 3 + 12) + (15 - 1) * ii


def test_post_layers_and_network_totals():
    net = Network("two", (4, 6, 6), [Conv2d(name="a", cin=4, cout=4, k=3, pad=1),
                                     Add(name="j", inputs=("a", "input")),
                                     MaxPool(name="p", k=2),
                                     Conv2d(name="b", cin=4, cout=2, k=1)])
    for pipe in (False, True):
        plan = map_network(net, CHIP, duplication=1, pipeline=pipe)
        est = estimate(plan)
        j, p = est["j"], est["p"]
        assert j.clocks == 36 * transfer_clocks(2 * 4 * 8, 32)       # 36 pixels, two 32-bit vectors each
        assert p.clocks == 36 * transfer_clocks(4 * 8, 32)
        assert est.latency_clocks == sum(lt.clocks for lt in est.layers)
        if pipe:
            assert est.interval_clocks == max(lt.clocks for lt in est.layers)
        else:
            assert est.interval_clocks == est.latency_clocks
        assert est.total_clocks == est.interval_clocks
        assert est.fps == pytest.approx(100e6 / est.interval_clocks)


def test_novel_beats_conventional_only_where_a_bus_is_the_bottleneck():
    r34 = zoo("resnet34")
    conv, nov = (estimate(map_network(r34, mapping=m)) for m in ("conventional", "novel"))
    # layer1 (64 channels) is MVM-bound in both mappings
    assert conv["layer1.0.conv1"].bound == nov["layer1.0.conv1"].bound == "mvm"
    # layer4 (512 channels): the conventional window (4608 x 8 bits) saturates the global bus
    assert conv["layer4.1.conv1"].bound == "gbus_in"
    assert conv["layer4.1.conv1"].step["gbus_in"] == 9 * (512 * 8 // 256) + 1   # 9 pixels x 16 words + latency
    assert nov["layer4.1.conv1"].clocks < conv["layer4.1.conv1"].clocks
    assert nov.traffic()["global"] < conv.traffic()["global"]
    assert conv.total_clocks > 0 and nov.to_dict()["layers"][0]["name"] == "conv1"


def test_bus_width_moves_the_bottleneck():
    wide = dataclasses.replace(ChipConfig(), global_bus_bits=8192, tile_bus_bits=8192, pe_bus_bits=8192)
    r34 = zoo("resnet34")
    e = estimate(map_network(r34, wide, mapping="conventional"))
    assert all(lt.bound in ("mvm", "gbus_in") for lt in e.layers)
    assert e["layer4.1.conv1"].bound == "mvm"
