"""Configuration is parsed once, strictly, and a bad value names its variable."""

from dataclasses import dataclass

import pytest

from hitl.config import ConfigError, load, require, rows, setting


@dataclass(frozen=True)
class Example:
    port: int = setting("EX_PORT", 50051, "gRPC port", "50051")
    ratio: float = setting("EX_RATIO", 0.5, "a fraction", "0.25")
    debug: bool = setting("EX_DEBUG", False, "debug mode")
    hosts: tuple[str, ...] = setting("EX_HOSTS", ("a",), "allowed hosts", "a,b")
    name: str = setting("EX_NAME", "x", "a name")

    def __post_init__(self) -> None:
        require(0 <= self.ratio <= 1, "EX_RATIO", "must be in [0, 1]", "0.25")


def test_defaults_and_parsing():
    assert load(Example, {}) == Example()
    cfg = load(Example, {"EX_PORT": "7", "EX_RATIO": "0.1", "EX_DEBUG": "yes",
                         "EX_HOSTS": "h1, h2,", "EX_NAME": " n "})
    assert (cfg.port, cfg.ratio, cfg.debug, cfg.hosts, cfg.name) == (7, 0.1, True,
                                                                    ("h1", "h2"), "n")


@pytest.mark.parametrize("env,value", [("EX_PORT", "fifty"), ("EX_DEBUG", "maybe"),
                                       ("EX_RATIO", "1.5"), ("EX_RATIO", "x")])
def test_bad_value_names_the_variable_and_an_example(env, value):
    with pytest.raises(ConfigError) as err:
        load(Example, {env: value})
    assert env in str(err.value)
    assert "for example" in str(err.value)


def test_rows_document_every_setting():
    table = {env: (default, meaning) for env, default, meaning in rows(Example)}
    assert table["EX_HOSTS"] == ("a", "allowed hosts")
    assert table["EX_DEBUG"][0] == "false"
    assert len(table) == 5


def test_the_documented_configuration_table_is_current():
    from tests.support import ROOT
    from tools.config_table import with_table

    page = (ROOT / "docs" / "configuration.md").read_text()
    assert with_table(page) == page, "run `python -m tools.config_table --write`"
