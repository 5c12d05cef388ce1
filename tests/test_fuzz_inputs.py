"""Bad input, everywhere: a hypothesis fuzz over every file format pimgen reads.

Each target mutates a valid input (TOML configs, layer specs, NeuroSim CSV, ONNX, ``.pimgen``,
build folders) or makes up a random one, feeds it to the parser (and, when the parser accepts
it, to the first consumer), and requires one of two outcomes: a clean error — ``ValueError``
(one line) from the library, or exit status 2 with one stderr line from the CLI — or a valid
result. Any other exception is a traceback the user would see, and fails the test.

Counts of inputs tried and outcomes go to stdout at the end of the module (``pytest -s``) and,
with ``PIMGEN_FUZZ_REPORT=FILE``, to a JSON file. ``PIMGEN_FUZZ_RECORD=1`` records tracebacks
instead of failing (to measure a tree before fixes); ``PIMGEN_FUZZ_SCALE`` multiplies the number
of examples (default 1: the file runs in well under a minute).
"""
from __future__ import annotations

import contextlib
import io
import json
import math
import os
import random
import traceback
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gen.config import ChipConfig, CrossbarConfig

ROOT = Path(__file__).resolve().parents[1]
SCALE = float(os.environ.get("PIMGEN_FUZZ_SCALE", "1"))
RECORD = os.environ.get("PIMGEN_FUZZ_RECORD") == "1"
COUNTS: dict[str, Counter] = defaultdict(Counter)
EXAMPLES: dict[str, list] = defaultdict(list)


def fuzz(n: int):
    return settings(max_examples=max(1, int(n * SCALE)), deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module", autouse=True)
def _report():
    yield
    tot = Counter()
    for c in COUNTS.values():
        tot.update(c)
    lines = [f"{k:16} tried {sum(c.values()):5}  clean {c['clean']:5}  valid {c['valid']:5}  "
             f"traceback {c['traceback']:3}" for k, c in sorted(COUNTS.items())]
    lines.append(f"{'total':16} tried {sum(tot.values()):5}  clean {tot['clean']:5}  valid {tot['valid']:5}  "
                 f"traceback {tot['traceback']:3}")
    print("\nfuzz outcomes\n" + "\n".join(lines))
    if os.environ.get("PIMGEN_FUZZ_REPORT"):
        Path(os.environ["PIMGEN_FUZZ_REPORT"]).write_text(json.dumps(
            {"counts": {k: dict(c) for k, c in COUNTS.items()}, "tracebacks": dict(EXAMPLES)}, indent=1,
            default=str))


def check(target: str, fn, what=None) -> str:
    """Run ``fn()``: a ``ValueError`` with a one-line message is clean, a return is valid, anything
    else is a traceback (recorded, and a failure unless ``PIMGEN_FUZZ_RECORD``)."""
    try:
        fn()
    except ValueError as e:
        msg = str(e)
        if msg and "\n" not in msg:
            COUNTS[target]["clean"] += 1
            return "clean"
        err = f"ValueError with a {'multi-line' if msg else 'empty'} message: {msg[:300]!r}"
    except Exception as e:  # noqa: BLE001 - the point of the test
        err = "".join(traceback.format_exception_only(type(e), e)).strip()[:300] + " at " + \
            traceback.extract_tb(e.__traceback__)[-1].filename.split("/work/main/")[-1] + ":" + \
            str(traceback.extract_tb(e.__traceback__)[-1].lineno)
    else:
        COUNTS[target]["valid"] += 1
        return "valid"
    COUNTS[target]["traceback"] += 1
    EXAMPLES[target].append([err, repr(what)[:400]])
    if not RECORD:
        pytest.fail(f"{target}: {err}\ninput: {what!r}"[:2000])
    return "traceback"


def cli(target: str, argv: list[str]) -> str:
    """``pimgen ARGV`` in-process: exit 0, or exit 2 with exactly one stderr line."""
    from flow.cli import main

    def run():
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main(argv)
        lines = err.getvalue().strip().splitlines()
        if rc == 0:
            return
        if rc == 2 and len(lines) == 1:
            raise ValueError(lines[0])
        raise AssertionError(f"exit {rc} with stderr {err.getvalue()[-600:]!r}")
    return check(target, run, argv)


# --- value strategies --------------------------------------------------------------------------
scalars = st.one_of(st.integers(-5, 70), st.integers(-2**70, 2**70), st.floats(allow_nan=True, allow_infinity=True),
                    st.booleans(), st.text(max_size=8))
values = st.recursive(scalars, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c,
                                                                                     max_size=3), max_leaves=5)


def toml_value(v) -> str:
    if v is None:
        return '""'
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(x)}" for k, x in v.items()) + "}"


def to_toml(d: dict) -> str:
    top = [f"{json.dumps(k)} = {toml_value(v)}" for k, v in d.items() if not isinstance(v, dict)]
    tabs = [f"[{json.dumps(k)}]\n" + "".join(f"{json.dumps(kk)} = {toml_value(vv)}\n" for kk, vv in v.items())
            for k, v in d.items() if isinstance(v, dict)]
    return "\n".join(top) + "\n" + "\n".join(tabs)


def damage(draw, text: str, one_in: int) -> str:
    """One time in ``one_in + 1``: a few characters of ``text`` replaced by random ones."""
    if draw(st.integers(0, one_in)) == 0:
        i = draw(st.integers(0, len(text)))
        text = text[:i] + draw(st.text(max_size=6)) + text[i + draw(st.integers(0, 6)):]
    return text


def write_tmp(factory, name: str, text: str) -> Path:
    p = factory.mktemp("fuzz") / name
    p.write_bytes(text.encode("utf-8", "replace"))
    return p


def small_preset() -> dict:
    c = ChipConfig.preset("small").to_dict()
    xb = c.pop("crossbar")
    return {"crossbar": xb, "chip": c}


# --- 1. TOML configs ---------------------------------------------------------------------------
@st.composite
def config_texts(draw):
    d = small_preset()
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["set", "set", "set", "delete", "new", "table", "flat"]))
        tab = draw(st.sampled_from(["crossbar", "chip"]))
        if not isinstance(d.get(tab), dict):
            d[tab] = {}
        keys = sorted(d[tab]) or ["rows"]
        if op == "set":
            d[tab][draw(st.sampled_from(keys))] = draw(values)
        elif op == "delete":
            d[tab].pop(draw(st.sampled_from(keys)), None)
        elif op == "new":
            d[tab][draw(st.text(min_size=1, max_size=8))] = draw(scalars)
        elif op == "table":
            d[tab] = draw(scalars)
        else:                                   # crossbar keys at the top level
            xb = d.pop("crossbar", {})
            d = {**(xb if isinstance(xb, dict) else {}), **{k: v for k, v in d.items()}}
    return damage(draw, to_toml(d), 9)


@fuzz(250)
@given(config_texts())
def test_fuzz_toml_configs(tmp_path_factory, text):
    from gen.mapping import map_network
    from gen.network import zoo
    p = write_tmp(tmp_path_factory, "c.toml", text)

    def run():
        chip = ChipConfig.from_toml(p)
        map_network(zoo("digits"), chip, mapping="novel")
    check("toml:ChipConfig", run, text)
    check("toml:Crossbar", lambda: CrossbarConfig.from_toml(p), text)


@fuzz(40)
@given(config_texts())
def test_fuzz_toml_cli(tmp_path_factory, text):
    p = write_tmp(tmp_path_factory, "c.toml", text)
    cli("cli:map --chip-config", ["map", "digits", "--chip-config", str(p), "--json"])


# --- 2. layer specs ----------------------------------------------------------------------------
VALID_SPECS = ["conv Cin=8 Cout=16 K=3 H=8 W=8 stride=1 pad=1", "fc in=64 out=10", "conv Cin=3 Cout=4 K=1 H=4 W=4",
               "conv Cin=2 Cout=8 K=3 H=6 W=6 stride=2 pad=0"]
tok_values = st.one_of(st.integers(-3, 20).map(str), st.integers(-2**40, 2**40).map(str), st.text(max_size=4),
                       st.sampled_from(["", "1.5", "1e3", "0x10", "٣", "+3", "-0", "nan", "3 "]))


@st.composite
def layer_specs(draw):
    if draw(st.integers(0, 4)) == 0:
        return draw(st.text(max_size=40))
    toks = draw(st.sampled_from(VALID_SPECS)).split()
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["value", "value", "drop", "dup", "key", "kind", "junk", "case"]))
        i = draw(st.integers(0, len(toks) - 1)) if toks else 0
        if not toks:
            break
        if op == "value" and "=" in toks[i]:
            toks[i] = toks[i].split("=")[0] + "=" + draw(tok_values)
        elif op == "drop":
            toks.pop(i)
        elif op == "dup":
            toks.insert(i, toks[i])
        elif op == "key" and "=" in toks[i]:
            toks[i] = draw(st.text(max_size=4)) + "=" + toks[i].split("=")[1]
        elif op == "kind":
            toks[0] = draw(st.sampled_from(["conv", "fc", "CONV", "pool", "", "linear"]))
        elif op == "junk":
            toks.insert(i, draw(st.text(min_size=1, max_size=5)))
        elif op == "case":
            toks[i] = toks[i].swapcase()
    return " ".join(toks)


@fuzz(400)
@given(layer_specs())
def test_fuzz_layer_specs(spec):
    from flow.layer_check import LayerDesign
    from gen.layerspec import parse_layer_spec
    chip = ChipConfig.preset("small")

    def run():
        s = parse_layer_spec(spec)
        LayerDesign(s, chip, "novel")            # plan, weights, schedule: no RTL
    check("layerspec", run, spec)


# --- 3. NeuroSim CSV ---------------------------------------------------------------------------
VGG8 = ("32,32,3,3,3,128,0,1\n32,32,128,3,3,128,1,1\n16,16,128,3,3,256,0,1\n16,16,256,3,3,256,1,1\n"
        "8,8,256,3,3,512,0,1\n8,8,512,3,3,512,1,1\n1,1,8192,1,1,1024,0,1\n1,1,1024,1,1,10,0,1\n")
DIGITS = "8,8,1,3,3,8,1,1\n4,4,8,3,3,16,1,1\n1,1,64,1,1,10,0,1\n"
field_values = st.one_of(st.integers(-2, 600).map(str), st.integers(-2**64, 2**64).map(str), st.text(max_size=5),
                         st.sampled_from(["", "1.0", "2.5", "1e30", "inf", "nan", "-0", " 3 ", "0x3"]))


@st.composite
def csv_texts(draw):
    rows = [r.split(",") for r in draw(st.sampled_from([VGG8, DIGITS])).splitlines()]
    for _ in range(draw(st.integers(1, 3))):
        r = draw(st.integers(0, len(rows) - 1)) if rows else 0
        if not rows:
            break
        op = draw(st.sampled_from(["garble", "garble", "set", "drop", "dupf", "droprow", "duprow", "swap", "bytes"]))
        f = draw(st.integers(0, max(0, len(rows[r]) - 1)))
        if op == "garble" and rows[r]:
            rows[r][f] = draw(field_values)
        elif op == "set" and rows[r]:
            rows[r][f] = str(draw(st.integers(0, 9)))
        elif op == "drop" and rows[r]:
            rows[r].pop(f)
        elif op == "dupf" and rows[r]:
            rows[r].insert(f, rows[r][f])
        elif op == "droprow":
            rows.pop(r)
        elif op == "duprow":
            rows.insert(r, list(rows[r]))
        elif op == "swap":
            j = draw(st.integers(0, len(rows) - 1))
            rows[r], rows[j] = rows[j], rows[r]
        elif op == "bytes":
            rows[r].append(draw(st.text(max_size=4)))
    return "\n".join(",".join(r) for r in rows) + "\n"


@fuzz(400)
@given(csv_texts())
def test_fuzz_neurosim_csv(text):
    from gen.mapping import map_network
    from gen.neurosim import parse_neurosim_csv
    chip = ChipConfig.preset("paper")

    def run():
        net = parse_neurosim_csv(text)
        map_network(net, chip, mapping="novel")
    check("csv", run, text)


@fuzz(40)
@given(csv_texts())
def test_fuzz_neurosim_cli(tmp_path_factory, text):
    p = write_tmp(tmp_path_factory, "net.csv", text)
    cli("cli:map CSV", ["map", str(p), "--json"])


# --- 4. ONNX -----------------------------------------------------------------------------------
def small_onnx():
    """x[1,1,8,8] -> Conv 3x3 (4) -> Relu -> MaxPool 2 -> Flatten -> Gemm (10)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(0, .3, (4, 1, 3, 3)).astype(np.float32), "w1"),
             numpy_helper.from_array(rng.normal(0, .1, 4).astype(np.float32), "b1"),
             numpy_helper.from_array(rng.normal(0, .3, (10, 64)).astype(np.float32), "w2"),
             numpy_helper.from_array(rng.normal(0, .1, 10).astype(np.float32), "b2")]
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c"], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                              strides=[1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("MaxPool", ["r"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Flatten", ["p"], ["f"], name="flat", axis=1),
             helper.make_node("Gemm", ["f", "w2", "b2"], ["y"], name="fc", transB=1)]
    g = helper.make_graph(nodes, "small", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


attr_values = st.one_of(st.integers(-3, 9), st.lists(st.integers(-3, 9), min_size=1, max_size=5), st.floats(-4, 4),
                        st.text(max_size=3))


@st.composite
def onnx_bytes(draw):
    import onnx
    from onnx import helper, numpy_helper
    m = small_onnx()
    g = m.graph
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["attr", "attr", "delattr", "delinit", "reshape_init", "rename", "optype",
                                   "delnode", "dims", "bytes"]))
        node = g.node[draw(st.integers(0, len(g.node) - 1))] if len(g.node) else None
        if op == "attr" and node is not None:
            name = draw(st.sampled_from(["kernel_shape", "pads", "strides", "axis", "transB", "dilations", "group",
                                         "auto_pad", "ceil_mode", "alpha"]))
            for a in list(node.attribute):
                if a.name == name:
                    node.attribute.remove(a)
            node.attribute.append(helper.make_attribute(name, draw(attr_values)))
        elif op == "delattr" and node is not None and len(node.attribute):
            del node.attribute[draw(st.integers(0, len(node.attribute) - 1))]
        elif op == "delinit" and len(g.initializer):
            del g.initializer[draw(st.integers(0, len(g.initializer) - 1))]
        elif op == "reshape_init" and len(g.initializer):
            i = draw(st.integers(0, len(g.initializer) - 1))
            a = numpy_helper.to_array(g.initializer[i]).reshape(-1)
            n = draw(st.integers(0, a.size + 3))
            new = np.resize(a, n).reshape(draw(st.sampled_from([(n,), (1, n), (n, 1, 1, 1)])))
            g.initializer[i].CopyFrom(numpy_helper.from_array(new.astype(np.float32), g.initializer[i].name))
        elif op == "rename" and node is not None and len(node.input):
            node.input[draw(st.integers(0, len(node.input) - 1))] = draw(st.sampled_from(["nowhere", "", "x", "y",
                                                                                            "w2"]))
        elif op == "optype" and node is not None:
            node.op_type = draw(st.sampled_from(["Conv", "Gemm", "Relu", "MaxPool", "Add", "Softmax", "Foo", ""]))
        elif op == "delnode" and node is not None:
            g.node.remove(node)
        elif op == "dims":
            d = g.input[0].type.tensor_type.shape.dim[draw(st.integers(0, 3))]
            d.dim_value = draw(st.integers(-1, 40))
    data = m.SerializeToString()
    if draw(st.integers(0, 3)) == 0:            # corrupt bytes
        b = bytearray(data)
        for _ in range(draw(st.integers(1, 8))):
            i = draw(st.integers(0, len(b) - 1))
            b[i] = draw(st.integers(0, 255))
        if draw(st.booleans()):
            b = b[:draw(st.integers(0, len(b)))]
        data = bytes(b)
    del onnx
    return data


@fuzz(300)
@given(onnx_bytes())
def test_fuzz_onnx(tmp_path_factory, data):
    from gen.onnx_import import load_onnx
    p = tmp_path_factory.mktemp("onnx") / "m.onnx"
    p.write_bytes(data)
    check("onnx", lambda: load_onnx(p), len(data))


@fuzz(30)
@given(st.binary(max_size=300), st.integers(0, 62000))
def test_fuzz_onnx_digits_bytes(tmp_path_factory, junk, at):
    """Bytes of the shipped (quantized-importable) digits ONNX overwritten at random."""
    from gen.onnx_import import load_onnx
    data = (ROOT / "gen" / "models" / "digits.onnx").read_bytes()
    p = tmp_path_factory.mktemp("onnxd") / "d.onnx"
    p.write_bytes(data[:at] + junk + data[at + len(junk):])
    check("onnx:digits", lambda: load_onnx(p), (at, junk))


# --- 5. .pimgen quantized models ---------------------------------------------------------------
PIMGEN = json.loads((ROOT / "gen" / "models" / "digits.pimgen").read_text())


def paths(d, prefix=()):
    yield prefix
    if isinstance(d, dict):
        for k, v in d.items():
            yield from paths(v, prefix + (k,))
    elif isinstance(d, list) and d and not isinstance(d[0], (int, float)):
        for i, v in enumerate(d[:4]):
            yield from paths(v, prefix + (i,))


ALL_PATHS = [p for p in paths(PIMGEN) if p]


@st.composite
def pimgen_texts(draw):
    import copy
    d = copy.deepcopy(PIMGEN)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(ALL_PATHS))
        parent = d
        try:
            for k in path[:-1]:
                parent = parent[k]
            op = draw(st.sampled_from(["set", "set", "delete", "scale"]))
            if op == "delete":
                del parent[path[-1]]
            elif op == "scale" and isinstance(parent[path[-1]], list):
                parent[path[-1]] = [draw(values)] + parent[path[-1]][1:]
            else:
                parent[path[-1]] = draw(values)
        except (KeyError, IndexError, TypeError):
            pass
    return damage(draw, json.dumps(d), 5)


@fuzz(120)
@given(pimgen_texts())
def test_fuzz_pimgen(tmp_path_factory, text):
    from gen.quantize import QuantModel
    p = write_tmp(tmp_path_factory, "m.pimgen", text)

    def run():
        qm = QuantModel.load(p)
        qm.run(np.zeros(qm.net.input_shape, dtype=np.int64))
    check("pimgen", run, text[:300])


# --- 6. build folders --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def layer_files():
    from flow.layer_check import LayerDesign
    from gen.layerspec import parse_layer_spec
    from gen.params import NetworkParams
    d = LayerDesign(parse_layer_spec("conv Cin=2 Cout=4 K=3 H=4 W=4 pad=1"), ChipConfig.preset("small"))
    return {"manifest.json": d.manifest(), "weights/params.json": NetworkParams({"L": d.params}).to_dict(),
            "rtl/layer.v": "module layer(); endmodule\n"}


@pytest.fixture(scope="module")
def chip_files():
    from flow.chip_check import design_from_network
    d = design_from_network("digits", ChipConfig.preset("small"))
    return {"manifest.json": d.manifest(), "weights/params.json": d.params.to_dict(),
            "rtl/chip.v": "module chip(); endmodule\n"}


@st.composite
def folder_mutations(draw, files):
    import copy
    f = copy.deepcopy(files)
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["manifest", "manifest", "params", "delfile", "garble"]))
        if op == "delfile":
            f.pop(draw(st.sampled_from(sorted(f))), None)
        elif op == "garble":
            k = draw(st.sampled_from(sorted(f)))
            f[k] = draw(st.text(max_size=20))
        else:
            k = "manifest.json" if op == "manifest" else "weights/params.json"
            d = f.get(k)
            if not isinstance(d, dict):
                continue
            ps = [p for p in paths(d) if p]
            path = draw(st.sampled_from(ps))
            parent = d
            try:
                for x in path[:-1]:
                    parent = parent[x]
                if draw(st.booleans()):
                    del parent[path[-1]]
                else:
                    parent[path[-1]] = draw(values)
            except (KeyError, IndexError, TypeError):
                pass
    return f


def write_files(folder: Path, files: dict):
    for rel, v in files.items():
        p = folder / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes((v if isinstance(v, str) else json.dumps(v)).encode("utf-8", "replace"))


@fuzz(100)
@given(data=st.data())
def test_fuzz_layer_build_folders(tmp_path_factory, layer_files, data):
    from flow.layer_check import load_build
    files = data.draw(folder_mutations(layer_files))
    folder = tmp_path_factory.mktemp("lb")
    write_files(folder, files)
    check("folder:layer", lambda: load_build(folder), sorted(files))


@fuzz(60)
@given(data=st.data())
def test_fuzz_chip_build_folders(tmp_path_factory, chip_files, data):
    from flow.chip_check import load_build
    files = data.draw(folder_mutations(chip_files))
    folder = tmp_path_factory.mktemp("cb")
    write_files(folder, files)
    check("folder:chip", lambda: load_build(folder), sorted(files))


def test_simulate_refuses_non_designs(tmp_path):
    """`pimgen simulate` on anything but a design: one line, exit 2."""
    (tmp_path / "file.txt").write_text("hi")
    (tmp_path / "empty").mkdir()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "manifest.json").write_text('{"kind": "something"}')
    (tmp_path / "list").mkdir()
    (tmp_path / "list" / "manifest.json").write_text("[1, 2]")
    for p in ["file.txt", "empty", "other", "list", "missing"]:
        assert cli("cli:simulate", ["simulate", str(tmp_path / p)]) == "clean"
