"""Cycle model: the one place where clock counts are computed (DESIGN.md §5).

Every formula is named after the hardware step it times and is at clock granularity.
The RTL testbenches assert ``measured == predicted`` against these functions.
"""
from __future__ import annotations

from gen.config import CrossbarConfig

#: Pipeline registers a crossbar MVM passes through after its analog steps: the ADC
#: output latch and the shift-add accumulator (see ``hw.crossbar.Crossbar``).
CROSSBAR_PIPELINE_CLOCKS = 2


def crossbar_latency(cfg: CrossbarConfig) -> int:
    """Clocks from the edge a crossbar accepts an input vector to the edge its result can
    be taken: ``input_cycles * cols_per_adc`` conversions, plus the ADC latch and the
    shift-add register. The crossbar takes its next vector on the edge it hands this one
    over, so this is also its initiation interval under no back-pressure."""
    return cfg.mvm_clocks + CROSSBAR_PIPELINE_CLOCKS
