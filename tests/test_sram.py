"""hw.sram: a deep memory built from RAM macro tiles behaves clock for clock as one
lib.memory.Memory, and the image FIFO on it as Amaranth's SyncFIFOBuffered (both oracles are
Amaranth's own, simulated side by side with the block under test on the same random inputs);
the Verilog holds one macro module however many tiles use it."""
import gc
import random
import warnings

import pytest
from amaranth.hdl import Module, Signal
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory

from hw.links import ImageFIFO
from hw.sram import TiledMemory

from conftest import run_amaranth


@pytest.mark.parametrize("width, depth, n_read, macro", [
    (20, 13, 2, (4, 8)),       # 4 rows (the last part-used) x 3 columns (the last part-used)
    (8, 16, 1, (8, 8)),        # 2 rows x 1 column, exact fit
    (12, 6, 1, (8, 8)),        # no deeper than a macro: one memory of its own
])
def test_tiled_memory_is_one_memory(width, depth, n_read, macro):
    m = Module()
    m.submodules.dut = dut = TiledMemory(width, depth, n_read, shared=False, macro=macro)
    m.submodules.ref = ref = Memory(shape=width, depth=depth, init=[])
    ce = Signal(init=1)
    wp = ref.write_port()
    rps = [ref.read_port() for _ in range(n_read)]
    m.d.comb += [dut.ce.eq(ce), wp.en.eq(dut.wr.en & ce), wp.addr.eq(dut.wr.addr), wp.data.eq(dut.wr.data)]
    for k, rp in enumerate(rps):
        m.d.comb += [rp.addr.eq(dut.rd[k].addr), rp.en.eq(dut.rd[k].en & ce)]
    rng = random.Random(width * depth)

    async def bench(ctx):
        for _ in range(600):
            ctx.set(ce, rng.random() < 0.8)
            ctx.set(dut.wr.en, rng.random() < 0.5)
            ctx.set(dut.wr.addr, rng.randrange(depth))
            ctx.set(dut.wr.data, rng.getrandbits(width))
            for k in range(n_read):
                ctx.set(dut.rd[k].en, rng.random() < 0.7)
                ctx.set(dut.rd[k].addr, rng.randrange(depth))
            await ctx.tick()
            for k, rp in enumerate(rps):
                assert ctx.get(dut.rd[k].data) == ctx.get(rp.data)

    run_amaranth(m, bench)


@pytest.mark.parametrize("width, depth, macro", [(12, 11, (4, 8)), (9, 3, (4, 8)), (16, 40, (8, 16))])
def test_image_fifo_is_sync_fifo_buffered(width, depth, macro):
    m = Module()
    m.submodules.dut = dut = ImageFIFO(width, depth, shared=False, macro=macro)
    m.submodules.ref = ref = SyncFIFOBuffered(width=width, depth=depth)
    m.d.comb += [ref.w_en.eq(dut.w.valid), ref.w_data.eq(dut.w.payload), ref.r_en.eq(dut.r.ready)]
    rng = random.Random(depth)

    async def bench(ctx):
        taken = 0
        for n in range(1500):
            fill = n % 300 < 150        # phases that fill and that drain the FIFO
            ctx.set(dut.w.valid, rng.random() < (0.8 if fill else 0.3))
            ctx.set(dut.w.payload, rng.getrandbits(width))
            ctx.set(dut.r.ready, rng.random() < (0.3 if fill else 0.8))
            await ctx.delay(1e-9)
            assert ctx.get(dut.w.ready) == ctx.get(ref.w_rdy)
            assert ctx.get(dut.r.valid) == ctx.get(ref.r_rdy)
            if ctx.get(dut.r.valid):
                assert ctx.get(dut.r.payload) == ctx.get(ref.r_data)
                taken += ctx.get(dut.r.ready)
            await ctx.tick()
        assert taken > 100

    run_amaranth(m, bench)


def test_tiled_memory_verilog_has_one_macro_module():
    from flow.emit import to_verilog
    text = to_verilog(ImageFIFO(100, 70, macro=(16, 32)), "fifo")
    # 69 words: 5 rows of 16 words, 4 columns of 32 bits, one shared module
    assert text.count("module pimgen_ram_16x32_r1(") == 1
    assert text.count("pimgen_ram_16x32_r1 ram_r") == 5 * 4
    assert "storage" not in text and text.count("initial begin") == 1


def test_refusals():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")         # the refused components are never elaborated
        with pytest.raises(ValueError, match="12 words deep: it must be a power of two"):
            TiledMemory(8, 40, macro=(12, 8))
        with pytest.raises(ValueError, match="depth 1: at least 2 words are allowed"):
            ImageFIFO(8, 1)
        gc.collect()
