"""No import cycles between the project's modules, lazy imports inside functions included.

A cycle makes a room hard to read (neither module can be understood first) and turns import
order into behaviour (a partly initialised module at import time). The graph comes from a
static read of every import statement (grimp, the library import-linter uses), so an import
inside a function counts like one at the top of the file. Imports under
``if TYPE_CHECKING:`` are left out: they never run, and annotations may name each other.

Each cycle is a strongly connected component of the module graph (Tarjan); the test names
its modules and one closed path through them, so the message says where to cut.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import pytest

PACKAGES = ("engines", "training", "export", "stream", "hidemo")

# Cycles that exist and are being removed, each by its modules, with a comment saying which
# import closes it. The test requires this set to be exact: when a cycle is fixed, delete it
# here; a cycle not listed fails. None today; an entry looks like
#     frozenset({"stream.stages.placement", "stream.stages.main", "stream.stages.capture"}),
KNOWN_CYCLES: set[frozenset[str]] = set()

Graph = Mapping[str, Iterable[str]]


def strongly_connected(graph: Graph) -> list[frozenset[str]]:
    """Tarjan's algorithm, iterative (a deep package would overflow Python's recursion)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[frozenset[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work: list[tuple[str, list[str]]] = [(root, sorted(graph.get(root, ())))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, pending = work[-1]
            if pending:
                child = pending.pop()
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, sorted(graph.get(child, ()))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                found.append(frozenset(component))
    return found


def cycles(graph: Graph) -> list[frozenset[str]]:
    """Every component with more than one module, or a module that imports itself."""
    return [c for c in strongly_connected(graph)
            if len(c) > 1 or next(iter(c)) in graph.get(next(iter(c)), ())]


def closed_path(graph: Graph, component: frozenset[str]) -> list[str]:
    """One path that starts and ends at the component's first module (breadth-first, so
    it is a shortest one), staying inside the component."""
    start = min(component)
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(graph.get(node, ())):
                if child not in component:
                    continue
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(came_from[path[-1]])
                    return [start, *reversed(path[:-1]), start]
                if child not in came_from:
                    came_from[child] = node
                    following.append(child)
        frontier = following
    raise AssertionError(f"{sorted(component)} is not a cycle")


def describe(graph: Graph, component: frozenset[str]) -> str:
    return (f"{len(component)} modules {sorted(component)}; e.g. "
            + " -> ".join(closed_path(graph, component)))


def project_graph() -> dict[str, set[str]]:
    grimp = pytest.importorskip("grimp", reason="grimp comes with import-linter (dev extra)")
    graph = grimp.build_graph(*PACKAGES, exclude_type_checking_imports=True, cache_dir=None)
    return {module: graph.find_modules_directly_imported_by(module) for module in graph.modules}


def test_no_import_cycles_beyond_the_known_ones() -> None:
    graph = project_graph()
    found = set(cycles(graph))
    new = [describe(graph, c) for c in found - KNOWN_CYCLES]
    fixed = [sorted(c) for c in KNOWN_CYCLES - found]
    assert not new, "import cycles (cut one import of each):\n  " + "\n  ".join(new)
    assert not fixed, f"cycles in KNOWN_CYCLES no longer exist; remove them there: {fixed}"


def test_the_graph_holds_every_package() -> None:
    """The graph is the project's, lazy imports included (else the test above proves
    nothing)."""
    graph = project_graph()
    assert {m.split(".")[0] for m in graph} == set(PACKAGES)
    # a lazy import: hidemo's dispatcher imports each package's commands inside functions
    assert any(m.startswith("stream") for m in graph["hidemo.cli"]), graph["hidemo.cli"]


def test_the_finder_names_a_cycle_through_a_lazy_import(tmp_path, monkeypatch) -> None:
    """A planted cycle (one import inside a function) is found and named, a chain without a
    back edge is not: the detector can fail."""
    pytest.importorskip("grimp")
    import grimp

    package = tmp_path / "planted"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from planted import b\n")
    (package / "b.py").write_text("def later():\n    from planted import c\n")
    (package / "c.py").write_text("import planted.a\n")
    (package / "d.py").write_text("from planted import a\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    graph = grimp.build_graph("planted", cache_dir=None)
    edges = {m: graph.find_modules_directly_imported_by(m) for m in graph.modules}
    found = cycles(edges)
    assert found == [frozenset({"planted.a", "planted.b", "planted.c"})]
    assert describe(edges, found[0]).endswith(
        "planted.a -> planted.b -> planted.c -> planted.a")


def test_tarjan_on_small_graphs() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []
    assert cycles({"a": {"a"}}) == [frozenset({"a"})]
    two = cycles({"a": {"b"}, "b": {"a", "c"}, "c": {"d"}, "d": {"c"}})
    assert sorted(map(sorted, two)) == [["a", "b"], ["c", "d"]]
