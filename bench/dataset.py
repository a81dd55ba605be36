"""Labelled datasets for the simulator: read a labelled CSV, optionally take a stratified
subset, and write the trainer's manifest (id,location,label) with absolute locations."""

from __future__ import annotations

import csv
import random
from dataclasses import dataclass
from pathlib import Path

POSITIVE = {"1", "true", "yes", "positive", "pos"}
NEGATIVE = {"0", "false", "no", "negative", "neg"}


@dataclass(frozen=True)
class Example:
    id: str
    location: str
    label: bool


class DatasetError(ValueError):
    """The dataset file cannot be used; the message says why."""


def _label(raw: str, where: str) -> bool:
    value = raw.strip().lower()
    if value in POSITIVE:
        return True
    if value in NEGATIVE:
        return False
    raise DatasetError(f"{where}: label {raw!r} is not one of 1/0, true/false, "
                       "positive/negative")


def _location(raw: str, base: Path) -> str:
    if raw.startswith(("http://", "https://")):
        return raw
    path = Path(raw)
    return str(path if path.is_absolute() else (base / path).resolve())


def read_labelled(path: Path, positive_class: str | None = None) -> list[Example]:
    """Every labelled row of a manifest (id,location,label) or of a filename,label CSV
    (the street-view tiles' labels.csv); a folder means its labels.csv. With
    `positive_class`, an item is positive where its `source_class` column says that class
    (the tiles' other questions: "Hydrant", "Crosswalk", ...) and `label` is not read."""
    if path.is_dir():
        path = path / "labels.csv"
    if not path.exists():
        raise DatasetError(f"{path}: no such file")
    base = path.parent
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        columns = set(reader.fieldnames or ())
        column = "label" if positive_class is None else "source_class"
        if column not in columns or not ({"location", "filename"} & columns):
            raise DatasetError(f"{path}: needs columns id,location,{column} or "
                               f"filename,{column} (found {', '.join(sorted(columns)) or 'none'})")
        examples = []
        for n, row in enumerate(reader, start=2):
            if not (row.get(column) or "").strip():
                continue
            location = row.get("location") or row["filename"]
            item_id = row.get("id") or Path(location).stem
            label = (_label(row["label"], f"{path}:{n}") if positive_class is None
                     else row[column].strip() == positive_class)
            examples.append(Example(item_id, _location(location, base), label))
    if not examples:
        raise DatasetError(f"{path}: no labelled rows")
    if positive_class is not None and not any(e.label for e in examples):
        raise DatasetError(f"{path}: no item's source_class is {positive_class!r}")
    if len({e.id for e in examples}) != len(examples):
        raise DatasetError(f"{path}: item ids are not unique")
    return examples


def stratified_subset(examples: list[Example], size: int, seed: int = 0) -> list[Example]:
    """`size` examples keeping the positive rate (at least one of each class)."""
    if size >= len(examples):
        return list(examples)
    rng = random.Random(seed)
    positives = [e for e in examples if e.label]
    negatives = [e for e in examples if not e.label]
    n_pos = round(size * len(positives) / len(examples))
    n_pos = min(max(n_pos, 1), len(positives), size - 1)
    chosen = rng.sample(positives, n_pos) + rng.sample(negatives, size - n_pos)
    rng.shuffle(chosen)
    return chosen


def write_manifest(examples: list[Example], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "location", "label"])
        for e in examples:
            writer.writerow([e.id, e.location, "1" if e.label else "0"])
    return path
