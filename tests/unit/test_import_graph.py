"""The package's import graph has no cycles, at any depth.

Every import counts: at module level, inside a function, under ``TYPE_CHECKING``. A
cycle that only runs late is still a piece living in the wrong module (ARCHITECTURE.md),
so the graph is read from the source (``ast``), not from what an import happens to load.
Two graphs are checked: modules, and the package's parts (``config``, ``rescue``,
``core``, ... and each top-level module), where ``config`` -> ``exabgp`` ->
``config`` through two unrelated modules is a cycle too.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

import anycast_announcer

PACKAGE_ROOT = Path(anycast_announcer.__file__).parent
SHARED_LEAVES = frozenset({"procfs"})
"""Top-level modules both the sidecar and netlab may use: /proc parsing (a pid's start
time) that neither should copy; they import nothing of the package."""


def _modules(package_root: Path) -> dict[str, Path]:
    modules = {}
    for path in package_root.rglob("*.py"):
        parts = list(path.relative_to(package_root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _targets(module: str, path: Path, node: ast.Import | ast.ImportFrom) -> Iterable[str]:
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
        return
    base = node.module or ""
    if node.level:
        package = module.split(".")
        if path.name != "__init__.py":
            package.pop()
        package = package[: len(package) - (node.level - 1)]
        base = ".".join([*package, base] if base else package)
    # `from pkg import name` imports pkg.name when that is a module, else pkg itself:
    # the longest existing module of the name is taken below.
    yield from (f"{base}.{alias.name}" for alias in node.names)


def import_graph(package_root: Path = PACKAGE_ROOT) -> dict[str, set[str]]:
    """Module -> the package's modules it imports, anywhere in its source."""
    root = package_root.name
    modules = _modules(package_root)
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            for target in _targets(name, path, node):
                if target != root and not target.startswith(root + "."):
                    continue
                while target not in modules:
                    target = target.rpartition(".")[0]
                if target not in {name, root}:
                    graph[name].add(target)
    return graph


def part_of(module: str) -> str:
    """The top-level part a module belongs to: ``anycast_announcer.config.bgp`` -> ``config``."""
    return module.split(".")[1]


def part_graph(graph: Mapping[str, set[str]]) -> dict[str, set[str]]:
    parts: dict[str, set[str]] = {}
    for module, targets in graph.items():
        for target in targets:
            if part_of(module) != part_of(target):
                parts.setdefault(part_of(module), set()).add(part_of(target))
    return parts


def cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph.get(child, ())))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return found


class TestImportGraph:
    def test_finds_a_cycle_when_there_is_one(self) -> None:
        """The cycle finder itself can fail: a -> b -> c -> a is reported, d is not."""
        graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
        assert cycles(graph) == [["a", "b", "c"]]
        assert part_graph({"x.p.m": {"x.q.n"}, "x.q.n": {"x.q.o"}}) == {"p": {"q"}}

    def test_reads_imports_inside_functions_and_type_checking(self, tmp_path: Path) -> None:
        """Function-local, TYPE_CHECKING and relative imports are edges too."""
        package = tmp_path / "pkg"
        (package / "sub").mkdir(parents=True)
        for name in ("__init__.py", "sub/__init__.py", "sub/leaf.py"):
            (package / name).write_text("")
        (package / "a.py").write_text(
            "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n    from pkg.b import thing\n"
            "def late():\n    import pkg.sub.leaf\n"
        )
        (package / "b.py").write_text("from . import a\nfrom .sub import leaf\n")
        graph = import_graph(package)
        assert graph["pkg.a"] == {"pkg.b", "pkg.sub.leaf"}
        assert graph["pkg.b"] == {"pkg.a", "pkg.sub.leaf"}
        assert cycles(graph) == [["pkg.a", "pkg.b"]]

    def test_no_module_imports_itself_through_others(self) -> None:
        """No module cycle: a cycle means a piece lives in the wrong module."""
        assert cycles(import_graph()) == []

    def test_no_cycle_between_parts(self) -> None:
        """config, exabgp, rescue, core, ... form a DAG."""
        assert cycles(part_graph(import_graph())) == []

    def test_sidecar_and_netlab_stay_apart(self) -> None:
        """The lab runner and the sidecar share no code: netlab stands alone, but for
        ``SHARED_LEAVES``, which import nothing of the package at all."""
        graph = part_graph(import_graph())
        assert "netlab" not in {target for part, targets in graph.items() for target in targets}
        assert graph.get("netlab", set()) <= {"netlab", *SHARED_LEAVES}
        assert all(not graph.get(leaf) for leaf in SHARED_LEAVES)
