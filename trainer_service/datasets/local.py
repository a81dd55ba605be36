"""The offline datasets: a folder of images, or a CSV manifest `id,location[,label]`.

A manifest with a header row may name its columns instead (any order, extra columns
ignored): `id`, a location column (`location`, `filename`, `path`, `url` or `image`) and
`label`; without an `id` column an item's id is its file name without the suffix.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

from trainer_service.datasets.base import Item, Progress, is_url
from trainer_service.datasets.csvstream import CsvStream
from trainer_service.domain import Label, Split

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff"}
BATCH = 2000
_LABELS = {**dict.fromkeys(("1", "positive", "true", "yes"), Label.POSITIVE),
           **dict.fromkeys(("0", "negative", "false", "no"), Label.NEGATIVE)}

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
            batch.append(Item(str(path.relative_to(folder)), str(path.resolve()), Split.POOL))
            if len(batch) >= BATCH:
                yield batch, Progress(f"scanning {folder}")
                batch = []
    yield batch, Progress(f"scanned {folder}", 1.0)


def parse_label(raw: str) -> Label:
    value = raw.strip().lower()
    if value == "":
        return Label.UNSPECIFIED
    if value not in _LABELS:
        raise ValueError(f"label {raw!r} is not one of 1/0, positive/negative")
    return _LABELS[value]


def split_rank(item_id: str, seed: int) -> str:
    """A stable pseudo-random order: the split does not depend on file order or runs."""
    return hashlib.sha1(f"{seed}:{item_id}".encode()).hexdigest()


def stratified_split(labelled: list[tuple[str, str, Label]], validation_fraction: float,
                     evaluation_fraction: float, seed: int) -> Iterator[Item]:
    """Per class, the first `validation_fraction` (in hash order) validate, the next
    `evaluation_fraction` evaluate, and the rest join the pool without their labels."""
    for label in (Label.POSITIVE, Label.NEGATIVE):
        rows = sorted((r for r in labelled if r[2] == label), key=lambda r: split_rank(r[0], seed))
        n_val = round(len(rows) * validation_fraction)
        n_eval = round(len(rows) * evaluation_fraction)
        for i, (item_id, location, _) in enumerate(rows):
            if i < n_val:
                yield Item(item_id, location, Split.VALIDATION, label)
            elif i < n_val + n_eval:
                yield Item(item_id, location, Split.EVALUATION, label)
            else:
                yield Item(item_id, location, Split.POOL)


LOCATION_COLUMNS = ("location", "filename", "path", "url", "image")


def _columns(header: list[str]) -> tuple[int | None, int, int | None] | None:
    """(id, location, label) column indices named by a header row, or None when the row is
    data (the layout is then positional: id,location[,label])."""
    names = [h.strip().lower() for h in header]
    location = next((names.index(c) for c in LOCATION_COLUMNS if c in names), None)
    if location is None:
        return (0, 1, 2) if names[:1] == ["id"] else None  # an "id,..." header: positional
    return (names.index("id") if "id" in names else None, location,
            names.index("label") if "label" in names else None)


def class_label(raw: str, value: str) -> Label:
    """A row's label when the positive class is a column's value: positive when the column
    holds it (case aside), negative when it holds another, none when it is empty."""
    held = raw.strip()
    if not held:
        return Label.UNSPECIFIED
    return Label.POSITIVE if held.casefold() == value.casefold() else Label.NEGATIVE


def _class_column(header: list[str], positive: str, path: Path) -> tuple[int, str]:
    column, _, value = positive.partition("=")
    names = [h.strip().lower() for h in header]
    if column.strip().lower() not in names:
        raise DatasetError(f"{path}: no column {column.strip()!r} in the header for the "
                           f"positive class {positive!r}")
    return names.index(column.strip().lower()), value.strip()


def load_manifest(path: Path, validation_fraction: float, evaluation_fraction: float,
                  seed: int, positive: str = "") -> Batches:
    """Streams the manifest: unlabelled rows join the pool as they are read; labelled rows
    are split once the file is read (a stratified split needs every label). `positive`
    (column=value) takes the labels from that column instead of `label`."""
    if not path.is_file():
        raise DatasetError(f"manifest {path} not found")
    labelled: list[tuple[str, str, Label]] = []
    batch: list[Item] = []
    id_col: int | None = 0
    loc_col: int = 1
    label_col: int | None = 2
    class_col: tuple[int, str] | None = None
    with CsvStream(path) as stream:
        for line_no, row in enumerate(stream.rows(), 1):
            if not row:
                continue
            if line_no == 1:
                named = _columns(row)
                if positive:
                    class_col = _class_column(row if named else [], positive, path)
                if named is not None:
                    id_col, loc_col, label_col = named
                    continue
            location = row[loc_col].strip() if len(row) > loc_col else ""
            item_id = (row[id_col].strip() if id_col is not None and len(row) > id_col
                       else Path(location).stem)
            if not item_id or not location:
                raise DatasetError(f"{path}:{line_no}: expected id,location[,label]")
            if not is_url(location):
                location = str((path.parent / location).resolve())
            try:
                if class_col is not None:
                    raw = row[class_col[0]] if len(row) > class_col[0] else ""
                    label = class_label(raw, class_col[1])
                else:
                    raw = row[label_col] if label_col is not None and len(row) > label_col \
                        else ""
                    label = parse_label(raw)
            except ValueError as exc:
                raise DatasetError(f"{path}:{line_no}: {exc}") from None
            if label:
                labelled.append((item_id, location, label))
            else:
                batch.append(Item(item_id, location, Split.POOL))
            if len(batch) >= BATCH:
                yield batch, Progress(f"reading {path.name}", min(stream.fraction(), 0.99))
                batch = []
    batch.extend(stratified_split(labelled, validation_fraction, evaluation_fraction, seed))
    yield batch, Progress(f"read {path.name}", 1.0)
