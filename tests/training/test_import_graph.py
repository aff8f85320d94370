"""No import circle inside training/: every module can be imported on its own, whatever was imported
before it. The graph is read statically (ast), with imports inside functions too, since a deferred
import that closes a circle only moves the failure to run time."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

TRAINING = Path(__file__).resolve().parents[2] / "training"


def _module_name(path: Path) -> str:
    parts = path.relative_to(TRAINING.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The training modules that `path` imports. A package's own initialisation, which Python runs
    before any of its modules, is not an edge: `training.synth`'s re-exports would make every module
    of it a circle with its package."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = importlib.util.resolve_name("." * node.level + (node.module or ""), package)
            # `from pkg import mod` needs mod; `from mod import name` needs mod.
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        out |= {t for t in targets if t in modules and t != name}
    return out


def training_import_graph() -> dict[str, set[str]]:
    files = sorted(TRAINING.rglob("*.py"))
    modules = {_module_name(f) for f in files}
    return {_module_name(f): _imports(f, modules) for f in files}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A circle of imports as a path `a, b, ..., a`, or None (depth-first search, three colours)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_cycle_finder_finds_a_circle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_the_graph_sees_module_level_and_deferred_imports():
    graph = training_import_graph()
    assert "training.checkpoint" in graph["training.train"]  # module level
    assert "training.calibrate" in graph["training.train"]  # inside run_training
    assert {"training.cli.data", "training.cli.models"} <= graph[
        "training.cli"
    ]  # `from training.cli import data`


def test_no_import_circle_among_training_modules():
    graph = training_import_graph()
    assert len(graph) > 20
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))
