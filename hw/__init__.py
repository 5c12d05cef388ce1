"""pimgen hardware: Amaranth ``wiring.Component`` generators (crossbar, PE, buffers, ...)."""
