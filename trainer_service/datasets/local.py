"""The offline datasets: a folder of images, or a CSV manifest `id,location[,label]`.

A manifest with a header row may name its columns instead (any order, extra columns
ignored): `id`, a location column (`location`, `filename`, `path`, `url` or `image`) and
`label`; without an `id` column an item's id is its file name without the suffix.

A manifest names only files within its own folder (and those below it) or the configured
roots: a path elsewhere (`../`, an absolute path) is a bad row.
A bad row is skipped, counted and logged with its line; the rest of the dataset loads.
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


def within(path: Path, roots: tuple[Path, ...]) -> bool:
    """Whether `path` lies in one of `roots`, as written (a link the dataset's owner put
    in its folder may point elsewhere) or once resolved; `..` never escapes either way."""
    written = Path(os.path.normpath(path))
    return any(written.is_relative_to(os.path.normpath(root))
               or path.resolve().is_relative_to(root.resolve()) for root in roots)


def _row(row: list[str], columns: tuple[int | None, int, int | None], folder: Path,
         roots: tuple[Path, ...]) -> tuple[str, str, Label]:
    """(id, location, label) of a data row; ValueError says why it is bad."""
    id_col, loc_col, label_col = columns
    location = row[loc_col].strip() if len(row) > loc_col else ""
    item_id = (row[id_col].strip() if id_col is not None and len(row) > id_col
               else Path(location).stem)
    if not item_id or not location:
        raise ValueError("expected id,location[,label]")
    if not is_url(location):
        if not within(folder / location, roots):
            raise ValueError("the location is outside the dataset's folders "
                             "(TRAINER_DATASET_ROOTS)")
        location = str((folder / location).resolve())
    raw = row[label_col] if label_col is not None and len(row) > label_col else ""
    return item_id, location, parse_label(raw)


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
                  seed: int, roots: tuple[str, ...] = (), positive: str = "") -> Batches:
    """Streams the manifest: unlabelled rows join the pool as they are read; labelled rows
    are split once the file is read (a stratified split needs every label). Local files
    must lie within the manifest's own folder or one of `roots`. `positive`
    (column=value) takes the labels from that column instead of `label`."""
    if not path.is_file():
        raise DatasetError(f"manifest {path} not found")
    folder = path.absolute().parent
    allowed = (folder, *(Path(r).absolute() for r in roots))
    labelled: list[tuple[str, str, Label]] = []
    batch: list[Item] = []
    columns: tuple[int | None, int, int | None] = (0, 1, 2)
    by_class: tuple[int, str] | None = None
    with CsvStream(path) as stream:
        for row in stream.rows():
            if not row:
                continue
            if stream.line == 1:
                named = _columns(row)
                if positive:
                    by_class = _class_column(row if named else [], positive, path)
                if named is not None:
                    columns = named
                    continue
            if by_class is not None:  # the label column is not read at all
                columns = (columns[0], columns[1], None)
            try:
                item_id, location, label = _row(row, columns, folder, allowed)
            except ValueError as exc:
                stream.skip(stream.line, str(exc))
                continue
            if by_class is not None:
                label = class_label(row[by_class[0]] if len(row) > by_class[0] else "",
                                    by_class[1])
            if label:
                labelled.append((item_id, location, label))
            else:
                batch.append(Item(item_id, location, Split.POOL))
            if len(batch) >= BATCH:
                yield batch, Progress(f"reading {path.name}", min(stream.fraction(), 0.99))
                batch = []
    batch.extend(stratified_split(labelled, validation_fraction, evaluation_fraction, seed))
    yield batch, Progress(f"read {path.name}", 1.0, note=stream.skipped_note())
