"""Exceptions the CLI reports as one line (no traceback)."""


class ToolError(RuntimeError):
    """An external tool (simulator, Yosys, nextpnr) is missing or failed; the message says
    which, why, and ends with the relevant log tail."""
