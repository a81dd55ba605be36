"""The code's shape: no import cycles, no service importing another, and the trainer's
generated stubs kept to the servicer, the conversion module and the feature-service
client. Read from the source, so nothing is imported."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from tests.support import ROOT

SERVICES = ("feature_service", "trainer_service", "annotation_gateway")
PACKAGES = (*SERVICES, "hitl", "bench", "tools")
TRAINER_STUB_USERS = {"trainer_service.server", "trainer_service.convert",
                      "trainer_service.features.extraction",
                      "trainer_service.features.calls"}


def _modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[:2] == ("hitl", "v1"):
                continue  # generated
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> Iterator[str]:
    """Every module `name` imports, at the top or inside functions."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            for alias in node.names:
                # `from package import module` imports that module; otherwise a name of base.
                submodule = f"{base}.{alias.name}"
                yield submodule if submodule in modules else base


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        graph[name] = {t for t in _imports(name, path, modules) if t in modules and t != name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_nothing_imports_in_a_circle() -> None:
    assert _cycles(_graph()) == []


def test_no_service_imports_another() -> None:
    crossing = [(a, b) for a, targets in _graph().items() for b in targets
                if a.split(".")[0] in SERVICES and b.split(".")[0] in SERVICES
                and a.split(".")[0] != b.split(".")[0]]
    assert crossing == []


def test_only_the_servicer_conversion_and_feature_client_use_the_trainers_stubs() -> None:
    modules = _modules()
    users = {name for name, path in modules.items() if name.startswith("trainer_service")
             and any(t.startswith("hitl.v1") for t in _imports(name, path, modules))}
    assert users <= TRAINER_STUB_USERS


# The trainer's rooms, and which rooms each may import (besides itself and the shared
# vocabulary `domain`, `config` and `metrics`). Lower rooms never import higher ones; the
# wiring at the top (`core`, `server`, `convert`, `status`, `loading`) may import any room,
# and no room imports the wiring.
TRAINER_ROOMS = {
    "store": set(),
    "datasets": set(),
    "features": {"store", "datasets"},
    "models": {"store", "datasets", "features"},
    "quality": {"store", "datasets", "features", "models"},
    "selection": {"store", "datasets", "features", "models", "quality"},
    "annotators": {"store", "datasets", "features", "models"},
    "outputs": {"store", "datasets", "features", "models"},
    "tasks": {"store", "datasets", "features"},
}
TRAINER_SHARED = {"domain", "config", "metrics"}
TRAINER_TOP_MODULES = 12


def _trainer_place(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "trainer_service" and len(parts) > 1 else None


def test_the_trainers_rooms_import_only_downwards() -> None:
    wrong = []
    for a, targets in _graph().items():
        room = _trainer_place(a)
        if room not in TRAINER_ROOMS:
            continue
        for b in targets:
            other = _trainer_place(b)
            if other is None or other == room or other in TRAINER_SHARED:
                continue
            if other not in TRAINER_ROOMS[room]:
                wrong.append((a, b))
    assert wrong == []


def test_every_trainer_room_says_what_it_owns() -> None:
    for room in TRAINER_ROOMS:
        init = ROOT / "trainer_service" / room / "__init__.py"
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and len(doc.split()) >= 20, f"{init} needs a paragraph on what it owns"


def test_the_trainers_top_level_is_only_wiring_and_vocabulary() -> None:
    top = sorted(p.name for p in (ROOT / "trainer_service").glob("*.py"))
    assert len(top) <= TRAINER_TOP_MODULES, top
    rooms = {p.name for p in (ROOT / "trainer_service").iterdir()
             if p.is_dir() and (p / "__init__.py").exists()}
    assert rooms == set(TRAINER_ROOMS)


MAX_LINES = 315  # "about 300": a module past it does more than one thing


def test_every_module_stays_small() -> None:
    """Product, tool and benchmark modules and the page's scripts (tests aside, whose
    files group many cases of one subject)."""
    roots = ["hitl", "feature_service", "trainer_service", "annotation_gateway", "tools",
             "bench"]
    files = [p for r in roots for p in (ROOT / r).rglob("*.py") if "v1" not in p.parts]
    files += list((ROOT / "web" / "js").glob("*.js"))
    long = {str(p.relative_to(ROOT)): n for p in files
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, long
