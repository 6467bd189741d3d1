"""Imports go one way (cli → engine → parsers/outputs → indicators/evidence) and
no module imports itself back through another, lazily or not."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "toolmarks"
# A layer may import its own and lower layers only.
LAYERS = {
    "indicators": 0,
    "evidence": 0,
    "events": 1,
    "outcome": 1,
    "parsers": 2,
    "output": 3,
    "engine": 3,
    "plugins": 4,
    "cli": 5,
}


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [f"{node.module}.{alias.name}" for alias in node.names]
            names = [n if n in modules else node.module for n in names]
        else:
            continue
        found |= {n for n in names if n in modules}
    return found


def _layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.get(parts[1]) if len(parts) > 1 else None


def test_no_import_cycles() -> None:
    modules = _modules()
    graph = {name: _imports(path, modules) - {name} for name, path in modules.items()}
    # A package's __init__ may import its own modules (plaso's registration
    # pattern); those edges alone make no cycle worth refusing.
    for name, edges in graph.items():
        graph[name] = {e for e in edges if not name.startswith(e + ".")}
    state: dict[str, int] = {}
    cycles = []

    def visit(name: str, stack: list[str]) -> None:
        state[name] = 1
        for other in sorted(graph[name]):
            if state.get(other) == 1:
                cycles.append(stack[stack.index(other) :] + [other])
            elif other not in state:
                visit(other, [*stack, other])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not cycles


def test_imports_go_down_the_layers() -> None:
    modules = _modules()
    upward = []
    for name, path in modules.items():
        mine = _layer(name)
        for other in _imports(path, modules):
            theirs = _layer(other)
            if mine is not None and theirs is not None and theirs > mine:
                upward.append(f"{name} -> {other}")
    assert not upward
