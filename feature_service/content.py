"""Cache keys: features belong to an image's content, names belong to their caller.

An image's features are stored under the SHA-256 digest of its bytes (sent, or fetched
from its URL), so two callers who use the same id for different images each get the
features of their own image, and the same image sent by anyone is computed once. What a
caller calls an image is the caller's alone: its ids and its URLs point at a digest (or
hold a remembered failure, such as a URL that was not found) in mappings of its own,
which `Lookup` and repeated URLs read. Nothing one caller sends changes what another's
ids or URLs mean.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence

from feature_service.outcomes import ItemFailure, Kind

MAX_ID_CHARS = 512
# Digests of up to this many bytes are taken on the event loop; more go to a thread
# (hashlib releases the GIL), so a large request does not stall other callers.
INLINE_HASH_BYTES = 1 << 20
# Part of the cache namespace: keys laid out before content keys can never be read as
# one of these.
LAYOUT = "content-keys-1"


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def digests(blobs: Sequence[bytes]) -> list[str]:
    if sum(len(b) for b in blobs) <= INLINE_HASH_BYTES:
        return [digest(b) for b in blobs]
    return await asyncio.to_thread(lambda: [digest(b) for b in blobs])


def content_key(sha256: str) -> str:
    return f"content\0{sha256}"


def id_key(caller: str, label: str) -> str:
    # Caller names hold no NUL (hitl.auth), so no caller's keys can run into another's.
    return f"id\0{caller}\0{label}"


def url_key(caller: str, url: str) -> str:
    return f"url\0{caller}\0{digest(url.encode())}"


def check(image_id: str, url: str | None, data: bytes | None) -> None:
    if url is None and data is None:
        raise ItemFailure(Kind.INVALID, "image has neither url nor data")
    if len(image_id) > MAX_ID_CHARS:
        raise ItemFailure(Kind.INVALID, f"id longer than {MAX_ID_CHARS} characters")


def label(image_id: str, url: str | None, sha256: str | None) -> str:
    """What the answer is called: the caller's id, else a hash of the URL or of the
    bytes (`sha256` is the bytes' digest when they were sent)."""
    if image_id:
        return image_id
    if url is not None:
        return "url-sha256:" + digest(url.encode())
    assert sha256 is not None
    return "sha256:" + sha256
