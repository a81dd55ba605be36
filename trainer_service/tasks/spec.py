"""A task: one question asked of the dataset's images, with its name (in URLs), its words
(display name, question, guidelines), its positive class, the detector class that guides
it, its target F1 and its sampling mix.

The positive class says which known labels the dataset gives the task:
- empty: the dataset's own labels (a manifest's `label` column, or Open Images'
  TRAINER_LABEL_ID), as a single-task trainer has always read them;
- an Open Images label id (`/m/01pns0`): that label's verified answers;
- `column=value` (`source_class=Hydrant`): a manifest's rows whose column holds the value
  are positives, every other row with a value a negative.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from trainer_service.config import DEFAULT_MIX, Config, parse_mix

NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,39}")
MAX_TEXT = {"display_name": 80, "question": 300, "guidelines": 20_000, "positive_class": 200,
            "detector_class": 80}
SETTINGS, FILE, API = "settings", "file", "api"  # where a task's definition comes from


class TaskError(ValueError):
    """A task definition that cannot be used; the message names the field."""


@dataclass(frozen=True)
class TaskSpec:
    name: str
    display_name: str
    question: str = ""
    guidelines: str = ""
    positive_class: str = ""
    detector_class: str = "auto"
    target_f1: float = 0.85
    mix: str = DEFAULT_MIX
    archived: bool = False
    source: str = API

    @property
    def label_id(self) -> str:
        """The Open Images label the task takes its known labels from, if it names one."""
        return self.positive_class if self.positive_class.startswith("/m/") else ""

    @property
    def column_value(self) -> str:
        """`column=value` when the positive class is a manifest column's value."""
        return "" if self.label_id else self.positive_class

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


FIELDS = frozenset(f.name for f in fields(TaskSpec))


def check(spec: TaskSpec) -> TaskSpec:
    """The spec as given, or TaskError naming what is wrong."""
    if not NAME.fullmatch(spec.name):
        raise TaskError(f"name {spec.name!r}: 1 to 40 lowercase letters, digits and '-', "
                        "starting with a letter or digit")
    if not spec.display_name.strip():
        raise TaskError("display_name is required")
    for name, limit in MAX_TEXT.items():
        if len(getattr(spec, name)) > limit:
            raise TaskError(f"{name} is longer than {limit} characters")
    column, sep, value = spec.column_value.partition("=")
    if spec.column_value and not (sep and column.strip() and value.strip()):
        raise TaskError(f"positive_class {spec.positive_class!r}: an Open Images label id "
                        "(/m/...) or column=value (e.g. source_class=Hydrant)")
    if not 0 < spec.target_f1 <= 1:
        raise TaskError("target_f1 must be in (0, 1]")
    try:
        parse_mix(spec.mix)
    except ValueError as exc:
        raise TaskError(f"mix {spec.mix!r}: {exc}") from None
    if spec.source not in (SETTINGS, FILE, API):
        raise TaskError(f"source {spec.source!r} is not one of {SETTINGS}, {FILE}, {API}")
    return spec


def from_dict(raw: dict[str, Any], defaults: TaskSpec | None = None) -> TaskSpec:
    """A spec from plain values (a tasks file's table, a stored row, an API request):
    unknown keys are refused by name; missing ones come from `defaults`."""
    unknown = sorted(set(raw) - FIELDS)
    if unknown:
        raise TaskError(f"unknown field {unknown[0]!r} (known: {', '.join(sorted(FIELDS))})")
    name = raw.get("name")
    if not isinstance(name, str):
        raise TaskError("name is required")
    values = {**(asdict(defaults) if defaults else {}), "display_name": name, **raw}
    for key, value in values.items():
        wanted = bool if key == "archived" else float if key == "target_f1" else str
        if wanted is float and isinstance(value, int) and not isinstance(value, bool):
            values[key] = value = float(value)
        if not isinstance(value, wanted):
            raise TaskError(f"{key} must be a {wanted.__name__}")
    cleaned: dict[str, Any] = {k: v.strip() if isinstance(v, str) and k != "guidelines"
                               else v for k, v in values.items()}
    return check(TaskSpec(**cleaned))


def settings_task(config: Config) -> TaskSpec:
    """The one task a trainer without a tasks file answers, from its TRAINER_* settings."""
    positive = config.positive_class or (config.label_id if config.dataset.lower() ==
                                         "openimages" else "")
    return check(TaskSpec(
        name=config.task, display_name=config.display_name, question=config.question,
        positive_class=positive, detector_class=config.detector_class,
        target_f1=config.target_f1, mix=mix_text(config.mix), source=SETTINGS))


def mix_text(mix: tuple[tuple[str, float], ...]) -> str:
    return ",".join(f"{name}={weight:g}" for name, weight in mix if weight > 0)


def task_config(config: Config, spec: TaskSpec) -> Config:
    """The trainer's settings as one task's parts read them: its label, words, target and
    mix in place of the process-wide ones."""
    return replace(config, display_name=spec.display_name, question=spec.question,
                   target_f1=spec.target_f1, mix=parse_mix(spec.mix),
                   label_id=spec.label_id or config.label_id,
                   positive_class=spec.column_value, detector_class=spec.detector_class,
                   task=spec.name)
