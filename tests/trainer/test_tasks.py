"""Tasks in plain Python over a real SQLite file: what a task may be, the tasks file, the
registry across restarts, a label log per task (and a log and servings from before tasks
given to the default task), and a manifest column read as the positive class."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from dataclasses import replace
from pathlib import Path

import pytest

from trainer_service.config import Config
from trainer_service.datasets.local import load_manifest
from trainer_service.domain import Annotation, Label, Split, Strategy
from trainer_service.store.database import Database
from trainer_service.store.labels import LabelLog
from trainer_service.store.served import ServedLog
from trainer_service.store.served import migrate as migrate_served
from trainer_service.tasks.file import parse_tasks
from trainer_service.tasks.registry import TaskDeclared, TaskExists, TaskRegistry
from trainer_service.tasks.running import TaskArchived, TaskSet, TaskStarting
from trainer_service.tasks.spec import (
    API,
    FILE,
    TaskError,
    TaskSpec,
    check,
    from_dict,
    settings_task,
    task_config,
)

DEFAULTS = settings_task(Config())
FILE_TEXT = """
default = "hydrant"

[[task]]
name = "bicycle"
display_name = "Bicycle"

[[task]]
name = "hydrant"
display_name = "Fire hydrant"
question = "Is there a fire hydrant?"
positive_class = "source_class=Hydrant"
detector_class = "fire hydrant"
target_f1 = 0.9
mix = "random=1"
guidelines = "Count a hydrant even when it is partly hidden."
"""


@pytest.mark.parametrize(("field", "value", "words"), [
    ("name", "Bikes", "lowercase"), ("name", "-x", "starting"), ("name", "a" * 41, "1 to 40"),
    ("display_name", " ", "display_name is required"),
    ("positive_class", "Hydrant", "column=value"), ("positive_class", "=x", "column=value"),
    ("target_f1", 0.0, "target_f1"), ("mix", "often=1", "mix"),
])
def test_a_task_that_cannot_be_used_is_refused_naming_the_field(field, value, words):
    with pytest.raises(TaskError, match=words):
        check(replace(TaskSpec("ok", "Ok"), **{field: value}))


def test_a_tasks_file_defines_its_tasks_over_the_settings():
    declared = parse_tasks(FILE_TEXT, DEFAULTS)
    assert declared.default == "hydrant"
    bicycle, hydrant = declared.tasks
    assert (bicycle.source, bicycle.positive_class, bicycle.target_f1) == (FILE, "", 0.85)
    assert bicycle.mix == DEFAULTS.mix and bicycle.question == ""
    assert (hydrant.column_value, hydrant.label_id) == ("source_class=Hydrant", "")
    config = task_config(Config(), hydrant)
    assert (config.positive_class, config.display_name, config.target_f1) == (
        "source_class=Hydrant", "Fire hydrant", 0.9)
    assert config.mix[2] == ("random", 1.0) and config.question == "Is there a fire hydrant?"
    assert task_config(Config(), replace(hydrant, positive_class="/m/01pns0")).label_id \
        == "/m/01pns0"


@pytest.mark.parametrize(("text", "words"), [
    ("[[task]]\nname = 'a'\ncolour = 'red'", "unknown field 'colour'"),
    ("[[task]]\nname = 'a'\n[[task]]\nname = 'a'", "named twice"),
    ("default = 'b'\n[[task]]\nname = 'a'", "default 'b'"),
    ("default = 'a'\n[[task]]\nname = 'a'\narchived = true", "default 'a'"),
    ("tasks = 1", "unknown key 'tasks'"),
    ("[[task]]\nname = 'a'\ntarget_f1 = 'high'", "target_f1 must be a float"),
    ("name = ", "not valid TOML"),
    ("", "at least one"),
])
def test_a_tasks_file_that_cannot_be_used_says_why(text, words):
    with pytest.raises(TaskError, match=words):
        parse_tasks(text, DEFAULTS, "tasks.toml")


@pytest.fixture
def database(tmp_path: Path):  # type: ignore[no-untyped-def]
    db = Database(tmp_path / "labels.sqlite3")
    yield db
    asyncio.run(db.close())


async def test_the_registry_keeps_tasks_across_restarts_and_archives_what_is_no_longer_declared(
        tmp_path: Path):
    declared = parse_tasks(FILE_TEXT, DEFAULTS).tasks
    database = Database(tmp_path / "labels.sqlite3")
    registry = TaskRegistry(database)
    await registry.declare(declared)
    added = await registry.add(from_dict({"name": "bus", "display_name": "Bus"}, DEFAULTS))
    assert added.source == API
    with pytest.raises(TaskExists):
        await registry.add(added)
    with pytest.raises(TaskDeclared, match="tasks file"):
        await registry.set_archived("hydrant", True)
    await registry.set_archived("bus", True)
    await database.close()

    database = Database(tmp_path / "labels.sqlite3")
    registry = TaskRegistry(database)
    assert list(registry.specs) == ["bicycle", "hydrant", "bus"]
    assert registry.specs["bus"].archived and registry.specs["hydrant"] == declared[1]
    await registry.declare(declared[:1])  # hydrant left the file: archived, not deleted
    assert registry.specs["hydrant"].archived and not registry.specs["bicycle"].archived
    await registry.declare(declared)  # and back
    assert not registry.specs["hydrant"].archived
    await database.close()


class Running:
    def __init__(self, spec: TaskSpec) -> None:
        self.spec, self.closed = spec, False

    async def close(self) -> None:
        self.closed = True


async def test_the_running_set_starts_archives_and_restores_tasks(database: Database):
    started: list[str] = []

    async def start(spec: TaskSpec) -> Running:
        started.append(spec.name)
        return Running(spec)

    tasks: TaskSet[Running] = TaskSet(start)
    with pytest.raises(TaskStarting):
        tasks.get("")
    declared = parse_tasks(FILE_TEXT, DEFAULTS)
    await tasks.open(TaskRegistry(database), declared.tasks, declared.default)
    assert tasks.get("").spec.name == "hydrant" and started[0] == "hydrant"
    await asyncio.sleep(0.05)  # the others start in the background
    assert tasks.get("bicycle").spec.name == "bicycle"
    bus = await tasks.create(from_dict({"name": "bus", "display_name": "Bus"}, DEFAULTS))
    running = tasks.get(bus.name)
    await tasks.set_archived("bus", True)
    assert running.closed and tasks.state("bus") == "archived"
    with pytest.raises(TaskArchived):
        tasks.get("bus")
    await tasks.set_archived("bus", False)
    assert tasks.get("bus") is not running and tasks.state("bus") == "serving"
    await tasks.close()


def _annotation(annotation_id: str, item_id: str, label: Label = Label.POSITIVE) -> Annotation:
    return Annotation(annotation_id, item_id, label, "ann", Strategy.RANDOM, "", 500,
                      Split.POOL, 1.0)


async def test_each_task_reads_and_writes_its_own_labels_and_ids_are_unique_per_task(
        database: Database):
    bicycle = LabelLog(database, "bicycle")
    hydrant = LabelLog(database, "hydrant")
    assert (await bicycle.add(_annotation("same-id", "a")))[1] is False
    # The same client id in another task is another label, not a duplicate.
    stored, duplicate = await hydrant.add(_annotation("same-id", "b", Label.NEGATIVE))
    assert not duplicate and stored.item_id == "b"
    assert (await hydrant.add(_annotation("same-id", "b", Label.NEGATIVE)))[1] is True
    await hydrant.undo("same-id", "ann")
    again = LabelLog(database, "bicycle")
    assert list(again.annotations) == ["same-id"] and again.current("a") is not None
    assert LabelLog(database, "hydrant").current("b") is None  # undone there only
    assert LabelLog(database, "bus").annotations == {}


def test_a_log_from_before_tasks_goes_to_the_default_task_once(tmp_path: Path):
    path = tmp_path / "labels.sqlite3"
    with sqlite3.connect(path) as db:  # the schema of a trainer from before tasks
        db.execute("""CREATE TABLE events (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            kind TEXT NOT NULL CHECK (kind IN ('add', 'undo')),
            annotation_id TEXT NOT NULL, item_id TEXT NOT NULL, label INTEGER NOT NULL,
            annotator TEXT NOT NULL, strategy INTEGER NOT NULL, model_version TEXT NOT NULL,
            duration_ms INTEGER NOT NULL, split INTEGER NOT NULL, time REAL NOT NULL,
            UNIQUE (annotation_id, kind))""")
        db.executemany("INSERT INTO events (kind, annotation_id, item_id, label, annotator, "
                       "strategy, model_version, duration_ms, split, time) VALUES "
                       "(?, ?, ?, 1, 'ann', 2, '', 5, 1, 1.0)",
                       [("add", "x1", "i1"), ("add", "x2", "i2"), ("undo", "x2", "i2")])
    database = Database(path)
    try:
        old = LabelLog(database, "bicycle")
        assert sorted(old.active) == ["i1"] and old.annotations["x2"].undone
        assert old.annotations["x1"].note == ""
        assert LabelLog(database, "hydrant").annotations == {}
        assert sorted(LabelLog(database, "bicycle").annotations) == ["x1", "x2"]  # once
        asyncio.run(old.add(_annotation("x3", "i3")))
        assert old.version == 4  # the sequence goes on after the old rows
    finally:
        asyncio.run(database.close())


def test_a_manifest_column_value_is_the_positive_class(tmp_path: Path):
    manifest = tmp_path / "tiles.csv"
    rows = [(f"h{i}", "Hydrant") for i in range(10)] + [(f"c{i}", "Car") for i in range(30)]
    # The label column says something else: with a positive class it is not read at all.
    manifest.write_text("id,location,label,source_class\n" + "".join(
        f"{i},{i}.jpg,maybe,{c}\n" for i, c in rows) + "e,e.jpg,,\n")
    items = [i for batch, _ in load_manifest(manifest, 0.2, 0.2, 0,
                                             positive="Source_Class=hydrant")
             for i in batch]
    known = {i.id: i.known_label for i in items if i.split != Split.POOL}
    assert Label.POSITIVE in known.values() and Label.NEGATIVE in known.values()
    assert all((label == Label.POSITIVE) == item_id.startswith("h")
               for item_id, label in known.items())
    assert len(items) == 41 and next(i for i in items if i.id == "e").split == Split.POOL
    with pytest.raises(ValueError, match="no column 'colour'"):
        list(load_manifest(manifest, 0.2, 0.2, 0, positive="colour=red"))


def test_items_served_before_tasks_stay_answerable_in_the_default_task_only(tmp_path: Path):
    path = tmp_path / "labels.sqlite3"
    with sqlite3.connect(path) as db:  # the servings of a trainer from before tasks
        db.execute("""CREATE TABLE served (
            annotator TEXT NOT NULL, item_id TEXT NOT NULL, strategy INTEGER NOT NULL,
            model_version TEXT NOT NULL, served_at REAL NOT NULL, expires REAL NOT NULL,
            PRIMARY KEY (annotator, item_id)) WITHOUT ROWID""")
        db.execute("INSERT INTO served VALUES ('ann', 'i1', 2, '', ?, ?)",
                   (time.time(), time.time() + 600))
    database = Database(path)
    try:
        database.call(migrate_served, "bicycle")
        assert ServedLog(database, 60, "bicycle").answerable("ann", "i1") is not None
        assert ServedLog(database, 60, "hydrant").answerable("ann", "i1") is None
    finally:
        asyncio.run(database.close())
