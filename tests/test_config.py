"""CrossbarConfig: validation messages, derived values worked out by hand, TOML loading."""
import pytest

from gen.config import CrossbarConfig


def test_defaults_and_derived_values_by_hand():
    c = CrossbarConfig(rows=32, cols=32, cell_bits=2, w_bits=8, a_bits=8, dac_bits=1, cols_per_adc=8)
    assert c.slices == 4                      # 8-bit weight in 2-bit cells
    assert c.outputs == 7                     # (32 - 1 reference) // 4
    assert c.ref_col == 31
    assert c.input_cycles == 8
    # max column sum 32 rows * level 3 * input 1 = 96 -> 7 bits
    assert c.lossless_adc_bits == 7 and c.adc_resolution == 7 and c.is_lossless
    assert c.num_adcs == 4
    assert c.conversion_clocks == 8 * 8
    assert c.weight_offset == 128


@pytest.mark.parametrize("rows,cell,dac,bits", [(16, 1, 1, 5), (128, 2, 1, 9), (128, 1, 1, 8), (32, 4, 2, 11)])
def test_lossless_width(rows, cell, dac, bits):
    # ceil(log2(rows*(2^cell-1)*(2^dac-1)+1)), evaluated by hand: 16->17 values, 384->385, 128->129, 32*15*3=1440
    assert CrossbarConfig(rows=rows, cols=rows, cell_bits=cell, dac_bits=dac).lossless_adc_bits == bits


def test_lossy_flags():
    assert not CrossbarConfig(adc_bits=5).is_lossless
    assert not CrossbarConfig(adc_shift=1).is_lossless
    assert CrossbarConfig(adc_bits=12).is_lossless


def test_uneven_adc_groups():
    c = CrossbarConfig(rows=16, cols=20, cols_per_adc=8)
    assert c.num_adcs == 3


@pytest.mark.parametrize("kwargs,field,allowed", [
    ({"rows": 1}, "rows", "[2, 4096]"),
    ({"cols": 0}, "cols", "[2, 4096]"),
    ({"cell_bits": 3}, "cell_bits", "1, 2, 4"),
    ({"w_bits": 6, "cell_bits": 4}, "cell_bits", "must divide w_bits"),
    ({"dac_bits": 3}, "dac_bits", "must divide a_bits"),
    ({"dac_bits": 0}, "dac_bits", "[1, 8]"),
    ({"adc_bits": 0}, "adc_bits", "None (lossless)"),
    ({"adc_shift": -1}, "adc_shift", "[0, 31]"),
    ({"cols_per_adc": 0}, "cols_per_adc", "[1, cols=32]"),
    ({"cols_per_adc": 33}, "cols_per_adc", "[1, cols=32]"),
    ({"cols": 4, "cell_bits": 2, "cols_per_adc": 4}, "cols", ">= 5"),
    ({"rows": 2.5}, "rows", "integer"),
])
def test_invalid_values_name_field_value_and_range(kwargs, field, allowed):
    with pytest.raises(ValueError) as e:
        CrossbarConfig(**kwargs)
    msg = str(e.value)
    assert f"{field}=" in msg and allowed in msg


def test_frozen():
    with pytest.raises(Exception):
        CrossbarConfig().rows = 4


def test_toml(tmp_path):
    p = tmp_path / "xb.toml"
    p.write_text("[crossbar]\nrows = 64\ncols = 48\ncell_bits = 4\nadc_bits = 5\n")
    c = CrossbarConfig.from_toml(p)
    assert (c.rows, c.cols, c.cell_bits, c.adc_bits, c.a_bits) == (64, 48, 4, 5, 8)
    p.write_text("rows = 8\ncols = 9\ncell_bits = 1\n")
    assert CrossbarConfig.from_toml(p).rows == 8


def test_toml_errors(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text("[crossbar]\nrowz = 3\n")
    with pytest.raises(ValueError, match="unknown crossbar field.*rowz"):
        CrossbarConfig.from_toml(p)
    p.write_text("[crossbar\n")
    with pytest.raises(ValueError, match="not valid TOML"):
        CrossbarConfig.from_toml(p)
    with pytest.raises(ValueError, match="does not exist"):
        CrossbarConfig.from_toml(tmp_path / "missing.toml")
