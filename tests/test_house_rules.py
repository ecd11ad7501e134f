"""The rules of the house (docs/design.md), read from the source with `ast`.

Every import counts, at module level or inside a function: a lazy import is still a
dependency between rooms.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "expertune"

# room -> rooms it must never import
FORBIDDEN = {
    "train": {"evaluate", "app", "cli"},
    "evaluate": {"train", "app", "cli"},
    "schedule": {"models", "data", "train", "evaluate", "pipeline", "app", "config"},
    "data": {"train", "evaluate", "pipeline", "app", "cli"},
    "config": {"models", "data", "train", "evaluate", "pipeline", "app", "records"},
    "records": {"models", "data", "train", "evaluate", "pipeline", "app"},
    "models": {"data", "train", "evaluate", "pipeline", "app", "config"},
    "pipeline": {"train", "evaluate", "app"},
    "export": {"evaluate", "app", "data"},
}
# leaf modules any room may use
SHARED = {"errors", "io", "__init__"}


def _modules() -> dict[str, set[str]]:
    """module name (expertune.x.y) -> every expertune module it imports."""
    graph: dict[str, set[str]] = {}
    for path in SRC.rglob("*.py"):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                if node.module.startswith("expertune"):
                    found.add(node.module)
                    found.update(f"{node.module}.{a.name}" for a in node.names)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name.startswith("expertune"))
        graph[name] = found
    known = set(graph)
    return {m: {d for d in deps if d in known and d != m} for m, deps in graph.items()}


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


GRAPH = _modules()


@pytest.mark.parametrize("room", sorted(FORBIDDEN))
def test_room_never_imports_what_the_design_forbids(room):
    bad = sorted(
        f"{m} -> {d}"
        for m, deps in GRAPH.items()
        if _room(m) == room
        for d in deps
        if _room(d) in FORBIDDEN[room]
    )
    assert not bad, bad


def test_no_cycle_among_rooms():
    edges: dict[str, set[str]] = {}
    for m, deps in GRAPH.items():
        for d in deps:
            a, b = _room(m), _room(d)
            if a != b and b not in SHARED and a not in SHARED:
                edges.setdefault(a, set()).add(b)
    assert _cycle(edges) is None, _cycle(edges)


def test_no_cycle_among_the_modules_of_models():
    edges = {
        m: {d for d in deps if _room(d) == "models" and d != "expertune.models"}
        for m, deps in GRAPH.items()
        if _room(m) == "models" and m != "expertune.models"
    }
    assert _cycle(edges) is None, _cycle(edges)


def test_the_checker_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) is not None
    assert _cycle({"a": {"b"}, "b": {"c"}}) is None


def _cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle in the directed graph, as a path, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node)):
            return found
    return None
