"""The tasks file (TRAINER_TASKS_FILE): the tasks a trainer answers, declared in TOML, e.g.
mounted from a Kubernetes ConfigMap:

    default = "bicycle"          # calls naming no task go here (default: the first)

    [[task]]
    name = "bicycle"
    display_name = "Bicycle"
    question = "Is there a bicycle in this image?"

    [[task]]
    name = "hydrant"
    display_name = "Fire hydrant"
    positive_class = "source_class=Hydrant"
    target_f1 = 0.9
    guidelines = "Count a hydrant even when it is partly hidden."

A task's display name defaults to its name; its target and mix to the trainer's settings;
no positive class means the dataset's own labels, and the detector class is `auto` (the
class of the task's Open Images label, else of its display name). The file is the truth
for the tasks it names: each start defines them as written (`archived = true` archives
one), and a task it no longer names is archived (its labels and models stay).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, replace
from pathlib import Path

from trainer_service.config import Config
from trainer_service.tasks.spec import FILE, TaskError, TaskSpec, from_dict, settings_task

TOP_KEYS = frozenset({"default", "task"})


@dataclass(frozen=True)
class TasksFile:
    tasks: tuple[TaskSpec, ...]
    default: str


def parse_tasks(text: str, defaults: TaskSpec, where: str = "tasks file") -> TasksFile:
    """The tasks of a file's text; TaskError naming the file and the task when one cannot
    be used."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TaskError(f"{where}: not valid TOML ({exc})") from None
    unknown = sorted(set(data) - TOP_KEYS)
    if unknown:
        raise TaskError(f"{where}: unknown key {unknown[0]!r} (expected 'default' and "
                        "[[task]] tables)")
    tables = data.get("task", [])
    if not isinstance(tables, list) or not tables or not all(
            isinstance(t, dict) for t in tables):
        raise TaskError(f"{where}: expected at least one [[task]] table")
    base = replace(defaults, question="", guidelines="", archived=False, source=FILE,
                   positive_class="", detector_class="auto")
    tasks: list[TaskSpec] = []
    for n, table in enumerate(tables, 1):
        try:
            spec = from_dict(table, base)
        except TaskError as exc:
            raise TaskError(f"{where}: task {n} ({table.get('name', 'unnamed')}): {exc}"
                            ) from None
        if any(t.name == spec.name for t in tasks):
            raise TaskError(f"{where}: task {spec.name!r} is named twice")
        tasks.append(replace(spec, source=FILE))
    default = data.get("default", tasks[0].name)
    if not any(t.name == default and not t.archived for t in tasks):
        raise TaskError(f"{where}: default {default!r} is not one of its active tasks")
    return TasksFile(tuple(tasks), str(default))


def read_tasks_file(path: Path, defaults: TaskSpec) -> TasksFile:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TaskError(f"{path}: cannot be read ({exc})") from None
    return parse_tasks(text, defaults, str(path))


def declared_tasks(config: Config) -> TasksFile:
    """The tasks the trainer is told to answer: the tasks file's, or the one task its
    settings describe."""
    settings = settings_task(config)
    if not config.tasks_file:
        return TasksFile((settings,), settings.name)
    return read_tasks_file(Path(config.tasks_file), settings)
