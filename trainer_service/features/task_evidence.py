"""Which of the detector's classes guides the task, and the task's vectors.

The feature service stores, per image, the embedding and evidence for every class its
detector knows (`hitl.evidence`); the trainer keeps those stored vectors and gives the
models the embedding and the one evidence row of the task's detector class. That class
is chosen once per extractor, from what `Describe` lists, and travels in the extractor
record (`evidence_row`, -1 for none), so features, models and their files all say which
class they were made with.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from hitl.evidence import (
    BOX,
    COUNT,
    EVIDENCE_DIM,
    SCORE,
    DetectorClass,
    stored_dimension,
    task_vectors,
)
from trainer_service.features.records import Evidence, ExtractorRecord

log = logging.getLogger(__name__)

AUTO, NONE = "auto", "none"


@dataclass(frozen=True)
class Task:
    """What of the task the feature client needs: which detector class guides it."""

    detector_class: str = AUTO
    label_id: str = ""
    display_name: str = ""


class DescribedClass(Protocol):
    """A detector class as `Describe` lists it (ExtractorInfo.detector_classes)."""

    @property
    def name(self) -> str: ...
    @property
    def open_images_id(self) -> str: ...
    @property
    def open_images_name(self) -> str: ...


class DescribedExtractor(Protocol):
    """What the trainer reads of a `Describe`'s ExtractorInfo (the feature client hands
    the message over; only it knows the generated stubs)."""

    @property
    def name(self) -> str: ...
    @property
    def version(self) -> str: ...
    @property
    def embedding_dimension(self) -> int: ...
    @property
    def evidence_version(self) -> str: ...
    @property
    def target_class(self) -> str: ...
    @property
    def detector_classes(self) -> Iterable[DescribedClass]: ...


def choose_row(classes: list[DetectorClass], wanted: str, label_id: str,
               display_name: str) -> int | None:
    """The evidence row of the task's detector class: `wanted` by name or Open Images
    id, or for "auto" the class of the task's label id, else of its display name; None
    where there is none (an unknown class is said in the log)."""
    setting = wanted.strip()
    if setting.casefold() == NONE or not setting:
        return None
    keys = [label_id, display_name] if setting.casefold() == AUTO else [setting]
    for key in keys:
        row = next((i for i, c in enumerate(classes) if c.answers_to(key)), None)
        if row is not None:
            return row
    if setting.casefold() != AUTO:
        log.error("the detector knows no class %r: the task has no detector evidence "
                  "(TRAINER_DETECTOR_CLASS)", setting,
                  extra={"detector_classes": [c.name for c in classes]})
    return None


def extractor_record(name: str, version: str, embedding_dimension: int,
                     evidence_version: str, classes: list[DetectorClass],
                     row: int | None) -> ExtractorRecord:
    """What the trainer records of the features a task works with. `dimension` is the
    task vector's (what models take), `stored_dimension` the stored one's."""
    return {"name": name, "version": version,
            "dimension": embedding_dimension + EVIDENCE_DIM,
            "embedding_dimension": embedding_dimension,
            "stored_dimension": stored_dimension(embedding_dimension, len(classes)),
            "evidence_version": evidence_version,
            "detector_class": classes[row].name if row is not None else "",
            "evidence_row": -1 if row is None else row}


def stored_record(info: DescribedExtractor) -> ExtractorRecord:
    """What the trainer records of the stored features of a `Describe`'s ExtractorInfo
    `info`, whatever the task: the task records (`for_task`) are made from it. A feature
    service that lists no detector classes (an earlier release) has one: its target."""
    classes = [DetectorClass(c.name, c.open_images_id, c.open_images_name)
               for c in info.detector_classes] or [DetectorClass(info.target_class)]
    record = extractor_record(info.name, info.version, info.embedding_dimension,
                              info.evidence_version, classes, None)
    del record["detector_class"], record["evidence_row"]
    return {**record, "classes": [[c.name, c.open_images_id, c.open_images_name]
                                  for c in classes]}


def for_task(stored: ExtractorRecord, task: Task) -> ExtractorRecord:
    """The record of one task's features (its detector class's row) from the stored
    record. A record without classes (kept before there were many) is the task's own."""
    if "classes" not in stored:
        return stored
    classes = [DetectorClass(*c) for c in stored["classes"]]
    row = choose_row(classes, task.detector_class, task.label_id, task.display_name)
    return extractor_record(stored["name"], stored["version"],
                            int(stored["embedding_dimension"]), stored["evidence_version"],
                            classes, row)


def extractor_key(info: DescribedExtractor, task: Task) -> ExtractorRecord:
    """The record of `task`'s features from a `Describe`'s ExtractorInfo `info`."""
    return for_task(stored_record(info), task)


def task_matrix(extractor: ExtractorRecord, stored: np.ndarray) -> np.ndarray:
    """The task's vectors (models' input) from stored ones. A record without an
    `evidence_row` (made before there were many classes) stored the task's vectors."""
    if "evidence_row" not in extractor:
        return np.atleast_2d(stored)
    row = int(extractor["evidence_row"])
    return task_vectors(stored, int(extractor["embedding_dimension"]),
                        None if row < 0 else row)


def task_evidence(row: np.ndarray) -> Evidence:
    """The record of one evidence row (`hitl.evidence`'s layout)."""
    score, box = float(row[SCORE]), tuple(float(v) for v in row[BOX])
    return Evidence(score, box if score > 0 else None, int(row[COUNT]))  # type: ignore[arg-type]
