"""Checks of everything the browser sends, with the limits the API documents."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from annotation_gateway.errors import ApiError

# Request body limit for the JSON API (an annotation is well under 1 KiB).
MAX_BODY_BYTES = 16 * 1024
MAX_ITEMS_PER_REQUEST = 50
MAX_HELD_IDS = 50
MAX_ITEM_ID_CHARS = 256
MAX_DURATION_MS = 24 * 3600 * 1000
MAX_NOTE_CHARS = 200
# The last second a protobuf Timestamp holds (9999-12-31T23:59:59Z).
MAX_GIVEN_AT = 253402300799

ANNOTATION_ID = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
ANNOTATOR = re.compile(r"^[A-Za-z0-9_ .@-]{1,40}$")
# Item ids are opaque keys chosen by the trainer (a folder dataset's ids are relative
# paths such as "street/0001.jpg"); the gateway only ever passes them to the trainer,
# which looks them up in its catalogue. Anything shaped like a path escape is refused
# anyway, so that no id can be mistaken for a path by anything downstream.
_ITEM_ID_FORBIDDEN = re.compile(r"[\\\x00-\x1f\x7f]")
# Control characters (line breaks included) have no place in a one-line note.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def item_id(raw: str) -> str:
    segments = raw.split("/")
    if (not raw or len(raw) > MAX_ITEM_ID_CHARS or _ITEM_ID_FORBIDDEN.search(raw)
            or raw.startswith("/") or any(s in (".", "..") for s in segments)):
        raise ApiError(400, "invalid_item_id", "not a valid item id")
    return raw


def annotation_id(raw: Any) -> str:
    if not isinstance(raw, str) or not ANNOTATION_ID.match(raw):
        raise ApiError(400, "invalid_annotation_id",
                       "annotation id must be 8-64 characters of letters, digits, - or _")
    return raw


def annotator(raw: Any) -> str:
    if not isinstance(raw, str) or not ANNOTATOR.match(raw.strip()):
        raise ApiError(400, "invalid_annotator",
                       "annotator name must be 1-40 letters (a-z), digits, spaces or . @ _ -")
    return raw.strip()


def count(raw: str | None, default: int) -> int:
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, "invalid_count", "n must be an integer") from None
    if not 1 <= value <= MAX_ITEMS_PER_REQUEST:
        raise ApiError(400, "invalid_count", f"n must be between 1 and {MAX_ITEMS_PER_REQUEST}")
    return value


def held_ids(raw: list[str]) -> list[str]:
    if len(raw) > MAX_HELD_IDS:
        raise ApiError(400, "too_many_held", f"at most {MAX_HELD_IDS} held item ids")
    return [item_id(i) for i in raw]


def duration_ms(raw: Any) -> int:
    if raw is None:
        return 0
    if not isinstance(raw, int) or isinstance(raw, bool) or not 0 <= raw <= MAX_DURATION_MS:
        raise ApiError(400, "invalid_duration", "duration_ms must be an integer in milliseconds")
    return raw


def note(raw: Any) -> str:
    """An optional short note (e.g. why unsure): plain text on one line."""
    if raw is None:
        return ""
    if (not isinstance(raw, str) or len(raw) > MAX_NOTE_CHARS
            or _CONTROL.search(raw)):
        raise ApiError(400, "invalid_note",
                       f"note must be text of at most {MAX_NOTE_CHARS} characters on one line")
    return raw.strip()


def given_at(raw: Any) -> float | None:
    """When an answer was given, as the page kept it (ISO 8601 with a zone, e.g.
    "2025-05-01T09:30:00.000Z"), in seconds since the epoch; None when not sent. The
    trainer bounds it (never in the future, at most a week back)."""
    if raw is None:
        return None
    try:
        if not isinstance(raw, str) or len(raw) > 40:
            raise ValueError
        when = datetime.fromisoformat(raw)
        if when.tzinfo is None or not 0 <= when.timestamp() <= MAX_GIVEN_AT:
            raise ValueError
        return when.timestamp()
    except (ValueError, OverflowError, OSError):
        raise ApiError(400, "invalid_given_at",
                       "given_at must be an ISO 8601 time with its zone") from None


def flag(raw: str | None, name: str) -> bool:
    value = "false" if raw is None else raw
    if value not in ("true", "false", "1", "0"):
        raise ApiError(400, f"invalid_{name}", f"{name} must be true or false")
    return value in ("true", "1")


def json_object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_body", "the body must be a JSON object")
    return body


TASK_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,39}")
# Each text of a task added through the API (its guidelines included) fits the body limit.
MAX_TASK_TEXT = 10_000


def task_name(raw: str) -> str:
    """A task's name from a path ("" for none); a name no task can have is a 404."""
    if raw and not TASK_NAME.fullmatch(raw):
        raise ApiError(404, "no_such_task", "there is no task of that name")
    return raw
