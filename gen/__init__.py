"""pimgen front end: configs, networks, importers, mapping, cycle model and topology (pure: no hw, sim, flow, amaranth or cocotb)."""
