"""The offline datasets: a folder of images, or a CSV manifest `id,location[,label]`."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

from trainer_service.datasets.base import (
    EVALUATION,
    NEGATIVE,
    POOL,
    POSITIVE,
    VALIDATION,
    Item,
    Progress,
    is_url,
)
from trainer_service.datasets.csvstream import CsvStream

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff"}
BATCH = 2000
_LABELS = {"1": POSITIVE, "0": NEGATIVE, "positive": POSITIVE, "negative": NEGATIVE,
           "true": POSITIVE, "false": NEGATIVE, "yes": POSITIVE, "no": NEGATIVE}

Batches = Iterator[tuple[list[Item], Progress]]


class DatasetError(ValueError):
    """The dataset cannot be read; the message says which file and why."""


def load_folder(folder: Path) -> Batches:
    """Every image under `folder` (recursively) joins the pool; its id is the relative path."""
    if not folder.is_dir():
        raise DatasetError(f"{folder} is not a folder")
    batch: list[Item] = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            if Path(name).suffix.lower() not in IMAGE_SUFFIXES:
                continue
            path = Path(root) / name
            batch.append(Item(str(path.relative_to(folder)), str(path.resolve()), POOL))
            if len(batch) >= BATCH:
                yield batch, Progress(f"scanning {folder}")
                batch = []
    yield batch, Progress(f"scanned {folder}", 1.0)


def parse_label(raw: str) -> int:
    value = raw.strip().lower()
    if value == "":
        return 0
    if value not in _LABELS:
        raise ValueError(f"label {raw!r} is not one of 1/0, positive/negative")
    return _LABELS[value]


def split_rank(item_id: str, seed: int) -> str:
    """A stable pseudo-random order: the split does not depend on file order or runs."""
    return hashlib.sha1(f"{seed}:{item_id}".encode()).hexdigest()


def stratified_split(labelled: list[tuple[str, str, int]], validation_fraction: float,
                     evaluation_fraction: float, seed: int) -> Iterator[Item]:
    """Per class, the first `validation_fraction` (in hash order) validate, the next
    `evaluation_fraction` evaluate, and the rest join the pool without their labels."""
    for label in (POSITIVE, NEGATIVE):
        rows = sorted((r for r in labelled if r[2] == label), key=lambda r: split_rank(r[0], seed))
        n_val = round(len(rows) * validation_fraction)
        n_eval = round(len(rows) * evaluation_fraction)
        for i, (item_id, location, _) in enumerate(rows):
            if i < n_val:
                yield Item(item_id, location, VALIDATION, label)
            elif i < n_val + n_eval:
                yield Item(item_id, location, EVALUATION, label)
            else:
                yield Item(item_id, location, POOL)


def load_manifest(path: Path, validation_fraction: float, evaluation_fraction: float,
                  seed: int) -> Batches:
    """Streams the manifest: unlabelled rows join the pool as they are read; labelled rows
    are split once the file is read (a stratified split needs every label)."""
    if not path.is_file():
        raise DatasetError(f"manifest {path} not found")
    labelled: list[tuple[str, str, int]] = []
    batch: list[Item] = []
    with CsvStream(path) as stream:
        for line_no, row in enumerate(stream.rows(), 1):
            if not row or (line_no == 1 and row[0].strip().lower() == "id"):
                continue
            if len(row) < 2 or not row[0].strip() or not row[1].strip():
                raise DatasetError(f"{path}:{line_no}: expected id,location[,label]")
            item_id, location = row[0].strip(), row[1].strip()
            if not is_url(location):
                location = str((path.parent / location).resolve())
            try:
                label = parse_label(row[2]) if len(row) > 2 else 0
            except ValueError as exc:
                raise DatasetError(f"{path}:{line_no}: {exc}") from None
            if label:
                labelled.append((item_id, location, label))
            else:
                batch.append(Item(item_id, location, POOL))
            if len(batch) >= BATCH:
                yield batch, Progress(f"reading {path.name}", min(stream.fraction(), 0.99))
                batch = []
    batch.extend(stratified_split(labelled, validation_fraction, evaluation_fraction, seed))
    yield batch, Progress(f"read {path.name}", 1.0)
