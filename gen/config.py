"""Hardware configuration: frozen, validated dataclasses loadable from TOML.

Every derived quantity (slices per weight, outputs per crossbar, lossless ADC width,
clocks per MVM, ...) is a property, so there is exactly one place that computes it.
"""
from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def _check_int(name: str, value: Any, lo: int, hi: int | None = None, allowed: str | None = None) -> None:
    """Raise ``ValueError`` naming the field, its value and the allowed range."""
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= lo and (hi is None or value <= hi)
    if not ok:
        rng = allowed or (f"an integer >= {lo}" if hi is None else f"an integer in [{lo}, {hi}]")
        raise ValueError(f"{name}={value!r} is not allowed: {name} must be {rng}")


@dataclass(frozen=True)
class CrossbarConfig:
    """One RRAM crossbar (subarray) and its periphery.

    Numerics follow DESIGN.md §3: offset-binary weights split into ``cell_bits`` slices
    (one column per slice, LSB slice first), one reference column of level-1 cells,
    bit-serial inputs of ``dac_bits`` per input cycle, one ADC per ``cols_per_adc`` columns.

    Attributes:
        rows, cols: cell array size (every column, reference included, has ``rows`` cells).
        cell_bits: bits stored per cell (1, 2 or 4); must divide ``w_bits``.
        w_bits: signed weight width.
        a_bits: unsigned activation width.
        dac_bits: input bits applied per input cycle; must divide ``a_bits``.
        adc_bits: ADC resolution, ``None`` for the lossless width.
        adc_shift: coarse ADC step (``2**adc_shift``), 0 for unit steps.
        cols_per_adc: columns multiplexed onto one ADC, converted one after another.
    """

    rows: int = 32
    cols: int = 32
    cell_bits: int = 2
    w_bits: int = 8
    a_bits: int = 8
    dac_bits: int = 1
    adc_bits: int | None = None
    adc_shift: int = 0
    cols_per_adc: int = 8

    def __post_init__(self) -> None:
        _check_int("rows", self.rows, 2, 4096)
        _check_int("cols", self.cols, 2, 4096)
        _check_int("w_bits", self.w_bits, 2, 16)
        _check_int("a_bits", self.a_bits, 1, 16)
        if self.cell_bits not in (1, 2, 4) or isinstance(self.cell_bits, bool):
            raise ValueError(f"cell_bits={self.cell_bits!r} is not allowed: cell_bits must be one of 1, 2, 4")
        if self.w_bits % self.cell_bits:
            raise ValueError(
                f"cell_bits={self.cell_bits} is not allowed with w_bits={self.w_bits}: "
                f"cell_bits must divide w_bits (allowed: {[b for b in (1, 2, 4) if self.w_bits % b == 0]})")
        _check_int("dac_bits", self.dac_bits, 1, self.a_bits)
        if self.a_bits % self.dac_bits:
            raise ValueError(
                f"dac_bits={self.dac_bits} is not allowed with a_bits={self.a_bits}: dac_bits must divide a_bits "
                f"(allowed: {[d for d in range(1, self.a_bits + 1) if self.a_bits % d == 0]})")
        if self.adc_bits is not None:
            _check_int("adc_bits", self.adc_bits, 1, 32, "None (lossless) or an integer in [1, 32]")
        _check_int("adc_shift", self.adc_shift, 0, 31)
        _check_int("cols_per_adc", self.cols_per_adc, 1, self.cols, f"an integer in [1, cols={self.cols}]")
        if self.cols < self.slices + 1:
            raise ValueError(
                f"cols={self.cols} is not allowed: a {self.w_bits}-bit weight in {self.cell_bits}-bit cells takes "
                f"{self.slices} columns plus one reference column, so cols must be >= {self.slices + 1}")

    # --- weight encoding -------------------------------------------------------------
    @property
    def slices(self) -> int:
        """Columns (cells) per weight: ``w_bits // cell_bits``."""
        return self.w_bits // self.cell_bits

    @property
    def weight_offset(self) -> int:
        """Offset-binary bias added to a signed weight before slicing: ``2**(w_bits-1)``."""
        return 1 << (self.w_bits - 1)

    @property
    def outputs(self) -> int:
        """Signed dot products one crossbar produces: ``(cols - 1) // slices``."""
        return (self.cols - 1) // self.slices

    @property
    def ref_col(self) -> int:
        """Index of the reference column (the last physical column)."""
        return self.cols - 1

    @property
    def max_level(self) -> int:
        return (1 << self.cell_bits) - 1

    # --- input side ------------------------------------------------------------------
    @property
    def input_cycles(self) -> int:
        """Bit-serial input cycles per MVM: ``a_bits // dac_bits``."""
        return self.a_bits // self.dac_bits

    @property
    def max_dac(self) -> int:
        return (1 << self.dac_bits) - 1

    # --- ADC -------------------------------------------------------------------------
    @property
    def column_sum_bits(self) -> int:
        """Width of the largest possible column sum (the lossless ADC width)."""
        return max(1, math.ceil(math.log2(self.rows * self.max_level * self.max_dac + 1)))

    @property
    def lossless_adc_bits(self) -> int:
        return self.column_sum_bits

    @property
    def adc_resolution(self) -> int:
        """The ADC width in use: ``adc_bits``, or the lossless width when it is ``None``."""
        return self.lossless_adc_bits if self.adc_bits is None else self.adc_bits

    @property
    def is_lossless(self) -> bool:
        """True when the ADC can never saturate nor round, so the MVM is exact."""
        return self.adc_shift == 0 and self.adc_resolution >= self.lossless_adc_bits

    @property
    def adc_max_code(self) -> int:
        return (1 << self.adc_resolution) - 1

    @property
    def num_adcs(self) -> int:
        """ADCs per crossbar: ``ceil(cols / cols_per_adc)``."""
        return -(-self.cols // self.cols_per_adc)

    @property
    def adc_out_bits(self) -> int:
        """Width of a converted value ``q`` (the code shifted back by ``adc_shift``)."""
        return max(1, min(self.column_sum_bits, self.adc_resolution + self.adc_shift))

    # --- results ---------------------------------------------------------------------
    @property
    def dot_min(self) -> int:
        return -self.weight_offset * self.rows * ((1 << self.a_bits) - 1)

    @property
    def dot_max(self) -> int:
        # A lossy ADC can under-read the reference column, so bound by the full
        # offset-binary sum rather than by the signed weight range.
        return ((1 << self.w_bits) - 1) * self.rows * ((1 << self.a_bits) - 1)

    @property
    def dot_bits(self) -> int:
        """Signed width that holds every dot product the crossbar can produce."""
        return max(self.dot_max.bit_length(), (-self.dot_min - 1).bit_length()) + 1

    @property
    def mvm_clocks(self) -> int:
        """Clocks of the analog part of one MVM: ``input_cycles * cols_per_adc``."""
        return self.input_cycles * self.cols_per_adc

    # --- I/O -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "CrossbarConfig":
        """Build from a mapping; unknown keys are refused with the list of allowed ones."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown crossbar field(s) {unknown}; allowed: {sorted(names)}")
        return cls(**d)

    @classmethod
    def from_toml(cls, path: str | Path) -> "CrossbarConfig":
        """Load from a TOML file: the ``[crossbar]`` table, or the top level if there is none."""
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise ValueError(f"config file {str(path)!r} does not exist") from None
        except tomllib.TOMLDecodeError as e:
            raise ValueError(f"config file {str(path)!r} is not valid TOML: {e}") from None
        return cls.from_dict(data.get("crossbar", data))
