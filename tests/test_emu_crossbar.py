"""Emulated (block-RAM) crossbar under cocotb: bit-exact vs the golden model, host clocks ==
gen.timing.emulated_crossbar_host_clocks; its memory image and geometry in plain Python."""
import pytest

from gen.cells import CellArray
from gen.config import CrossbarConfig
from gen.emulation import EMU_PIPELINE_CLOCKS, EmulatedGeometry, SumStep, serial_sum_steps
from gen.timing import crossbar_latency, emulated_crossbar_host_clocks, emulated_row_write_host_clocks
from flow.crossbar_check import CrossbarCheck
from flow.emu_check import run_emu_crossbar_check

SMALL = CrossbarConfig.from_toml("gen/presets/small.toml")

#: The sweep (slow): every cell_bits, lossless and lossy ADCs, one ADC per column and shared
#: ADCs, several words per column with a short last word, dac_bits > 1, the 'small' preset.
SWEEP = {
    "cb1-cpa1-rows40": CrossbarConfig(rows=40, cols=9, cell_bits=1, cols_per_adc=1),           # 2 words, short last
    "cb2-cpa3-lossy": CrossbarConfig(rows=20, cols=10, cell_bits=2, adc_bits=4, adc_shift=1, cols_per_adc=3),
    "cb4-oneadc-dac4-lossy": CrossbarConfig(rows=6, cols=5, cell_bits=4, dac_bits=4, adc_bits=7, adc_shift=2,
                                            cols_per_adc=5),
    "cb4-dac2-rows11": CrossbarConfig(rows=11, cols=7, cell_bits=4, dac_bits=2, cols_per_adc=2),
    "small-32x32-cb4-cpa8": SMALL,
    "32x32-cb2-lossy": CrossbarConfig(rows=32, cols=32, cell_bits=2, adc_bits=4, cols_per_adc=8),
}


def _assert_pass(rep):
    assert rep["mismatches"] == 0, rep
    assert rep["delivered"] == rep["vectors"], rep
    assert rep["measured_clocks"] == rep["predicted_clocks"], rep
    assert rep["latencies"] == [rep["predicted_clocks"]], rep
    assert rep["passed"], rep


def test_geometry_and_host_clocks():
    geo = EmulatedGeometry(SMALL)
    assert (geo.rows_per_word, geo.groups, geo.reads) == (8, 4, 31 * 4)
    assert emulated_crossbar_host_clocks(SMALL) == 31 * 4 + EMU_PIPELINE_CLOCKS == 130
    assert crossbar_latency(SMALL) == 69
    # a row write: 31 stored columns (reference + 15 outputs x 2 slices), one per clock, + 1
    assert emulated_row_write_host_clocks(SMALL) == 32
    one = CrossbarConfig(rows=20, cols=10, cell_bits=1)       # 20 one-bit cells fit one word
    assert (EmulatedGeometry(one).rows_per_word, EmulatedGeometry(one).groups) == (20, 1)
    assert EmulatedGeometry(CrossbarConfig(rows=40, cols=9, cell_bits=1)).groups == 2
    # one input cycle per read: 8 passes over the same 124 words
    geo1 = EmulatedGeometry(SMALL, parallel_cycles=1)
    assert (geo1.words, geo1.passes, geo1.reads) == (124, 8, 992)
    assert emulated_crossbar_host_clocks(SMALL, parallel_cycles=2) == 124 * 4 + EMU_PIPELINE_CLOCKS
    with pytest.raises(ValueError, match="parallel_cycles=3 is not allowed: it must divide the 8 input cycles"):
        EmulatedGeometry(SMALL, parallel_cycles=3)


def test_serial_sum_steps_by_hand():
    """The emulation build's sweep over a layer's partial sums: per column block (sorted) and
    output, the result every PE reads (``b * outputs + o``), one step per crossbar of that
    block in the PE holding most of them."""
    from types import SimpleNamespace as P

    class Layer:
        def __init__(self, pes):
            self.pes = pes

        def per_pe(self):
            return self.pes

    # PE a: blocks (0, 2) and (2, 3); PE b: block (0, 2); 4 outputs per crossbar
    lp = Layer({(0, 0): [P(replica=0, cols=(0, 2)), P(replica=0, cols=(2, 3))],
                (0, 1): [P(replica=0, cols=(0, 2))]})
    assert serial_sum_steps(lp, 4) == (SumStep((0, 0), 0, True, True), SumStep((1, 1), 1, True, True),
                                       SumStep((4, None), 2, True, True))
    # PE a holds two row blocks of the same columns: two steps per output, b's part in the first
    lp = Layer({(0, 0): [P(replica=0, cols=(0, 2)), P(replica=0, cols=(0, 2))],
                (1, 0): [P(replica=0, cols=(0, 2))], (1, 1): [P(replica=1, cols=(0, 1))]})
    assert serial_sum_steps(lp, 4) == (
        SumStep((0, 0, None), 0, True, False), SumStep((4, None, None), 0, False, True),
        SumStep((1, 1, None), 1, True, False), SumStep((5, None, None), 1, False, True),
        SumStep((None, None, 0), 2, True, True))


def test_memory_image_is_column_major():
    cfg = CrossbarConfig(rows=12, cols=5, cell_bits=4, cols_per_adc=1)  # 8 rows per word: 2 words per column
    w = [[(r * 3 + o) % 256 - 128 for o in range(cfg.outputs)] for r in range(cfg.rows)]
    cells = CellArray.from_weights(w, cfg)
    geo = EmulatedGeometry(cfg)
    words = geo.memory_words(cells)
    assert len(words) == geo.words == geo.reads == len(geo.column_order) * 2
    for j, c in enumerate(geo.column_order):
        for r in range(cfg.rows):
            cell = (words[j * geo.groups + r // 8] >> (r % 8 * 4)) & 15
            assert cell == (cells.rows[r] >> (c * 4)) & 15
    assert geo.column_order[0] == cfg.ref_col


def test_emulated_crossbar_matches_golden():
    """Default run: a small crossbar, shared ADCs, 2-bit cells, rows re-programmed half-way."""
    cfg = CrossbarConfig(rows=16, cols=16, cell_bits=2, cols_per_adc=4)
    _assert_pass(run_emu_crossbar_check(CrossbarCheck(cfg, vectors=8, seed=1, reprogram_rows=3)))


@pytest.mark.parametrize("parallel", [1, 2])
def test_emulated_crossbar_fewer_cycles_per_read(parallel):
    """Passes over the words (1 or 2 input cycles per read; 2-bit DACs for the second), 2 words
    per column, re-programmed rows: still bit-exact, host clocks as the formula says."""
    cfg = CrossbarConfig(rows=12, cols=9, cell_bits=2, cols_per_adc=3) if parallel == 1 else \
        CrossbarConfig(rows=12, cols=9, cell_bits=4, dac_bits=2, cols_per_adc=3)
    _assert_pass(run_emu_crossbar_check(CrossbarCheck(cfg, vectors=6, seed=4, reprogram_rows=2),
                                        parallel_cycles=parallel))


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SWEEP))
@pytest.mark.parametrize("parallel", [None, 1])
def test_emulated_crossbar_sweep(name, parallel):
    _assert_pass(run_emu_crossbar_check(CrossbarCheck(SWEEP[name], vectors=12, seed=3, reprogram_rows=2),
                                        parallel_cycles=parallel))


@pytest.mark.slow
def test_emulated_crossbar_back_pressure():
    rep = run_emu_crossbar_check(CrossbarCheck(CrossbarConfig(rows=16, cols=9, cell_bits=2, cols_per_adc=2),
                                                vectors=12, seed=5, gap_prob=0.3, ready_prob=0.5))
    assert rep["mismatches"] == 0 and rep["delivered"] == 12, rep


@pytest.mark.slow
def test_emulated_crossbar_non_ideal_cells():
    """Non-ideal cells (DESIGN.md §3): g_frac_bits > 0, a device model's conductance map as the
    memory's initial contents, stuck-at faults in the reference column too; re-programmed rows
    become ideal again."""
    devices = pytest.importorskip("gen.devices")
    cfg = CrossbarConfig(rows=20, cols=10, cell_bits=2, cols_per_adc=3, g_frac_bits=2)
    dev = devices.DeviceModel(stuck_at_0=0.05, stuck_at_1=0.05, variation=0.3, seed=7)
    rep = run_emu_crossbar_check(CrossbarCheck(cfg, vectors=12, seed=2, reprogram_rows=2, device=dev))
    assert rep["non_ideal_cells"], rep
    _assert_pass(rep)


def test_cells_from_beats_overlays_the_reset_contents():
    """What programming beats leave in a chip's crossbars, by hand: the rows they write, the
    reset contents (w = 0) elsewhere; a beat beyond the chip is refused."""
    from gen.cells import CellArray, cells_from_beats
    reset = CellArray.from_weights(None, SMALL).rows
    got = cells_from_beats([(1, 0, 5), (1, 3, 7), (0, 2, 9)], SMALL, 3)
    assert got[0].rows == reset[:2] + (9,) + reset[3:]
    assert got[1].rows == (5,) + reset[1:3] + (7,) + reset[4:]
    assert got[2].rows == reset
    with pytest.raises(ValueError, match="crossbar 3, row 0"):
        cells_from_beats([(3, 0, 1)], SMALL, 3)
