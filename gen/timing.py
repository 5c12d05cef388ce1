"""Timing constants of the hardware blocks: each defined once, here.

The RTL generators in ``hw`` are *built from* these numbers (a pipeline of
``CROSSBAR_PIPELINE_CLOCKS`` registers, a post stage of ``POST_CLOCKS`` registers, ...),
and the schedule (``gen.schedule``) and the cycle model (``gen.perf``) read the same
numbers, so a change here changes the RTL and the prediction together.
"""
from __future__ import annotations

from gen.config import CrossbarConfig
from gen.emulation import (EMU_PIPELINE_CLOCKS, EMU_WORD_BITS, SERIAL_POST_PIPELINE_CLOCKS, SERIAL_SUM_PIPELINE_CLOCKS,
                           EmulatedGeometry)

__all__ = ["CROSSBAR_PIPELINE_CLOCKS", "FM_READ_LATENCY", "POST_CLOCKS", "RAW_OUTPUT_BITS",
           "adder_tree_clocks", "crossbar_latency", "emulated_crossbar_host_clocks", "emulated_row_write_host_clocks",
           "serial_post_host_clocks", "serial_sum_host_clocks",
           "transfer_clocks", "REORDER_LATENCY", "reorder_clocks"]

#: Pipeline registers a conversion passes through after its column is selected (see
#: ``hw.crossbar.Crossbar``): products, partial row sums, ADC code, routed/shifted term,
#: accumulator.
CROSSBAR_PIPELINE_CLOCKS = 5

#: Clocks between a feature-map buffer read and its data (synchronous BRAM read port).
FM_READ_LATENCY = 1

#: Post-processing registers of a layer engine: ``acc + bias``, ``* M``, round/shift/clamp.
POST_CLOCKS = 3

#: Width of a raw (not requantized) output value: the last layer's int32 accumulators.
RAW_OUTPUT_BITS = 32

#: Clocks a raster reorder (``hw.links.RasterReorder``) adds in front of an image's first
#: pixel: from the edge its last step is written, one to issue the pixel's read of the order
#: table, one to read the pixel, one to hand it on (the RTL is built from this number: more
#: than 3 adds output registers).
REORDER_LATENCY = 3


def crossbar_latency(cfg: CrossbarConfig) -> int:
    """Clocks from the edge a crossbar accepts an input vector to the edge its result can
    be taken: ``cfg.conversion_clocks`` conversions (one per clock per ADC) plus the
    ``CROSSBAR_PIPELINE_CLOCKS`` registers behind them. The crossbar takes its next
    vector on the edge it hands this one over, so this is also its initiation interval."""
    return cfg.conversion_clocks + CROSSBAR_PIPELINE_CLOCKS


def emulated_crossbar_host_clocks(cfg: CrossbarConfig, word_bits: int = EMU_WORD_BITS,
                                  parallel_cycles: int | None = None, n_xbars: int = 1) -> int:
    """Host (FPGA) clocks from the edge ``hw.emu_crossbar.EmulatedCrossbar`` (a bank of
    ``n_xbars`` sharing one datapath) accepts its input vectors to the edge its results can
    be taken (also its initiation interval)::

        n_xbars · (outputs·slices + 1) · ceil(rows / rows_per_word) · passes + EMU_PIPELINE_CLOCKS

    one block-RAM word (``rows_per_word`` cells of one column) read per clock, every stored
    column's words once per pass, ``parallel_cycles`` input cycles per read (``None``: all, one
    pass; ``gen.emulation``). A decoupled-clock build still presents :func:`crossbar_latency`
    target clocks per MVM."""
    return n_xbars * EmulatedGeometry(cfg, word_bits, parallel_cycles).reads + EMU_PIPELINE_CLOCKS


def serial_sum_host_clocks(steps: int) -> int:
    """Host clocks ``hw.decoupled.SerialAccumulate`` holds the target clock on the edge the
    crossbars hand their results over: one per step of its sweep
    (``gen.emulation.serial_sum_steps``) and its pipeline."""
    return steps + SERIAL_SUM_PIPELINE_CLOCKS


def serial_post_host_clocks(outputs: int) -> int:
    """Host clocks ``hw.decoupled.SerialPost`` holds the target clock on a post stage's last
    clock: one per output (replicas × channels) and its pipeline."""
    return outputs + SERIAL_POST_PIPELINE_CLOCKS


def emulated_row_write_host_clocks(cfg: CrossbarConfig, word_bits: int = EMU_WORD_BITS) -> int:
    """Host clocks ``hw.emu_crossbar.EmulatedCrossbar`` is busy writing one row: a
    read-modify-write of the row's word in every stored column, one column per clock, plus
    the write of the last (``gen.emulation``)."""
    return len(EmulatedGeometry(cfg, word_bits).column_order) + 1


def adder_tree_clocks(addends: int) -> int:
    """Clocks of a partial-sum adder tree: ``ceil(log2(addends))``, one per level of two-input
    adders (``hw.layer.Accumulate`` builds it as a multicycle path of that many clocks)."""
    return max(0, (addends - 1).bit_length())


def reorder_clocks(pixels: int, pace: int) -> int:
    """Clocks a duplicated stage's raster reorder adds to its pixel path: the image waits
    until its last step is in, then leaves in raster order, one pixel every ``pace`` clocks
    (``gen.chipplan.ChipPlan.reorder_pace``): ``REORDER_LATENCY + (pixels - 1) * pace``."""
    return REORDER_LATENCY + (pixels - 1) * pace


def transfer_clocks(bits: int, bus_bits: int) -> int:
    """Clocks to move ``bits`` over a bus of ``bus_bits`` bits per clock: ``ceil(bits / bus_bits)``."""
    return -(-bits // bus_bits) if bits > 0 else 0
