"""A task's evidence from the stored vectors: which detector class guides it (by name,
Open Images id or the task's own label), the vectors the models get, and a feature store
that keeps every class's evidence on a real SQLite file, so a task of another class reads
the same stored features without any new extraction."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from hitl.evidence import EVIDENCE_DIM, DetectorClass, class_evidence, task_vectors
from trainer_service.features.store import FeatureStore
from trainer_service.features.task_evidence import (
    Task,
    choose_row,
    extractor_key,
    extractor_record,
    stored_record,
    task_matrix,
)
from trainer_service.store.database import Database

CLASSES = [DetectorClass("Bicycle", "/m/0199g", "Bicycle"),
           DetectorClass("fire hydrant", "/m/01pns0", "Fire hydrant"),
           DetectorClass("cup")]
EMBEDDING = 3


def stored(n: int) -> np.ndarray:
    """n stored vectors: embedding k*10 + j, then class c's row all c + 1 (score first)."""
    rows = np.arange(n, dtype=np.float32)[:, None] * 10
    embedding = rows + np.arange(EMBEDDING, dtype=np.float32)
    evidence = np.concatenate([np.full((n, EVIDENCE_DIM), c + 1.0, np.float32)
                               for c in range(len(CLASSES))], axis=1)
    return np.concatenate([embedding, evidence], axis=1)


def test_the_task_names_its_class_by_name_id_or_label() -> None:
    assert choose_row(CLASSES, "Fire hydrant", "", "") == 1
    assert choose_row(CLASSES, "/m/01PNS0", "", "") == 1
    assert choose_row(CLASSES, "auto", "/m/0199g", "Hydrant") == 0  # the label id first
    assert choose_row(CLASSES, "auto", "", "fire hydrant") == 1  # then the display name
    assert choose_row(CLASSES, "auto", "", "Hydrant") is None  # no class of that name
    assert choose_row(CLASSES, "none", "/m/0199g", "Bicycle") is None
    assert choose_row(CLASSES, "Cup", "", "") == 2


def test_an_unknown_class_leaves_the_task_without_evidence_and_says_so(
        caplog: pytest.LogCaptureFixture) -> None:
    assert choose_row(CLASSES, "Crosswalk", "", "") is None
    assert "no class 'Crosswalk'" in caplog.text


def test_task_vectors_are_the_embedding_and_one_class_row() -> None:
    x = stored(4)
    assert x.shape == (4, EMBEDDING + 3 * EVIDENCE_DIM)
    hydrant = task_vectors(x, EMBEDDING, 1)
    assert hydrant.shape == (4, EMBEDDING + EVIDENCE_DIM) and hydrant.dtype == np.float32
    np.testing.assert_array_equal(hydrant[:, :EMBEDDING], x[:, :EMBEDDING])
    assert (hydrant[:, EMBEDDING:] == 2).all()
    assert not task_vectors(x, EMBEDDING, None)[:, EMBEDDING:].any()
    assert (class_evidence(x[0], EMBEDDING, 2) == 3).all()
    with pytest.raises(ValueError, match="beyond"):
        class_evidence(x, EMBEDDING, 3)


def test_the_extractor_record_says_which_class_and_layout() -> None:
    record = extractor_record("lite", "7", EMBEDDING, "every-class-1", CLASSES, 1)
    assert record == {"name": "lite", "version": "7", "dimension": EMBEDDING + EVIDENCE_DIM,
                      "embedding_dimension": EMBEDDING,
                      "stored_dimension": EMBEDDING + 3 * EVIDENCE_DIM,
                      "evidence_version": "every-class-1", "detector_class": "fire hydrant",
                      "evidence_row": 1}
    none = extractor_record("lite", "7", EMBEDDING, "every-class-1", CLASSES, None)
    assert none["detector_class"] == "" and none["evidence_row"] == -1
    assert not task_matrix(none, stored(2))[:, EMBEDDING:].any()
    # A record of an earlier release kept the task's vectors themselves.
    earlier = {"name": "lite", "version": "7", "dimension": 5, "embedding_dimension": 3}
    np.testing.assert_array_equal(task_matrix(earlier, np.ones((2, 5))), np.ones((2, 5)))


def describe_info(version: str = "7") -> SimpleNamespace:
    """What a feature service's Describe gives, as the trainer reads it."""
    return SimpleNamespace(
        name="lite", version=version, embedding_dimension=EMBEDDING,
        evidence_version="every-class-1", target_class="Bicycle",
        detector_classes=[SimpleNamespace(name=c.name, open_images_id=c.open_images_id,
                                          open_images_name=c.open_images_name)
                          for c in CLASSES])


async def test_tasks_of_other_classes_read_the_same_stored_features(tmp_path: Path) -> None:
    """Two tasks of one trainer, each with its own class, over one stored copy: each
    reads its class's row; a task added later reads what is stored, and a new extractor
    version drops the stored features for every task at once."""
    database = Database(tmp_path / "labels.sqlite3")
    bicycle, hydrant = Task("auto", "/m/0199g", "Bicycle"), Task("Fire hydrant")
    store = FeatureStore(database, bicycle)
    await store.use_extractor(stored_record(describe_info()))
    x = stored(3)
    await store.save([(f"i{k}", x[k].tobytes()) for k in range(3)], [])
    first = await store.open_task(bicycle)
    assert (first.bank.matrix[:, EMBEDDING:] == 1).all()
    assert first.extractor == extractor_key(describe_info(), bicycle)
    assert first.extractor is not None and first.extractor["detector_class"] == "Bicycle"
    second = await store.open_task(hydrant)  # added later: built from the database
    assert second.bank.ids == ["i0", "i1", "i2"]
    assert (second.bank.matrix[:, EMBEDDING:] == 2).all()
    np.testing.assert_array_equal(second.bank.matrix[:, :EMBEDDING], x[:, :EMBEDDING])
    await store.save([("i3", stored(4)[3].tobytes())], [])  # both banks grow
    assert first.bank.ids == second.bank.ids == ["i0", "i1", "i2", "i3"]
    assert (second.bank.matrix[3, EMBEDDING:] == 2).all()
    unguided = await store.open_task(Task("none"))
    assert not unguided.bank.matrix[:, EMBEDDING:].any()
    assert first.bank is (await store.open_task(Task("Bicycle"))).bank  # one class, one bank
    # The next start restores every class the tasks read.
    again = FeatureStore(database, bicycle)
    await again.restore()
    assert (again.view(hydrant).bank.matrix[:, EMBEDDING:] == 2).all()
    assert await again.use_extractor(stored_record(describe_info("8"))) == 4  # new features
    assert len(again.view(hydrant).bank) == 0
    await database.close()
