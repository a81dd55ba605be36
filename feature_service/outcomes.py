"""Per-image failures: each has a kind the caller can act on, and a safe message."""

from __future__ import annotations

import enum


class Kind(enum.Enum):
    # Names match hitl.v1.ErrorKind without its ERROR_KIND_ prefix.
    NOT_FOUND = "NOT_FOUND"
    BAD_IMAGE = "BAD_IMAGE"
    TOO_LARGE = "TOO_LARGE"
    FORBIDDEN_URL = "FORBIDDEN_URL"
    TIMEOUT = "TIMEOUT"
    UPSTREAM = "UPSTREAM"
    INVALID = "INVALID"
    NOT_CACHED = "NOT_CACHED"
    INTERNAL = "INTERNAL"


RETRYABLE = frozenset({Kind.TIMEOUT, Kind.UPSTREAM, Kind.INTERNAL})
# Facts about the image itself, so fetching or decoding again would not help. Limits and
# the URL policy are configuration, which may change, so those outcomes are not cached.
REMEMBERED = frozenset({Kind.NOT_FOUND, Kind.BAD_IMAGE})


class ItemFailure(Exception):
    def __init__(self, kind: Kind, message: str) -> None:
        super().__init__(message)
        self.kind, self.message = kind, message

    @property
    def retryable(self) -> bool:
        return self.kind in RETRYABLE

    def __repr__(self) -> str:
        return f"ItemFailure({self.kind.name}, {self.message!r})"
