"""Options shared by every test tier."""

from __future__ import annotations

import pytest


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


# Shared by tests/reliability and tests/hostile: one feature service, trainer and gateway
# per session however many of their tests run.
from tests.reliability.fixtures import (  # noqa: E402, F401
    shape,
    shared_feature,
    shared_gateway,
    shared_trainer,
    tiles,
)
