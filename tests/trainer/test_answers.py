"""Which answer is in force when several people answered an item, on a real SQLite log:
the majority of one vote per annotator, a tie trains on nothing, a recheck never votes;
skips and unsure marks are kept apart from the answers, durable, undoable."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from trainer_service.domain import Annotation, Label, Split, Strategy
from trainer_service.store.answers import contested, resolve, tally
from trainer_service.store.database import Database
from trainer_service.store.labels import LabelLog

POS, NEG, SKIP, UNSURE = Label.POSITIVE, Label.NEGATIVE, Label.SKIP, Label.UNSURE


def answer(aid: str, label: Label, annotator: str, item: str = "x",
           strategy: Strategy = Strategy.UNCERTAIN, note: str = "") -> Annotation:
    return Annotation(aid, item, label, annotator, strategy, "v1", 900, Split.POOL, time.time(),
                      note=note)


def test_one_vote_per_annotator_and_the_majority_rules() -> None:
    first = answer("1", POS, "ann")
    review = answer("2", NEG, "bob", strategy=Strategy.REVIEW)
    assert resolve([first]) is first
    assert resolve([first, review]) is None and contested([first, review])
    third = answer("3", NEG, "cat", strategy=Strategy.REVIEW)
    assert resolve([first, review, third]) is third
    assert tally([first, review, third]) == (1, 2)
    # A second answer of the same person replaces their vote (latest wins, as before).
    again = answer("4", NEG, "ann")
    assert resolve([first, again]) is again


def test_a_recheck_measures_but_never_votes() -> None:
    first = answer("1", POS, "ann")
    repeat = answer("2", NEG, "ann", strategy=Strategy.RECHECK)
    assert resolve([first, repeat]) is first
    # Alone (the earlier answer withdrawn), it is the only answer there is.
    assert resolve([repeat]) is repeat


async def test_passes_are_apart_from_answers_durable_and_undoable(tmp_path: Path) -> None:
    log = LabelLog(Database(tmp_path / "labels.sqlite3"))
    await log.add(answer("s1", SKIP, "ann", "a"))
    await log.add(answer("u1", UNSURE, "bob", "a", note="too dark"))
    await log.add(answer("y1", POS, "cat", "b"))
    assert "a" not in log.active and log.current("a") is None
    assert set(log.passes["a"]) == {"s1", "u1"}
    assert log.passed_by("ann") == {"a": 1} and log.passed_by("cat") == {}
    await log.undo("s1", "ann")
    assert log.passed_by("ann") == {} and log.passes["a"] == ["u1"]
    await log.database.close()
    reopened = LabelLog(Database(tmp_path / "labels.sqlite3"))
    assert reopened.annotations["u1"].note == "too dark"
    assert reopened.passes == {"a": ["u1"]} and reopened.passed_by("bob") == {"a": 1}
    assert reopened.current("b").label == POS
    assert reopened.by_annotator == {"ann": ["s1"], "bob": ["u1"], "cat": ["y1"]}
    await reopened.database.close()


async def test_a_log_written_before_notes_gains_the_column(tmp_path: Path) -> None:
    path = tmp_path / "labels.sqlite3"
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL,
            annotation_id TEXT NOT NULL, item_id TEXT NOT NULL, label INTEGER NOT NULL,
            annotator TEXT NOT NULL, strategy INTEGER NOT NULL, model_version TEXT NOT NULL,
            duration_ms INTEGER NOT NULL, split INTEGER NOT NULL, time REAL NOT NULL,
            UNIQUE (annotation_id, kind));
        INSERT INTO events (kind, annotation_id, item_id, label, annotator, strategy,
            model_version, duration_ms, split, time)
            VALUES ('add', 'old', 'x', 2, 'ann', 3, 'v1', 10, 1, 1.0);""")
    db.commit()
    db.close()
    log = LabelLog(Database(path))
    assert log.current("x").label == NEG and log.current("x").note == ""
    await log.add(answer("new", UNSURE, "ann", "y", note="blurry"))
    await log.database.close()
    reopened = LabelLog(Database(path))
    assert reopened.annotations["new"].note == "blurry"
    await reopened.database.close()
