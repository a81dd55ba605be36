"""Options shared by every test tier."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# Before any test imports torch: OpenMP threads that spin while they wait make torch in a
# test process several times slower when the other test process (make test runs two) or
# a service takes the cores; the feature service sets the same for the same reason.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# Every feature service a test starts (the benchmarks' stacks included) skips the timing
# of its settings at start: 20 s of both cores each, where most extract a few dozen
# images. The tests of the calibration itself, and the benchmarks' tests that report it,
# ask for one explicitly.
os.environ.setdefault("FEATURE_CALIBRATION_S", "0")

# Debian's chromium, driven by Playwright (which never downloads a browser of its own here).
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking",
                 "--disable-component-update", "--headless"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--long", action="store_true", default=False,
                     help="run the long forms of the reliability and hostile-input tests "
                          "(`make reliability`); the short forms run in `make test`")


LONG_TIERS = {"bench", "reliability", "predict", "hostile"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The long files first (slow or browser tests, the tiers that start whole stacks), the
    many short ones after, each group in its order: with several test processes (`make
    test`), a long file started last would leave the others idle at the end."""
    def long(item: pytest.Item) -> bool:
        return (any(item.get_closest_marker(m) for m in ("slow", "browser"))
                or item.path.parent.name in LONG_TIERS)

    first = {item.path for item in items if long(item)}
    items.sort(key=lambda item: item.path not in first)  # stable: order kept within


# Folders whose files share session fixtures that take a while to start (tests/predict: a
# trainer that embeds tiles and trains a model): with several test processes
# (`make test`), each such folder runs in one of them, so that they start once.
ONE_PROCESS_FOLDERS = {"tests/predict"}


def pytest_xdist_make_scheduler(config: pytest.Config, log):  # type: ignore[no-untyped-def]
    from xdist.scheduler import LoadFileScheduling

    class ByFileOrSharedFolder(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            folder = path.rsplit("/", 1)[0]
            return folder if folder in ONE_PROCESS_FOLDERS else path

    return ByFileOrSharedFolder(config, log)


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # type: ignore[no-untyped-def]
    from tests.reliability import report

    text = report.table()
    if text:
        terminalreporter.write_sep("=", "reliability report")
        terminalreporter.write_line(text)


@pytest.fixture(scope="module")
def browser() -> Iterator:
    """A headless chromium for the browser tests of a module."""
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield instance
        instance.close()


# Shared by tests/reliability and tests/hostile: one feature service, trainer and gateway
# per session however many of their tests run.
from tests.reliability.fixtures import (  # noqa: E402, F401
    shape,
    shared_feature,
    shared_gateway,
    shared_trainer,
    tiles,
)
