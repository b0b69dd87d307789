"""The package's shape, checked against the code (ARCHITECTURE.md, issue 14).

- the pipeline's layers point one way (import-linter's layers contract in pyproject.toml);
- no import cycle between any two modules, counting imports inside functions
  (imports under ``if TYPE_CHECKING:`` excepted);
- no private name (``_x``) imported or reached through a module alias across subpackages;
- ARCHITECTURE.md's module table lists exactly the modules in the tree, and its layer
  table is the contract's order.

Each check parses the source (no import of the package), so it runs in well under a second.
"""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "bayes_lse"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES: dict[str, Path] = {_module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, module: str) -> list[tuple[str, str | None, ast.AST]]:
    """(imported module, imported name or None, node) for every import statement in the
    module, at any depth, except under `if TYPE_CHECKING:`."""
    out: list[tuple[str, str | None, ast.AST]] = []
    is_pkg = MODULES[module].name == "__init__.py"

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            for a in node.names:
                out.append((a.name, None, node))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = module.split(".") if is_pkg else module.split(".")[:-1]
                pkg = pkg[: len(pkg) - (node.level - 1)]
                base = ".".join([*pkg, base] if base else pkg)
            for a in node.names:
                out.append((base, a.name, node))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return out


TREES = {m: ast.parse(p.read_text(encoding="utf-8")) for m, p in MODULES.items()}


def _edges() -> dict[str, set[str]]:
    """Module → the package modules it imports (an imported name that is a module counts as that module)."""
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for m, tree in TREES.items():
        for base, name, _ in _imports(tree, m):
            if not base.startswith("bayes_lse"):
                continue
            target = f"{base}.{name}" if name and f"{base}.{name}" in MODULES else base
            if target in MODULES and target != m:
                graph[m].add(target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def strong(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return found


def _subpackage(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_no_import_cycles_counting_function_local_imports():
    assert _cycles(_edges()) == []


def test_the_cycle_finder_finds_a_cycle():
    """The check above could fail: a two-module loop is found."""
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]


def test_no_private_name_crosses_a_subpackage():
    bad = []
    for m, tree in TREES.items():
        aliases: dict[str, str] = {}
        for base, name, node in _imports(tree, m):
            if not base.startswith("bayes_lse."):
                continue
            if name is None:
                target = base
                for a in node.names:  # type: ignore[attr-defined]
                    if a.name == base and a.asname:
                        aliases[a.asname] = target
            else:
                target = f"{base}.{name}" if f"{base}.{name}" in MODULES else base
                for a in node.names:  # type: ignore[attr-defined]
                    if a.name == name and f"{base}.{name}" in MODULES:
                        aliases[a.asname or a.name] = target
            if _subpackage(target) == _subpackage(m):
                continue
            if name and name.startswith("_") and not name.startswith("__"):
                bad.append(f"{m}: from {base} import {name}")
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in aliases and node.attr.startswith("_") and not node.attr.startswith("__")
                    and _subpackage(aliases[node.value.id]) != _subpackage(m)):
                bad.append(f"{m}: {node.value.id}.{node.attr} ({aliases[node.value.id]})")
    assert bad == []


def _contract_layers() -> list[str]:
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (layers,) = [c["layers"] for c in cfg["contracts"] if c["type"] == "layers"]
    return layers


def test_import_linter_contracts_are_kept(capsys):
    pytest.importorskip("importlinter", reason="import-linter is in the test extra: pip install -e '.[test]'")
    from importlinter import configuration
    from importlinter.application import use_cases

    configuration.configure()
    kept = use_cases.lint_imports(config_filename=str(ROOT / "pyproject.toml"), cache_dir=None, no_logo=True)
    assert kept, capsys.readouterr().out


def test_every_subpackage_and_top_level_module_is_a_layer():
    """A new top-level module or subpackage must take its place in the layer order."""
    layers = _contract_layers()
    top = sorted({f"bayes_lse.{_subpackage(m)}" for m in MODULES if _subpackage(m) and _subpackage(m) != "__main__"})
    assert sorted(layers) == top


def test_architecture_md_lists_every_module_and_the_layers_in_order():
    text = (ROOT / "ARCHITECTURE.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"^\|\s*`(bayes_lse/[\w/]+\.py)`", text, flags=re.M))
    actual = {str(p.relative_to(ROOT)) for p in MODULES.values()
              if p.name not in ("__init__.py", "__main__.py")}
    assert listed == actual, {"missing from ARCHITECTURE.md": sorted(actual - listed),
                              "no longer in the tree": sorted(listed - actual)}
    m = re.search(r"```layers\n(.*?)```", text, flags=re.S)
    assert m, "ARCHITECTURE.md has no ```layers block"
    drawn = [line.strip() for line in m.group(1).splitlines() if line.strip()]
    assert drawn == _contract_layers()


def test_tests_mirror_the_package():
    """Each folder under tests/ is named after a subpackage, and a module's tests are
    found where its subpackage's are (tests/<subpackage>/test_*.py)."""
    tests = ROOT / "tests"
    subpackages = {p.name for p in PKG.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    folders = {p.name for p in tests.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert folders <= subpackages, f"test folders that mirror no subpackage: {sorted(folders - subpackages)}"
    basenames = [p.name for p in tests.rglob("test_*.py")]
    assert len(basenames) == len(set(basenames)), "test file names must be unique (pytest's prepend import mode)"
    root_tests = {p.name for p in tests.glob("test_*.py")}
    # only tests of the repository as a whole stay at the top
    assert root_tests == {"test_architecture.py", "test_benchmarks.py", "test_notebooks.py", "test_packaging.py"}
