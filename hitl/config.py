"""Configuration from environment variables, parsed once into a frozen dataclass.

Each service declares its settings as dataclass fields made with `setting()`; `load()`
reads them all at start and fails fast, naming the variable and an example, when a value
is malformed. `rows()` feeds the README's configuration table and `parse_command_line()`
a service's `--help`.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import textwrap
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

T = TypeVar("T")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class ConfigError(ValueError):
    """A configuration value is missing or malformed; the message names the variable."""


def setting(env: str, default: Any, help: str, example: str | None = None,
            parse: Callable[[str], Any] | None = None, secret: bool = False) -> Any:
    """A dataclass field read from the environment variable `env`; a `secret` one is
    left out of the config's repr, so that it never reaches a log line."""
    meta = {"env": env, "help": help, "example": example, "parse": parse}
    if isinstance(default, (list, dict, set)):
        raise TypeError("use a tuple for sequence defaults: the config is frozen")
    return dataclasses.field(default=default, metadata=meta, repr=not secret)


def parse_bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError("expected one of 1/0, true/false, yes/no, on/off")


def parse_list(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _parser(default: Any) -> Callable[[str], Any]:
    if isinstance(default, bool):
        return parse_bool
    if isinstance(default, (int, float)):
        return type(default)
    if isinstance(default, tuple):
        return parse_list
    return str


def load(cls: type[T], environ: Mapping[str, str] | None = None) -> T:
    """Builds `cls` from the environment; raises ConfigError on a bad value."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        env = f.metadata.get("env")
        raw = environ.get(env) if env else None
        if raw is None or raw.strip() == "":
            continue
        parse = f.metadata["parse"] or _parser(f.default)
        try:
            values[f.name] = parse(raw.strip())
        except (ValueError, TypeError) as exc:
            example = f.metadata["example"] or f.default
            shown = "(hidden)" if not f.repr else repr(raw)
            raise ConfigError(
                f"{env}={shown} is not valid ({exc}); for example {env}={example}") from None
    try:
        return cls(**values)
    except (ValueError, TypeError) as exc:
        raise ConfigError(str(exc)) from None


def load_or_exit(cls: type[T]) -> T:
    """`load()` for a service's main: prints the error and exits with status 2."""
    try:
        return load(cls)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def require(condition: bool, env: str, message: str, example: str) -> None:
    """For __post_init__ checks that span fields: raises ConfigError naming `env`."""
    if not condition:
        raise ConfigError(f"{env}: {message}; for example {env}={example}")


def _show(value: Any) -> str:
    return format(value, ".4g") if isinstance(value, float) else str(value)


def rows(cls: type) -> Iterator[tuple[str, str, str]]:
    """(variable, default, meaning) for every setting of `cls`."""
    for f in dataclasses.fields(cls):
        if f.metadata.get("env"):
            default = f.default
            if isinstance(default, tuple):  # lists, name=value pairs and numbers
                default = ",".join(x if isinstance(x, str) else "=".join(map(_show, x))
                                   if isinstance(x, tuple) else _show(x) for x in default)
            elif isinstance(default, bool):
                default = str(default).lower()
            yield f.metadata["env"], str(default), f.metadata["help"]


def environment_help(cls: type) -> str:
    """Every variable `cls` reads, its default and meaning, as plain text for `--help`."""
    lines = ["environment variables (default in brackets):"]
    for env, default, meaning in rows(cls):
        lines.append(f"  {env} [{default}]")
        lines.extend(textwrap.wrap(meaning, 76, initial_indent=" " * 6,
                                   subsequent_indent=" " * 6))
    return "\n".join(lines)


def program_name(module: str) -> str:
    """How the program was started: `python -m <module>` or its console script's name."""
    script = os.path.basename(sys.argv[0])
    return f"python -m {module}" if script.endswith(".py") or script in ("-c", "") else script


def parse_command_line(cls: type, module: str, description: str,
                       argv: list[str] | None = None) -> argparse.Namespace:
    """A service's command line: only `--help`, which prints `description` and the
    variables of `cls` and exits 0; every setting comes from the environment."""
    parser = argparse.ArgumentParser(prog=program_name(module),
                                     description=textwrap.fill(description, 79),
                                     epilog=environment_help(cls),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    return parser.parse_args(argv)
