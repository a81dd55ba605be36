"""The configuration table of docs/configuration.md, generated from the services' Config
classes so the documentation cannot drift from the code: `python -m tools.config_table`
prints it, `python -m tools.config_table --write` puts it between that page's
config-table markers."""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

from hitl.config import rows

ROOT = str(Path(__file__).resolve().parents[1])
SERVICES = ("feature_service", "trainer_service", "annotation_gateway")


def config_table() -> str:
    lines = ["| variable | default | meaning |", "| --- | --- | --- |"]
    seen: set[str] = set()
    for module in SERVICES:
        config = importlib.import_module(f"{module}.config").Config
        for env, default, meaning in rows(config):
            if env in seen:  # shared settings such as LOG_LEVEL appear once
                continue
            seen.add(env)
            # Paths inside the checkout are shown relative to it.
            default = default.replace(ROOT, ".").replace("|", "\\|") or "(empty)"
            lines.append(f"| `{env}` | `{default}` | {meaning.replace('|', '/')} |")
    return "\n".join(lines)


def with_table(readme: str) -> str:
    """`readme` with the text between the config-table markers replaced by the table."""
    start, end = "<!-- config-table:start -->", "<!-- config-table:end -->"
    head, _, rest = readme.partition(start)
    _, _, tail = rest.partition(end)
    return f"{head}{start}\n{config_table()}\n{end}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.config_table",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true",
                        help="update docs/configuration.md in place instead of printing the table")
    if parser.parse_args(argv).write:
        path = Path(ROOT) / "docs" / "configuration.md"
        path.write_text(with_table(path.read_text()))
    else:
        print(config_table())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
