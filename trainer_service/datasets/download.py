"""Downloads a file over http(s) with progress and resume (HTTP Range)."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

CHUNK = 1 << 20
TIMEOUT_S = 60.0


class NotFound(Exception):
    """The server answered 404 or 410."""


def download(url: str, dest: Path) -> Iterator[tuple[int, int]]:
    """Fetches `url` into `dest`, yielding (bytes done, total or -1) as it goes.

    Bytes arrive in `dest` + ".part"; an interrupted download resumes from there, and
    `dest` appears (by rename) only when complete, so an existing `dest` is never fetched
    again."""
    if dest.exists():
        size = dest.stat().st_size
        yield size, size
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as exc:
        if exc.code in (404, 410):
            raise NotFound(url) from None
        if exc.code == 416 and have:  # nothing left to fetch: the part is complete
            part.rename(dest)
            yield have, have
            return
        raise
    with response:
        if response.status != 206:  # the server ignored the range: start again
            have = 0
        length = int(response.headers.get("Content-Length") or -1)
        total = have + length if length >= 0 else -1
        with open(part, "ab" if have else "wb") as out:
            while chunk := response.read(CHUNK):
                out.write(chunk)
                have += len(chunk)
                yield have, total
    if total >= 0 and have < total:
        raise OSError(f"{url}: connection closed after {have} of {total} bytes")
    part.rename(dest)
    yield have, have
