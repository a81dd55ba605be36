"""The container tier runs only when asked for (`make test-containers`, i.e. `-m
containers`). Otherwise, or where no container engine is, the images are not built or
the shared tiles are absent, its tests are left out with one line saying why."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import TILES
from tools.containers import NO_ENGINE, engine, exists
from tools.images import REPOSITORIES, tags

HERE = Path(__file__).parent
REASON = pytest.StashKey[str]()


def refusal(config: pytest.Config) -> str | None:
    """Why the tier cannot run now, or None."""
    if "containers" not in (config.option.markexpr or ""):
        return "they run with `make test-containers` (-m containers)"
    if engine() is None:
        return NO_ENGINE
    if engine() != "podman":
        return f"the pods run with podman kube play; this machine has {engine()} only"
    missing = [tags(s)[1] for s in REPOSITORIES if not exists("image", tags(s)[1])]
    if missing:
        return f"images not built ({', '.join(missing)}): run `make images`"
    if not TILES.exists():
        return (f"test data not found at {TILES} (the shared data folder beside the "
                "checkout; set HITL_TEST_DATA to point elsewhere)")
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    ours = [item for item in items if item.path.is_relative_to(HERE)]
    reason = refusal(config) if ours else None
    if reason is None:
        return
    config.hook.pytest_deselected(items=ours)
    items[:] = [item for item in items if not item.path.is_relative_to(HERE)]
    config.stash[REASON] = reason


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter,
                            config: pytest.Config) -> None:
    if REASON in config.stash:
        terminalreporter.write_line(f"tests/containers left out: {config.stash[REASON]}")
