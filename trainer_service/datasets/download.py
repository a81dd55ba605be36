"""Downloads a dataset file over http(s) with progress and resume (HTTP Range), within the
download policy (trainer_service/datasets/policy.py: configured sources, public
addresses, size and time caps).

Files are cached by URL and checksum: each lives under a name derived from its URL, with
a record of the URL, size and SHA-256 written when it is complete, and is used again only
while it still matches that record. Two sources offering a file of the same name never
share a cached copy, and a cut or altered file is fetched again.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import re
import time
from collections.abc import Generator
from pathlib import Path
from urllib.parse import urljoin, urlsplit

from trainer_service.datasets.policy import (
    DownloadPolicy,
    DownloadRefused,
    PinnedHTTP,
    PinnedHTTPS,
    connect,
    policy_from,
)

__all__ = ["DownloadPolicy", "DownloadRefused", "NotFound", "configure", "download",
           "policy_from", "source_refusal"]

CHUNK = 1 << 20
REDIRECTS = frozenset({301, 302, 303, 307, 308})
Progress = Generator[tuple[int, int], None, Path]

# The trainer's policy, set once where the service is put together (server.py); until
# then nothing may be downloaded.
_policy = DownloadPolicy()


class NotFound(Exception):
    """The server answered 404 or 410."""


def configure(policy: DownloadPolicy) -> None:
    global _policy
    _policy = policy


def source_refusal(url: str) -> str | None:
    return _policy.source_refusal(url)


def cached_path(url: str, folder: Path) -> Path:
    """Where `url` is kept: a digest of the URL, then its file name for people."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", urlsplit(url).path.rsplit("/", 1)[-1])[-80:]
    return folder / f"{hashlib.sha256(url.encode()).hexdigest()[:24]}-{name or 'file'}"


def _record(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _still_valid(path: Path, url: str) -> bool:
    try:
        record = json.loads(_record(path).read_text())
        return bool(record["url"] == url and path.stat().st_size == record["bytes"]
                    and _sha256(path) == record["sha256"])
    except (OSError, ValueError, KeyError):
        return False


def download(url: str, folder: Path, policy: DownloadPolicy | None = None) -> Progress:
    """Fetches `url` into `folder`, yielding (bytes done, total or -1) as it goes, and
    returns the file's path.

    Bytes arrive in a ".part" file; an interrupted download resumes from there, and the
    file appears (by rename) only when complete."""
    policy = policy or _policy
    refusal = policy.source_refusal(url)
    if refusal:
        raise DownloadRefused(refusal)
    dest = cached_path(url, folder)
    if _still_valid(dest, url):
        size = dest.stat().st_size
        yield size, size
        return dest
    folder.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    deadline = time.monotonic() + policy.timeout_s
    connection, response = _open(url, have, policy, deadline)
    try:
        if response.status == 416 and have:  # nothing left to fetch: the part is complete
            total = have
        else:
            if response.status != 206:  # the server ignored the range: start again
                have = 0
            length = int(response.headers.get("Content-Length") or -1)
            total = have + length if length >= 0 else -1
            if total > policy.max_bytes:
                raise DownloadRefused(f"{url} is {total} bytes, more than "
                                      f"{policy.max_bytes} (TRAINER_DOWNLOAD_MAX_BYTES)")
            with open(part, "ab" if have else "wb") as out:
                while chunk := _read(response, policy, deadline):
                    have += len(chunk)
                    if have > policy.max_bytes:
                        raise DownloadRefused(f"{url} passed {policy.max_bytes} bytes "
                                              "(TRAINER_DOWNLOAD_MAX_BYTES)")
                    out.write(chunk)
                    yield have, total
    finally:
        response.close()
        connection.close()
    if total >= 0 and have < total:
        raise OSError(f"{url}: connection closed after {have} of {total} bytes")
    part.rename(dest)
    _record(dest).write_text(json.dumps({"url": url, "bytes": have,
                                         "sha256": _sha256(dest)}))
    yield have, have
    return dest


def _remaining(deadline: float, policy: DownloadPolicy) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError(f"download took longer than {policy.timeout_s:g}s "
                           "(TRAINER_DOWNLOAD_TIMEOUT_S)")
    return min(left, policy.stall_s)


def _read(response: http.client.HTTPResponse, policy: DownloadPolicy,
          deadline: float) -> bytes:
    """The next chunk; the socket's own time limit (stall_s) bounds one read, and the
    deadline is checked between reads, so a download ends within timeout_s + stall_s."""
    _remaining(deadline, policy)
    return response.read1(CHUNK)


def _open(url: str, have: int, policy: DownloadPolicy, deadline: float
          ) -> tuple[PinnedHTTP | PinnedHTTPS, http.client.HTTPResponse]:
    """(connection, response) for `url`, following redirects by hand so that every hop
    is checked; raises NotFound for 404 and 410."""
    headers = {"User-Agent": "hitl-trainer", "Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
    for _hop in range(policy.max_redirects + 1):
        _remaining(deadline, policy)
        connection = connect(url, policy)
        target = urlsplit(url)
        connection.request("GET", target.path + (f"?{target.query}" if target.query else "")
                           or "/", headers=headers)
        response = connection.getresponse()
        if response.status in REDIRECTS:
            location = response.headers.get("Location")
            connection.close()
            if not location:
                raise OSError(f"{url}: redirect {response.status} without Location")
            url = urljoin(url, location)
            continue
        if response.status in (404, 410):
            connection.close()
            raise NotFound(url)
        if not (200 <= response.status < 300 or (response.status == 416 and have)):
            connection.close()
            raise OSError(f"{url}: HTTP {response.status}")
        return connection, response
    raise DownloadRefused(f"more than {policy.max_redirects} redirects from {url}")
