"""Prints the README's configuration table from the services' Config classes, so the
documentation cannot drift from the code: `python -m hitl.docs`."""

from __future__ import annotations

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


if __name__ == "__main__":
    print(config_table())
