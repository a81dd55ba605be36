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


def global_args(path: Path) -> dict[str, str]:
    """The ARGs before the first FROM, with their defaults (what FROM lines may use)."""
    found: dict[str, str] = {}
    for keyword, rest in instructions(path.read_text()):
        if keyword == "FROM":
            break
        if keyword == "ARG":
            key, _, default = rest.partition("=")
            found[key] = shlex.split(default)[0] if shlex.split(default) else ""
    return found


def stages(path: Path) -> list[Stage]:
    """Each stage, its base with the global ARGs' defaults filled in."""
    result: list[Stage] = []
    defaults = global_args(path)
    for keyword, rest in instructions(path.read_text()):
        if keyword == "FROM":
            words = rest.split()
            base = re.sub(r"\$\{(\w+)\}|\$(\w+)",
                          lambda m: defaults[m.group(1) or m.group(2)], words[0])
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else ""
            result.append(Stage(base, name))
        elif result:
            result[-1].instructions.append((keyword, rest))
    return result


def arg_default(stage: Stage, name: str) -> str | None:
    for value in stage.args("ARG"):
        key, sep, default = value.partition("=")
        if key == name:
            return shlex.split(default)[0] if sep and shlex.split(default) else ""
    return None
