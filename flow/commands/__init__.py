"""One module per ``pimgen`` sub-command; each defines ``HELP``, ``add_arguments(p)`` and ``run(args) -> int``."""
