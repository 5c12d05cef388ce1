"""The four-layer rule (DESIGN.md §2): ``gen`` ← {``hw``, ``sim``} ← ``flow``.

Every ``.py`` file under ``gen/``, ``hw/``, ``sim/`` and ``flow/`` is parsed with :mod:`ast`;
every import counts — module level, function-local, under ``TYPE_CHECKING``, relative, and the
string literal given to ``importlib.import_module`` / ``__import__`` (for an f-string, its
literal head). The checker itself is tested on a throw-away tree with forbidden imports.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("gen", "hw", "sim", "flow")
PROJECT = set(LAYERS)

# what each layer must never import (top-level package names); ``flow`` is the top and may
# import everything; outside the four packages only tests/, bench/ and formal/ import flow
FORBIDDEN: dict[str, frozenset[str]] = {
    "gen": frozenset({"hw", "sim", "flow", "amaranth", "cocotb", "cocotb_tools"}),
    "hw": frozenset({"sim", "flow", "cocotb", "cocotb_tools"}),
    "sim": frozenset({"hw", "flow", "amaranth"}),
    "flow": frozenset(),
}

# (file, private name) pairs still tolerated; each entry says why and when it goes
PRIVATE_ALLOWED: set[tuple[str, str]] = set()


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The absolute module an ``ImportFrom`` names (relative imports resolved against ``module``)."""
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[:len(base) - (node.level - 1)] if node.level > 1 else base
    return ".".join(base + ([node.module] if node.module else []))


def _dynamic_target(call: ast.Call) -> str | None:
    """The module string of ``importlib.import_module("x")`` / ``__import__("x")`` (f-string: its literal head)."""
    f = call.func
    name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else None
    if name not in ("import_module", "__import__") or not call.args:
        return None
    arg = call.args[0]
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return arg.value
    if isinstance(arg, ast.JoinedStr) and arg.values and isinstance(arg.values[0], ast.Constant):
        return str(arg.values[0].value)
    return None


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def imports_of(path: Path, root: Path) -> list[tuple[int, str, list[str]]]:
    """``(line, imported module, names)`` for every import in ``path`` (names: the ``from`` list)."""
    module = _module_name(path, root)
    is_package = path.name == "__init__.py"
    out: list[tuple[int, str, list[str]]] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            out.append((node.lineno, _resolve(node, module, is_package), [a.name for a in node.names]))
        elif isinstance(node, ast.Call) and (target := _dynamic_target(node)) is not None:
            out.append((node.lineno, target, []))
    return out


def _private_attribute_uses(path: Path, root: Path) -> list[tuple[int, str, str]]:
    """``alias._name`` where ``alias`` was imported from another project module (a module or a class)."""
    module = _module_name(path, root)
    tree = ast.parse(path.read_text(), filename=str(path))
    bound: dict[str, str] = {}   # local name -> what it is bound to (``gen.x`` or ``gen.x.Network``)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] in PROJECT:
                    bound[a.asname or a.name.split(".")[0]] = a.asname and a.name or a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom):
            src = _resolve(node, module, path.name == "__init__.py")
            if src.split(".")[0] in PROJECT and src != module:
                for a in node.names:
                    if f"{src}.{a.name}" != module:
                        bound[a.asname or a.name] = f"{src}.{a.name}"
    hits = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Attribute) and _private(node.attr)):
            continue
        chain, v = [], node.value                    # ``a.b.c._x``: root ``a``, chain ``b.c``
        while isinstance(v, ast.Attribute):
            chain.insert(0, v.attr)
            v = v.value
        if isinstance(v, ast.Name) and v.id in bound:
            target = ".".join([bound[v.id], *chain])
            if target != module:
                hits.append((node.lineno, target, ".".join([v.id, *chain, node.attr])))
    return hits


def check_layering(root: Path, private_allowed: set[tuple[str, str]] = frozenset()) -> list[str]:
    """Every breach of the four-layer rule and every cross-module private import under ``root``."""
    problems: list[str] = []
    for layer in LAYERS:
        for path in sorted((root / layer).rglob("*.py")):
            rel = path.relative_to(root).as_posix()
            module = _module_name(path, root)
            for line, target, names in imports_of(path, root):
                top = target.split(".")[0]
                if top in FORBIDDEN[layer]:
                    problems.append(f"{rel}:{line}: {layer} must not import {top} (imports {target})")
                if top in PROJECT and target != module:
                    for n in names:
                        if _private(n) and (rel, n) not in private_allowed:
                            problems.append(f"{rel}:{line}: imports private name {n} from {target}")
            for line, target, use in _private_attribute_uses(path, root):
                if (rel, use.split(".")[-1]) not in private_allowed:
                    problems.append(f"{rel}:{line}: uses private {use} ({target}.{use.split('.')[-1]})")
    return problems


def test_four_layers():
    problems = check_layering(ROOT, PRIVATE_ALLOWED)
    assert not problems, "DESIGN.md §2 (gen <- {hw, sim} <- flow) broken:\n" + "\n".join(problems)


def test_private_allow_list_is_not_stale():
    live = {(p.split(":")[0], p.rsplit(" ", 3)[-3]) for p in check_layering(ROOT) if "private name" in p}
    stale = PRIVATE_ALLOWED - live
    assert not stale, f"delete these from PRIVATE_ALLOWED in tests/test_layering.py (no longer imported): {stale}"


def test_every_layer_is_scanned():
    for layer in LAYERS:
        assert (ROOT / layer / "__init__.py").is_file(), layer
    n = sum(len(imports_of(p, ROOT)) for layer in LAYERS for p in (ROOT / layer).rglob("*.py"))
    assert n > 100   # the walk really found the imports (a broken glob would pass vacuously)


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for layer in LAYERS:
        (tmp_path / layer).mkdir(parents=True, exist_ok=True)
        (tmp_path / layer / "__init__.py").write_text("")
    for rel, text in files.items():
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return tmp_path


def test_checker_accepts_the_allowed_directions(tmp_path):
    root = _tree(tmp_path, {
        "gen/a.py": "import numpy\nfrom . import b\nfrom gen.b import X\n",
        "gen/b.py": "X = 1\n_y = 2\n",
        "hw/c.py": "from amaranth.hdl import Module\nfrom gen.a import b\n",
        "sim/d.py": "import cocotb\nfrom gen.b import X\n",
        "flow/e.py": "from hw.c import Module\nfrom sim import d\nfrom amaranth.back import verilog\n"
                     "import importlib\nm = importlib.import_module(f'flow.sub.{1}')\n",
    })
    assert check_layering(root) == []


def test_checker_reports_forbidden_imports(tmp_path):
    root = _tree(tmp_path, {
        "gen/a.py": "import hw\n",
        "gen/b.py": "def f():\n    from amaranth.back import verilog\n",        # function-local
        "gen/c.py": "import importlib\nimportlib.import_module('sim.golden')\n",   # string literal
        "gen/pkg/__init__.py": "from ...flow import cli\n",                         # relative, resolved
        "hw/d.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import cocotb\n",
        "hw/e.py": "m = __import__(f'flow.commands.{0}')\n",
        "sim/f.py": "def g():\n    from hw.layer import Engine\n",
        "sim/g.py": "import amaranth.lib.wiring as wiring\n",
        "sim/h.py": "from gen.x import _secret\nfrom gen import x\nx._hidden()\nimport gen.y\ngen.y._z\n",
        "sim/i.py": "from gen.net import Network\nNetwork._infer(1, 2)\n",
    })
    problems = check_layering(root)
    expect = [
        "gen/a.py:1: gen must not import hw (imports hw)",
        "gen/b.py:2: gen must not import amaranth (imports amaranth.back)",
        "gen/c.py:2: gen must not import sim (imports sim.golden)",
        "hw/d.py:3: hw must not import cocotb (imports cocotb)",
        "hw/e.py:1: hw must not import flow (imports flow.commands.)",
        "sim/f.py:2: sim must not import hw (imports hw.layer)",
        "sim/g.py:1: sim must not import amaranth (imports amaranth.lib.wiring)",
        "sim/h.py:1: imports private name _secret from gen.x",
        "sim/h.py:3: uses private x._hidden (gen.x._hidden)",
        "sim/h.py:5: uses private gen.y._z (gen.y._z)",
        "sim/i.py:2: uses private Network._infer (gen.net.Network._infer)",
    ]
    for e in expect:
        assert e in problems, (e, problems)
    assert any(p.startswith("gen/pkg/__init__.py:1: gen must not import flow") for p in problems), problems
    assert len(problems) == len(expect) + 1, problems
    # an allow-list entry silences exactly that private name
    assert "sim/h.py:1: imports private name _secret from gen.x" not in check_layering(root, {("sim/h.py", "_secret")})
