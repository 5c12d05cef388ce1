"""Progress on a terminal for runs that take more than a few seconds.

:class:`Progress` prints one line per stage (``[  12.3 s] building the chip with
Verilator``) on standard error, with the time since the run began; it is silent when
told to be (``--json``) or when standard error is not a terminal, so pipes, CI logs and
machine-readable output stay clean. Call it with the stage's words; ``sim.runner`` takes it
as a plain callable, so the lower layers need not know about terminals.
"""
from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["Progress"]


class Progress:
    """A stage-line printer (module docstring). ``enabled``: ``None`` = only on a terminal."""

    def __init__(self, enabled: bool | None = None, stream: TextIO | None = None):
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.t0 = time.perf_counter()

    @classmethod
    def for_args(cls, args) -> "Progress":
        """Quiet under ``--json``; otherwise on a terminal only."""
        return cls(False if getattr(args, "json", False) else None)

    def __call__(self, stage: str) -> None:
        if self.enabled:
            print(f"[{time.perf_counter() - self.t0:7.1f} s] {stage}", file=self.stream, flush=True)
