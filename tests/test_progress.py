"""flow.progress: stage lines with elapsed time on a terminal, nothing otherwise."""
import io
import types

from flow.progress import Progress


class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_lines_on_a_terminal_only():
    tty, pipe = _Tty(), io.StringIO()
    Progress(stream=tty)("building")
    Progress(stream=pipe)("building")
    assert tty.getvalue().endswith("s] building\n") and tty.getvalue().startswith("[")
    assert pipe.getvalue() == ""


def test_json_silences_it():
    p = Progress.for_args(types.SimpleNamespace(json=True))
    assert not p.enabled
