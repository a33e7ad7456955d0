"""The layout keeps its promises (docs/architecture.md): no import circles, no lower
layer importing a higher one, no module over 400 lines, and the architecture doc names
only folders that exist. Imports count at any depth (a lazy import inside a function is
still a dependency), except under `if TYPE_CHECKING:`; a package's __init__ may import
its own submodules."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MAX_LINES = 400

# Top to bottom: a module may import its own layer and the ones below it, never above.
LAYERS: list[tuple[str, ...]] = [
    ("datmo.cli", "datmo.ui", "datmo.sdk", "datmo.__main__"),
    ("datmo.core.controller",),
    ("datmo.core.task", "datmo.core.executor", "datmo.core.tree", "datmo.core.remote"),
    ("datmo.core.storage", "datmo.core.shadowgit"),
    ("datmo.core.entity",),
    ("datmo.core.util", "datmo.errors", "datmo.templates", "datmo.task_sdk", "datmo"),
]


def module_name(path: Path, root: Path) -> tuple[str, bool]:
    """(dotted name, whether it is a package's __init__)."""
    parts = path.relative_to(root).with_suffix("").parts
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), True
    return ".".join(parts), False


def _type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(source: str, name: str, is_package: bool, top: str) -> set[str]:
    """Every module under `top` that this source imports, at any depth."""
    found: set[str] = set()
    package = name if is_package else name.rpartition(".")[0]

    class Visitor(ast.NodeVisitor):
        def visit_If(self, node: ast.If) -> None:
            if _type_checking(node.test):
                for stmt in node.orelse:
                    self.visit(stmt)
                return
            self.generic_visit(node)

        def visit_Import(self, node: ast.Import) -> None:
            found.update(a.name for a in node.names)

        def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
            base = node.module or ""
            if node.level:  # relative: resolved against this module's package
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)  # a submodule, maybe

    Visitor().visit(ast.parse(source))
    return {m for m in found if m == top or m.startswith(top + ".")}


def import_graph(root: Path, top: str = "datmo") -> dict[str, set[str]]:
    """Module -> the modules of the package it imports (names that are not modules,
    such as a function imported from one, are dropped)."""
    sources = {}
    for path in sorted((root / top).rglob("*.py")):
        name, is_package = module_name(path, root)
        sources[name] = (path.read_text(encoding="utf-8"), is_package)
    graph = {}
    for name, (source, is_package) in sources.items():
        deps = {d for d in imports_of(source, name, is_package, top) if d in sources}
        deps.discard(name)
        if is_package:  # a package's __init__ may import its own submodules
            deps = {d for d in deps if not d.startswith(name + ".")}
        graph[name] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def layer_of(module: str) -> int:
    """The index in LAYERS of the longest prefix that names the module's layer."""
    best, rank = -1, -1
    for i, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, rank = len(prefix), i
    assert rank >= 0, f"{module} belongs to no layer: add it to LAYERS and docs/architecture.md"
    return rank


def upward(graph: dict[str, set[str]]) -> list[str]:
    return sorted(
        f"{m} imports {d}" for m, deps in graph.items() for d in deps if layer_of(d) < layer_of(m)
    )


def test_no_import_circles() -> None:
    found = cycles(import_graph(REPO))
    assert not found, "modules import each other in a circle: " + "; ".join(
        " -> ".join(group) for group in found
    )


def test_no_layer_imports_a_higher_one() -> None:
    found = upward(import_graph(REPO))
    assert not found, "a lower layer imports a higher one: " + "; ".join(found)


def test_the_named_layers_never_reach_up_to_controllers_or_the_cli() -> None:
    # The rule of the layout issue, spelled out: lazily or not.
    graph = import_graph(REPO)
    low = ("datmo.core.storage", "datmo.core.entity", "datmo.core.tree", "datmo.core.shadowgit")
    high = ("datmo.core.controller", "datmo.cli")
    bad = [
        f"{m} -> {d}"
        for m, deps in graph.items()
        if m.startswith(low)
        for d in deps
        if d.startswith(high)
    ]
    assert not bad, bad


def test_modules_stay_small() -> None:
    long = {
        str(p.relative_to(REPO)): n
        for p in (REPO / "datmo").rglob("*.py")
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not long, f"modules over {MAX_LINES} lines (split them by responsibility): {long}"


def _package(tmp: Path, files: dict[str, str]) -> dict[str, set[str]]:
    for rel, text in files.items():
        path = tmp / "datmo" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return import_graph(tmp)


def test_the_checks_see_lazy_circles_and_upward_imports(tmp_path: Path) -> None:
    # The checks above can fail: a circle made only of imports inside functions, and a
    # storage module that asks a controller, lazily.
    graph = _package(
        tmp_path,
        {
            "__init__.py": "",
            "core/__init__.py": "",
            "core/storage/__init__.py": "",
            "core/storage/store.py": "def f():\n    from datmo.core.controller import run\n",
            "core/controller/__init__.py": "",
            "core/controller/run.py": "def g():\n    from datmo.core.storage.store import f\n",
        },
    )
    assert cycles(graph) == [["datmo.core.controller.run", "datmo.core.storage.store"]]
    assert "datmo.core.storage.store imports datmo.core.controller.run" in upward(graph)


def test_type_checking_imports_and_own_submodules_do_not_count(tmp_path: Path) -> None:
    graph = _package(
        tmp_path,
        {
            "__init__.py": "from datmo import core\n",
            "core/__init__.py": "def get():\n    from datmo.core import a\n    return a\n",
            "core/a.py": (
                "from typing import TYPE_CHECKING\nimport datmo.core\n"
                "if TYPE_CHECKING:\n    from datmo.core.b import B\n"
            ),
            "core/b.py": "from datmo.core.a import x\n",
        },
    )
    assert cycles(graph) == []
    assert graph["datmo.core.a"] == {"datmo.core"}
    assert graph["datmo.core"] == set()  # its own submodule, lazily


ARCH = REPO / "docs" / "architecture.md"


def tree_folders(text: str) -> list[str]:
    """The folders of the doc's folder tree: a fenced block that starts with `datmo/`,
    one name per line, two spaces of indent per level."""
    found: list[str] = []
    for block in re.findall(r"```\w*\n(.*?)```", text, re.S):
        lines = [line for line in block.splitlines() if line.strip()]
        if not lines or lines[0].strip() != "datmo/":
            continue
        stack: list[str] = []
        for line in lines:
            depth = (len(line) - len(line.lstrip())) // 2
            name = line.split()[0]
            del stack[depth:]
            if name.endswith("/"):
                stack.append(name.rstrip("/"))
                found.append("/".join(stack))
    return found


def test_the_architecture_doc_names_folders_that_exist() -> None:
    text = ARCH.read_text(encoding="utf-8")
    tree = tree_folders(text)
    assert len(tree) >= 10, f"the doc's folder tree is missing or too small: {tree}"
    named = set(tree) | set(
        re.findall(r"`((?:datmo|tests|benchmarks|scripts|docs)(?:/[\w.-]+)*)/`", text)
    )
    missing = sorted(n for n in named if not (REPO / n).is_dir())
    assert not missing, f"docs/architecture.md names folders that do not exist: {missing}"
    # Every package of datmo is in the tree, so the picture is whole.
    packages = {str(p.parent.relative_to(REPO)) for p in (REPO / "datmo").rglob("__init__.py")}
    assert packages <= set(tree), f"packages missing from the tree: {sorted(packages - set(tree))}"


@pytest.mark.parametrize("layer", sorted({p for group in LAYERS for p in group}))
def test_every_layer_is_in_the_architecture_doc(layer: str) -> None:
    folder = layer.replace(".", "/")
    text = ARCH.read_text(encoding="utf-8")
    short = folder.removeprefix("datmo/core/").removeprefix("datmo/")
    assert folder == "datmo" or f"{short}/" in text or f"{short}.py" in text, layer
