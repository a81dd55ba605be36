"""Label export formats: one annotation per CSV row or JSON line, or the Open Images
image-level label layout (one row per item, its latest annotation in force)."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable
from typing import Any

FORMATS = {
    "csv": ("text/csv; charset=utf-8", "labels.csv"),
    "jsonl": ("application/x-ndjson", "labels.jsonl"),
    "openimages": ("text/csv; charset=utf-8", "labels-openimages.csv"),
}
CSV_COLUMNS = ("id", "item_id", "label", "annotator", "strategy", "model_version",
               "duration_ms", "create_time", "undone", "split", "note")
OPENIMAGES_COLUMNS = ("ImageID", "Source", "LabelName", "Confidence")
# A cell starting with one of these runs as a formula when the file is opened in a
# spreadsheet; ids and annotator names come from users, so such cells get a quote first.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
# A folder dataset's item ids are file names; Open Images' ImageID has no extension.
IMAGE_EXTENSION = re.compile(r"\.(jpe?g|png|gif|webp|bmp|tiff?)$", re.IGNORECASE)


def image_id(item_id: str) -> str:
    """The Open Images ImageID of an item: its id without an image file extension."""
    return IMAGE_EXTENSION.sub("", item_id) or item_id


def _cell(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def _csv_line(values: Iterable[Any]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(_cell(v) for v in values)
    return out.getvalue()


def csv_header() -> str:
    return _csv_line(CSV_COLUMNS)


def csv_row(annotation: dict[str, Any]) -> str:
    return _csv_line(str(v).lower() if isinstance(v, bool) else v
                     for v in (annotation[c] for c in CSV_COLUMNS))


def jsonl_row(annotation: dict[str, Any]) -> str:
    return json.dumps(annotation, separators=(",", ":")) + "\n"


def openimages_rows(annotations: Iterable[dict[str, Any]], label_id: str) -> str:
    """The label in force per item, as the trainer decides it: each annotator's latest
    answer is one vote (a recheck votes only when it is their only answer), the majority
    rules, and a tie (a disagreement waiting for a third answer) is left out. Annotations
    come oldest first."""
    votes: dict[str, dict[str, dict[str, Any]]] = {}  # item -> annotator -> answer
    for a in annotations:
        if a["undone"] or a["label"] not in ("positive", "negative"):
            continue
        cast = votes.pop(a["item_id"], {})
        if not (a["strategy"] == "recheck" and a["annotator"] in cast):
            cast.pop(a["annotator"], None)
            cast[a["annotator"]] = a
        votes[a["item_id"]] = cast  # re-inserted: items in order of their latest answer
    lines = [_csv_line(OPENIMAGES_COLUMNS)]
    for item_id, cast in votes.items():
        positive = sum(1 for a in cast.values() if a["label"] == "positive")
        if 2 * positive != len(cast):
            lines.append(_csv_line((image_id(item_id), "verification", label_id,
                                    1 if 2 * positive > len(cast) else 0)))
    return "".join(lines)
