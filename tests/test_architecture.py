"""The house stays as drawn: core's imports follow docs/ARCHITECTURE.md.

The floors and their allowed arrows are read from the ``floors`` block of docs/ARCHITECTURE.md,
so the picture and the code cannot drift apart. Every import in core (at any depth of a
function) is parsed; the test fails on an arrow against the stated direction, on any circle
between modules, on an import of a core module inside a function (the usual way to dodge a
circle), on streamlit inside core, and on a module the document does not list.
"""
from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "ARCHITECTURE.md"


def floors() -> dict[str, set[str] | None]:
    """floor -> the floors it may import (None: any)."""
    block = re.search(r"```floors\n(.*?)```", DOC.read_text(), re.S)
    assert block, "docs/ARCHITECTURE.md has no ```floors block"
    out = {}
    for line in block.group(1).splitlines():
        if line.strip():
            name, _, allowed = line.partition(":")
            allowed = allowed.split()
            out[name.strip()] = None if allowed == ["*"] else set(allowed)
    return out


def modules(root: Path = ROOT) -> dict[str, Path]:
    """Dotted module name -> file, for every module of ``root``/core."""
    out = {}
    for p in (root / "core").rglob("*.py"):
        parts = list(p.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def floor_of(mod: str) -> str:
    parts = mod.split(".")
    if len(parts) == 1 or parts[1] in ("cli", "__main__"):
        return "top"
    return parts[1]


def imports(mods: dict[str, Path]):
    """(module, imported module, line, inside a function?) for every import in ``mods``."""
    for mod, path in mods.items():
        tree = ast.parse(path.read_text(), str(path))
        pkg = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        local = set()
        for fn in ast.walk(tree):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                local.update(id(n) for n in ast.walk(fn) if isinstance(n, (ast.Import, ast.ImportFrom)))
        for node in ast.walk(tree):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                    base = ".".join(up + ([node.module] if node.module else []))
                # `from core.base import cache` imports the module core.base.cache
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            for t in targets:
                yield mod, t, node.lineno, id(node) in local


def check(root: Path, allowed: dict) -> dict[str, list[str]]:
    """Everything wrong with ``root``/core's imports under the floors ``allowed``."""
    mods = modules(root)
    found = {"unknown floors": sorted(set(map(floor_of, mods)) - set(allowed)), "wrong arrows": [],
             "function-local imports": [], "circles": []}
    graph = defaultdict(set)
    for mod, target, line, in_function in imports(mods):
        if target.split(".")[0] == "streamlit":
            found["wrong arrows"].append(f"{mod}:{line} imports streamlit (core never does; pages do)")
        if target not in mods or target == mod:
            continue
        if in_function:
            found["function-local imports"].append(f"{mod}:{line} imports {target} inside a function")
        a, b = floor_of(mod), floor_of(target)
        if a != b and allowed.get(a) is not None and b not in allowed.get(a, set()):
            found["wrong arrows"].append(f"{mod}:{line} imports {target}: floor {a} may import only "
                                         f"{sorted(allowed.get(a, ())) or 'nothing of core'}")
        if b != "top" or a == "top":             # the top package re-exports; nothing may import it back
            graph[mod].add(target)
        else:
            found["wrong arrows"].append(f"{mod}:{line} imports the top package {target}")
    state, stack = {}, []

    def visit(v):
        state[v] = 1
        stack.append(v)
        for w in sorted(graph[v]):
            if state.get(w) == 1:
                found["circles"].append(" -> ".join(stack[stack.index(w):] + [w]))
            elif w not in state:
                visit(w)
        stack.pop()
        state[v] = 2

    for v in sorted(mods):
        if v not in state:
            visit(v)
    return found


def test_imports_follow_the_floors_and_have_no_circles():
    found = check(ROOT, floors())
    assert not any(found.values()), "core's imports disagree with docs/ARCHITECTURE.md:\n" + "\n".join(
        f"{k}: {v}" for k, v in found.items() if v)


def test_the_document_lists_every_module():
    text = DOC.read_text()
    missing = [str(p.relative_to(ROOT)) for p in modules().values()
               if p.name != "__init__.py" and f"`{p.relative_to(ROOT / 'core')}`" not in text]
    assert not missing, f"modules not described in docs/ARCHITECTURE.md: {missing}"
    listed = set(re.findall(r"`(\w+/[\w/]+\.py)`", text))
    gone = [f for f in listed if not (ROOT / "core" / f).exists() and not (ROOT / f).exists()]
    assert not gone, f"docs/ARCHITECTURE.md describes modules that do not exist: {gone}"


def test_the_checker_finds_planted_faults(tmp_path):
    """The checks can fail: an upward arrow, a function-local import, a circle and streamlit."""
    core = tmp_path / "core"
    for d in ("base", "engine"):
        (core / d).mkdir(parents=True)
        (core / d / "__init__.py").write_text("")
    (core / "__init__.py").write_text("from core.engine import b\n")
    (core / "base" / "a.py").write_text("import streamlit\nfrom core.engine import b\n")   # base -> engine
    (core / "engine" / "b.py").write_text("from . import c\n")
    (core / "engine" / "c.py").write_text("def f():\n    from core.engine import b\n")    # local, and b <-> c
    found = check(tmp_path, {"base": set(), "engine": {"base"}, "top": None})
    assert found["wrong arrows"] == ["core.base.a:1 imports streamlit (core never does; pages do)",
                                     "core.base.a:2 imports core.engine.b: floor base may import only nothing of core"]
    assert found["function-local imports"] == ["core.engine.c:2 imports core.engine.b inside a function"]
    assert found["circles"] == ["core.engine.b -> core.engine.c -> core.engine.b"]
    assert check(tmp_path, {"base": {"engine"}, "engine": {"base"}})["unknown floors"] == ["top"]


# ----------------------------------------------------------------------------- user data stays out of the engine

USER_DATA_FILES = {"flags", "registry.json", ".registry.lock"}   # what the store names on disk


def user_data_names(root: Path = ROOT) -> set[str]:
    """The public names of core.userdata's modules (their ``__all__``, read without importing them)."""
    out = set()
    for p in (root / "core" / "userdata").glob("*.py"):
        for node in ast.parse(p.read_text()).body:
            if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
                out.update(ast.literal_eval(node.value))
    return out - {"flags", "models"}            # the package's own __all__ names its modules


def engine_user_data(root: Path = ROOT) -> list[str]:
    """Everything of the user-data store found in the engine: an import of core.userdata (or
    ``core.userdata`` reached as an attribute), a function or class named after flags at any
    depth, a module-level name that is flag-named or one of core.userdata's public names (defined
    or imported), and the store's file names as string constants."""
    store = user_data_names(root)
    mods = {m: p for m, p in modules(root).items() if floor_of(m) == "engine"}
    found = [f"{mod}:{line} imports {t}" for mod, t, line, _ in imports(mods)
             if t == "core.userdata" or t.startswith("core.userdata.")]
    for mod, path in sorted(mods.items()):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            where = f"{mod}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and "flag" in node.name.lower():
                found.append(f"{where} defines {node.name}")
            elif (isinstance(node, ast.Attribute) and node.attr == "userdata"
                  and isinstance(node.value, ast.Name) and node.value.id == "core"):
                found.append(f"{where} reaches core.userdata")
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                for a in node.names:
                    name = (a.asname or a.name).split(".")[-1]
                    if name in store or "flag" in name.lower():
                        found.append(f"{where} imports {a.name}")
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in USER_DATA_FILES:
                found.append(f"{where} names the store's file {node.value!r}")
        for node in tree.body:                      # module-level names
            targets = ([node.target] if isinstance(node, ast.AnnAssign) else node.targets
                       if isinstance(node, ast.Assign) else [])
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                targets = [ast.Name(node.name)]
            for t in targets:
                for n in ast.walk(t):
                    if isinstance(n, ast.Name) and (n.id in store or "flag" in n.id.lower()):
                        found.append(f"{mod}:{node.lineno} defines {n.id}")
    return sorted(set(found))


def test_the_engine_holds_no_user_data():
    """Flags and the registry of added models are user data (core.userdata): no module of the
    engine defines, imports or reaches them, nor names their files."""
    assert user_data_names() >= {"load_flags", "save_flags", "flag_units", "unflag_units", "stale_flags",
                                 "flag_details", "FLAGS_FORMAT", "user_models", "store_entry", "stage_upload"}
    found = engine_user_data()
    assert not found, "the engine holds user data (it belongs in core/userdata):\n" + "\n".join(found)


def test_the_user_data_check_finds_planted_faults(tmp_path):
    core = tmp_path / "core"
    for d in ("engine", "userdata"):
        (core / d).mkdir(parents=True)
        (core / d / "__init__.py").write_text("")
    (core / "userdata" / "flags.py").write_text('__all__ = ["load_flags", "FLAGS_FORMAT"]\n')
    (core / "userdata" / "models.py").write_text('__all__ = ["user_models"]\n')
    (core / "engine" / "a.py").write_text("from core.userdata.flags import load_flags\n")
    (core / "engine" / "b.py").write_text("import core\n\ndef f():\n    return core.userdata.models.user_models()\n")
    (core / "engine" / "c.py").write_text('FLAGS_FORMAT = 2\n\ndef g():\n    def save_flag(): pass\n'
                                          '    return root / "flags"\n\nclass FlagStore: pass\n')
    (core / "engine" / "d.py").write_text('def user_models(): pass\nX = "a flagged unit"\n')
    assert engine_user_data(tmp_path) == [
        "core.engine.a:1 imports core.userdata.flags",
        "core.engine.a:1 imports load_flags",
        "core.engine.b:4 reaches core.userdata",
        "core.engine.c:1 defines FLAGS_FORMAT",
        "core.engine.c:4 defines save_flag",
        "core.engine.c:5 names the store's file 'flags'",
        "core.engine.c:7 defines FlagStore",
        "core.engine.d:1 defines user_models"]
