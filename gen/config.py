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


def _read_toml(path: str | Path) -> dict[str, Any]:
    """Parse a TOML config file; a missing or malformed file is a ``ValueError`` naming it."""
    path = Path(path)
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"config file {str(path)!r} does not exist") from None
    except IsADirectoryError:
        raise ValueError(f"config file {str(path)!r} is a folder, not a TOML file") from None
    except UnicodeDecodeError:
        raise ValueError(f"config file {str(path)!r} is not a text (UTF-8 TOML) file") from None
    except OSError as e:
        raise ValueError(f"config file {str(path)!r} cannot be read: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"config file {str(path)!r} is not valid TOML: {e}") from None


def _table(d: Any, what: str) -> dict[str, Any]:
    """``d`` as a mapping, or a ``ValueError`` saying a ``[what]`` table is expected."""
    if not isinstance(d, dict):
        raise ValueError(f"{what} must be a table of key = value pairs ([{what}] in TOML), got {d!r}")
    return d


def _refuse_unknown(cls, d: dict[str, Any], what: str) -> None:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ValueError(f"unknown {what} field(s) {unknown}; allowed: {sorted(names)}")


def _knob(default, help_: str):
    """A configuration field that is a user knob: its default and its one-line help, which
    every command's flag for it reads (``flow.commands._common.add_config_flags``)."""
    return dataclasses.field(default=default, metadata={"help": help_})


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
        g_frac_bits: fractional bits ``F`` of a cell's conductance (DESIGN.md §3 "Non-ideal
            cells"): cells hold ``g`` in units of ``2**-F`` of one level, ``cell_bits + F``
            bits each, and the ADC drops the ``F`` bits again. 0 (ideal levels) by default;
            ``F > 0`` lets a device model express programming variation and drift.
    """

    rows: int = _knob(32, "cell rows")
    cols: int = _knob(32, "cell columns, the reference column included")
    cell_bits: int = _knob(2, "bits per cell: 1, 2 or 4 (must divide w_bits)")
    w_bits: int = _knob(8, "signed weight bits")
    a_bits: int = _knob(8, "unsigned activation bits")
    dac_bits: int = _knob(1, "input bits per input cycle (must divide a_bits)")
    adc_bits: int | None = _knob(None, "ADC resolution, bits (none: the lossless width)")
    adc_shift: int = _knob(0, "coarse ADC step 2**S")
    cols_per_adc: int = _knob(8, "columns sharing one ADC")
    g_frac_bits: int = _knob(0, "fraction bits F of a cell's conductance (non-ideal cells)")

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
        # F <= 8 keeps a cell (cell_bits + F <= 12 bits) and every column sum small; finer
        # steps than 1/256 of a level are far below any RRAM programming accuracy.
        _check_int("g_frac_bits", self.g_frac_bits, 0, 8)
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

    @property
    def g_bits(self) -> int:
        """Bits of one cell's conductance ``g``: ``cell_bits + g_frac_bits``."""
        return self.cell_bits + self.g_frac_bits

    @property
    def g_max(self) -> int:
        """Largest conductance a cell can hold: ``2**(cell_bits + g_frac_bits) - 1``."""
        return (1 << self.g_bits) - 1

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
    def column_sum_max(self) -> int:
        """Largest column sum ``S`` (in units of ``2**-g_frac_bits``): every cell at ``g_max``, every input bit set."""
        return self.rows * self.g_max * self.max_dac

    @property
    def column_max(self) -> int:
        """Largest lossless converted value ``S >> g_frac_bits`` of one column (any cell contents)."""
        return self.column_sum_max >> self.g_frac_bits

    @property
    def column_sum_bits(self) -> int:
        """Width of the largest ``S >> g_frac_bits`` (the lossless ADC width; with ``F = 0``
        ``ceil(log2(rows·(2**cell_bits−1)·(2**dac_bits−1) + 1))``)."""
        return max(1, self.column_max.bit_length())

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
    def column_acc_max(self) -> int:
        """Largest shift-added value ``P[c]`` of one column, for any cell contents (a
        stuck-at-1 or over-programmed cell reads up to ``g_max``, the reference column included)."""
        return self.column_max * (((1 << self.a_bits) - 1) // self.max_dac)

    @property
    def dot_min(self) -> int:
        return -self.weight_offset * self.column_acc_max

    @property
    def dot_max(self) -> int:
        # A lossy ADC can under-read the reference column and a device model can put any
        # conductance in any cell, so bound by every slice column at its largest reading.
        return self.column_acc_max * (((1 << self.w_bits) - 1) // self.max_level)

    @property
    def dot_bits(self) -> int:
        """Signed width that holds every dot product the crossbar can produce."""
        return max(self.dot_max.bit_length(), (-self.dot_min - 1).bit_length()) + 1

    @property
    def conversion_clocks(self) -> int:
        """ADC conversion clocks of one MVM (one column per ADC per clock): ``input_cycles * cols_per_adc``."""
        return self.input_cycles * self.cols_per_adc

    # --- I/O -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "CrossbarConfig":
        """Build from a mapping; unknown keys are refused with the list of allowed ones."""
        _refuse_unknown(cls, _table(d, "crossbar"), "crossbar")
        return cls(**d)

    @classmethod
    def from_toml(cls, path: str | Path) -> "CrossbarConfig":
        """Load from a TOML file: the ``[crossbar]`` table, or the top level if there is none."""
        data = _read_toml(path)
        return cls.from_dict(data.get("crossbar", data))


def _paper_crossbar() -> "CrossbarConfig":
    return CrossbarConfig(rows=128, cols=128, cell_bits=1, w_bits=8, a_bits=8, dac_bits=1, adc_bits=None,
                          adc_shift=0, cols_per_adc=8)


#: Where the shipped presets live (chip presets and the energy table).
PRESETS = Path(__file__).parent / "presets"


def chip_presets() -> list[str]:
    """Names of the shipped chip presets: the TOML files in ``gen/presets`` with a ``[chip]``
    table (``energy.toml`` is the energy/area table, not a chip)."""
    return sorted(q.stem for q in PRESETS.glob("*.toml")
                  if any(line.strip() == "[chip]" for line in q.read_text().splitlines()))


@dataclass(frozen=True)
class ChipConfig:
    """The whole chip: crossbar (subarray) config plus the hierarchy chip → tiles → PEs → subarrays.

    The defaults mirror the seed paper's case study (Peng, Liu, Yu, TCAS-I 2020, run with
    DNN+NeuroSim): RRAM 128×128 subarrays, 8-bit weights and activations, 1 bit per cell,
    1-bit (bit-serial) inputs, 8 columns per ADC (NeuroSim ``numColMuxed``), 1 GHz clock
    (NeuroSim ``clkFreq``), 3×3 = 9 PEs per tile (the novel mapping's tile for 3×3 kernels).
    The ADC is lossless here (NeuroSim's accuracy model uses 5 bits; the width does not
    change any clock count, and a lossless ADC keeps both mappings bit-exact).
    The subarrays per PE, buffer sizes and bus widths are **pimgen's choices** (the papers
    do not publish them): see ``gen/presets/paper.toml``.

    Attributes:
        crossbar: the subarray (``CrossbarConfig``).
        subarrays_per_pe: subarrays in one PE (they share the PE buffer and the PE bus).
        pes_per_tile: PEs in one tile; a novel-mapped layer uses ``K*K`` of them (one per
            kernel position), so the novel mapping needs ``K*K <= pes_per_tile``.
        tiles: tiles on the chip, or ``None`` to size the chip to the network (reported).
        global_buffer_kib, tile_buffer_kib, pe_buffer_kib: SRAM buffer sizes (reported;
            the tile buffer holds the novel mapping's ``K-1`` line buffers).
        global_bus_bits: bits per clock of the global bus (global buffer ↔ a layer's tiles).
        tile_bus_bits: bits per clock of a tile bus (tile buffer ↔ the tile's PEs).
        pe_bus_bits: bits per clock of a PE bus (PE buffer ↔ its subarrays) and of the
            PE-to-PE neighbour links of the novel mapping.
        clock_mhz: clock frequency, used only to report time and images/s.
    """

    crossbar: CrossbarConfig = dataclasses.field(default_factory=_paper_crossbar)
    subarrays_per_pe: int = _knob(4, "subarrays (crossbars) per PE")
    pes_per_tile: int = _knob(9, "PEs per tile (the novel mapping needs K*K of them)")
    tiles: int | None = _knob(None, "tiles on the chip (none: as many as the network needs)")
    global_buffer_kib: int = _knob(1024, "global buffer KiB (reported)")
    tile_buffer_kib: int = _knob(64, "tile buffer KiB (reported)")
    pe_buffer_kib: int = _knob(4, "PE buffer KiB (reported)")
    global_bus_bits: int = _knob(256, "global bus bits per clock")
    tile_bus_bits: int = _knob(256, "tile bus bits per clock")
    pe_bus_bits: int = _knob(128, "PE bus and PE-to-PE link bits per clock")
    clock_mhz: int = _knob(1000, "clock MHz, for reporting time and images/s")

    def __post_init__(self) -> None:
        if not isinstance(self.crossbar, CrossbarConfig):
            raise ValueError(f"crossbar={self.crossbar!r} is not allowed: crossbar must be a CrossbarConfig")
        _check_int("subarrays_per_pe", self.subarrays_per_pe, 1, 4096)
        _check_int("pes_per_tile", self.pes_per_tile, 1, 4096)
        if self.tiles is not None:
            _check_int("tiles", self.tiles, 1, None, "None (sized to the network) or an integer >= 1")
        _check_int("global_buffer_kib", self.global_buffer_kib, 1, 1 << 20)
        _check_int("tile_buffer_kib", self.tile_buffer_kib, 1, 1 << 20)
        _check_int("pe_buffer_kib", self.pe_buffer_kib, 1, 1 << 20)
        _check_int("global_bus_bits", self.global_bus_bits, 1, 1 << 16)
        _check_int("tile_bus_bits", self.tile_bus_bits, 1, 1 << 16)
        _check_int("pe_bus_bits", self.pe_bus_bits, 1, 1 << 16)
        _check_int("clock_mhz", self.clock_mhz, 1, 100_000)

    # --- derived ---------------------------------------------------------------------
    @property
    def subarrays_per_tile(self) -> int:
        return self.subarrays_per_pe * self.pes_per_tile

    @property
    def weights_per_subarray(self) -> int:
        """Signed weights one subarray holds: ``rows * outputs``."""
        return self.crossbar.rows * self.crossbar.outputs

    @property
    def clock_hz(self) -> int:
        return self.clock_mhz * 1_000_000

    @property
    def max_novel_kernel(self) -> int:
        """Largest K whose ``K*K`` kernel positions fit one tile's PEs."""
        return math.isqrt(self.pes_per_tile)

    # --- I/O -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if d["tiles"] is None:
            del d["tiles"]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ChipConfig":
        """Build from a mapping (``crossbar`` a nested mapping); unknown keys are refused."""
        d = dict(_table(d, "chip"))
        _refuse_unknown(cls, d, "chip")
        if isinstance(d.get("crossbar"), dict):
            d["crossbar"] = CrossbarConfig.from_dict(d["crossbar"])
        return cls(**d)

    @classmethod
    def from_toml(cls, path: str | Path) -> "ChipConfig":
        """Load from TOML: a ``[chip]`` table (or the top level) plus a ``[crossbar]`` table."""
        data = _read_toml(path)
        chip = dict(_table(data.get("chip", {k: v for k, v in data.items() if k != "crossbar"}), "chip"))
        if "crossbar" in data:
            chip["crossbar"] = data["crossbar"]
        return cls.from_dict(chip)

    @classmethod
    def preset(cls, name: str) -> "ChipConfig":
        """A chip preset shipped in ``gen/presets/<name>.toml`` (``paper``: the seed paper's case
        study; ``small``: the default of ``build`` and ``demo``), or a chip TOML file given by path
        (a name ending in ``.toml``)."""
        if name.endswith(".toml"):
            return cls.from_toml(name)
        avail = chip_presets()
        if name not in avail:
            raise ValueError(f"unknown preset {name!r}: use one of {', '.join(avail)} or a chip TOML file "
                             f"(NAME.toml)")
        return cls.from_toml(PRESETS / f"{name}.toml")
