"""A small Dockerfile reader: instructions grouped by build stage."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from tests.support import ROOT

DOCKER = ROOT / "deploy" / "docker"
# Dockerfile -> the module it runs.
IMAGES = {"feature": "feature_service", "trainer": "trainer_service",
          "gateway": "annotation_gateway"}


@dataclass
class Stage:
    base: str
    name: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args(self, instruction: str) -> list[str]:
        return [a for i, a in self.instructions if i == instruction]


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = pending + stripped
        pending = ""
        keyword, _, rest = full.partition(" ")
        out.append((keyword.upper(), re.sub(r"\s+", " ", rest).strip()))
    return out


def stages(path: Path) -> list[Stage]:
    result: list[Stage] = []
    for keyword, rest in instructions(path.read_text()):
        if keyword == "FROM":
            words = rest.split()
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else ""
            result.append(Stage(words[0], name))
        elif result:
            result[-1].instructions.append((keyword, rest))
    return result


def arg_default(stage: Stage, name: str) -> str | None:
    for value in stage.args("ARG"):
        key, sep, default = value.partition("=")
        if key == name:
            return shlex.split(default)[0] if sep and shlex.split(default) else ""
    return None
