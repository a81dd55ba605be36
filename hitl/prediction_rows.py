"""Rows of the predictions export, from the trainer's column batches
(`ExportPredictionsResponse`) to CSV or JSON lines: shared by the gateway's
`GET /api/predictions` and the `python -m tools.predict` command, so both write the same
file. Built with plain string joins: an export of 100,000 rows must take well under
two seconds."""

from __future__ import annotations

import csv
import io
import json
import re
from typing import Any

COLUMNS = ("item_id", "probability", "decision", "model_version", "labelled", "label",
           "known_label", "split")
LABELS = {1: "positive", 2: "negative"}  # anything else: nobody labelled it
SPLITS = {1: "pool", 2: "validation", 3: "evaluation"}
FORMATS = {"csv": ("text/csv; charset=utf-8", "predictions.csv"),
           "jsonl": ("application/x-ndjson", "predictions.jsonl")}
# A cell starting with one of these runs as a formula in a spreadsheet; item ids come from
# datasets, so such cells get a quote first (as in the label export).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
_NEEDS_CSV_QUOTING = re.compile(r'[",\r\n]')


def _cell(value: str) -> str:
    if value.startswith(FORMULA_PREFIXES):
        value = "'" + value
    if _NEEDS_CSV_QUOTING.search(value):
        out = io.StringIO()
        csv.writer(out, lineterminator="").writerow([value])
        return out.getvalue()
    return value


def csv_header() -> str:
    return ",".join(COLUMNS) + "\n"


def csv_rows(batch: Any) -> str:
    threshold, version = batch.threshold, _cell(batch.model_version)
    lines = []
    for item_id, p, label, known, split in zip(batch.item_ids, batch.probabilities,
                                               batch.labels, batch.known_labels, batch.splits,
                                               strict=True):
        answer = LABELS.get(label, "")
        lines.append(f"{_cell(item_id)},{p!r},{'positive' if p >= threshold else 'negative'},"
                     f"{version},{'true' if answer else 'false'},{answer},"
                     f"{LABELS.get(known, '')},{SPLITS.get(split, '')}\n")
    return "".join(lines)


def jsonl_rows(batch: Any) -> str:
    threshold, version = batch.threshold, json.dumps(batch.model_version)
    dumps = json.dumps
    lines = []
    for item_id, p, label, known, split in zip(batch.item_ids, batch.probabilities,
                                               batch.labels, batch.known_labels, batch.splits,
                                               strict=True):
        answer = LABELS.get(label)
        lines.append(
            f'{{"item_id":{dumps(item_id)},"probability":{p!r},"decision":'
            f'"{"positive" if p >= threshold else "negative"}","model_version":{version},'
            f'"labelled":{"true" if answer else "false"},"label":{dumps(answer)},'
            f'"known_label":{dumps(LABELS.get(known))},"split":{dumps(SPLITS.get(split))}}}\n')
    return "".join(lines)


def header(fmt: str) -> str:
    return csv_header() if fmt == "csv" else ""


def rows(fmt: str, batch: Any) -> str:
    return csv_rows(batch) if fmt == "csv" else jsonl_rows(batch)
