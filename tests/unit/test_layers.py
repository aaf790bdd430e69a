"""The house's one rule, kept true: imports run down, never up and never in a circle.

Floors, top to bottom: the front doors and the wiring, the gate, the wings, the ground
floor. A module may import its own part, any part on a lower floor, and, among the
wings, only the wings its package docstring names under "May import:" (the table
below says the same). Every ``import`` and ``from ... import`` of every module counts,
inside functions too, read with ``ast`` without importing anything.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator, Mapping
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = SRC / "blobgate"

GROUND = {"config", "errors", "reference", "jsontext", "expiring", "decision"}
GATE = {"gate"}
DOORS = {"__main__", "cli", "server", "app", "services", "api", "blobs", "stream", "warmup",
         "health", "admin", "explain", "explain_client"}
ORDER = ("routing", "ops", "caches", "registry")  # each wing may import those before it
WINGS: dict[str, set[str]] = {  # wing: the other wings it may import (and the ground floor)
    **{wing: set(ORDER[:i]) for i, wing in enumerate(ORDER)},
    "auth": set(ORDER),
    "backends": set(ORDER),
    "devstack": {*ORDER, "auth"},
}
FLOORS = {**dict.fromkeys(GROUND, 0), **dict.fromkeys(WINGS, 1), **dict.fromkeys(GATE, 2),
          **dict.fromkeys(DOORS, 3)}
FLOOR_NAMES = ("the ground floor", "a wing", "the gate", "a front door")


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imported(module: str, path: Path, known: Mapping[str, Path]) -> Iterator[str]:
    """The blobgate modules ``module`` imports: ``from a import b`` counts as ``a.b``
    when that is a module, else as ``a``."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                yield f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base


def graph() -> dict[str, set[str]]:
    known = modules()
    return {module: {name for name in imported(module, path, known)
                     if name in known and name != module}
            for module, path in known.items()}


def part(module: str) -> str:
    """The part of the house ``module`` belongs to: its wing or top-level module."""
    return module.split(".")[1] if "." in module else ""


def violations(edges: Mapping[str, set[str]]) -> list[str]:
    """Every import that runs up a floor, or to a wing its wing may not import."""
    found = []
    for module, targets in sorted(edges.items()):
        here = part(module)
        for target in sorted(targets):
            there = part(target)
            if not here or not there or here == there:
                continue  # the package itself, or within one part
            if here not in FLOORS or there not in FLOORS:
                found.append(f"{module} -> {target}: place the new part in this test's table")
            elif FLOORS[there] > FLOORS[here]:
                found.append(f"{module} -> {target}: {FLOOR_NAMES[FLOORS[here]]} imports "
                             f"{FLOOR_NAMES[FLOORS[there]]}, a floor up")
            elif FLOORS[here] == FLOORS[there] == 1 and there not in WINGS[here]:
                found.append(f"{module} -> {target}: the {here} wing may not import {there}")
    return found


def cycle(edges: Mapping[str, set[str]]) -> list[str]:
    """One import cycle (its modules, the first repeated at the end), or ``[]``."""
    done: set[str] = set()
    path: list[str] = []

    def visit(module: str) -> list[str]:
        if module in path:
            return [*path[path.index(module):], module]
        if module in done:
            return []
        path.append(module)
        for target in sorted(edges.get(module, ())):
            found = visit(target)
            if found:
                return found
        path.pop()
        done.add(module)
        return []

    for module in sorted(edges):
        found = visit(module)
        if found:
            return found
    return []


def declared(wing: str) -> set[str]:
    """The wings named in the "May import:" paragraph of ``wing``'s package docstring."""
    docstring = ast.get_docstring(ast.parse((PACKAGE / wing / "__init__.py").read_text()))
    assert docstring is not None, f"blobgate.{wing} has no docstring"
    paragraph = docstring.partition("May import:")[2].partition("\n\n")[0]
    assert paragraph, f"blobgate.{wing}'s docstring does not say what it may import"
    return set(re.findall(r"``(\w+)``", paragraph))


def test_every_module_has_its_place() -> None:
    unplaced = {part(module) for module in modules() if part(module) not in FLOORS}
    assert unplaced == {""}, f"place these in the table: {sorted(unplaced - {''})}"


def test_no_import_runs_up_a_floor_or_into_an_undeclared_wing() -> None:
    assert violations(graph()) == []


def test_no_import_cycle() -> None:
    assert cycle(graph()) == []


def test_the_wings_themselves_stand_in_one_order() -> None:
    edges = {f"blobgate.{wing}": {f"blobgate.{other}" for other in allowed}
             for wing, allowed in WINGS.items()}
    assert cycle(edges) == []


def test_each_wing_says_what_it_may_import() -> None:
    for wing, allowed in WINGS.items():
        if (PACKAGE / wing).is_dir():
            assert declared(wing) - GROUND == allowed, wing
    assert declared("config") == {"errors"}


def test_packages_hold_no_reexports() -> None:
    edges = graph()
    for module, path in modules().items():
        if path.name == "__init__.py" and module not in ("blobgate", "blobgate.config"):
            assert edges[module] == set(), module


def test_the_checks_catch_what_they_guard_against() -> None:
    up = {"blobgate.caches.replicas": {"blobgate.blobs"}, "blobgate.auth.callers":
          {"blobgate.gate"}, "blobgate.registry.harbordb": {"blobgate.auth.tokens"}}
    assert len(violations(up)) == 3
    assert violations({"blobgate.newpart.thing": {"blobgate.errors"}}) == [
        "blobgate.newpart.thing -> blobgate.errors: place the new part in this test's table"]
    circle = {"blobgate.blobs": {"blobgate.stream"}, "blobgate.stream": {"blobgate.blobs"}}
    assert cycle(circle) == ["blobgate.blobs", "blobgate.stream", "blobgate.blobs"]
    assert cycle({"blobgate.api": {"blobgate.gate"}, "blobgate.gate": set()}) == []
