"""Options shared by every test tier."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

# Debian's chromium, driven by Playwright (which never downloads a browser of its own here).
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking",
                 "--disable-component-update", "--headless"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--long", action="store_true", default=False,
                     help="run the long forms of the reliability and hostile-input tests "
                          "(`make reliability`); the short forms run in `make test`")


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
