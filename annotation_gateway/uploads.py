"""What uploads (images to classify, labels to import) may hold of this process's memory.

Each gateway process handles at most GATEWAY_UPLOAD_REQUESTS uploads at once (past it a
request is answered 503 with Retry-After, before its body is read), at most
GATEWAY_UPLOADS_PER_CALLER of them from one annotator (past it 429), and holds at most
GATEWAY_UPLOAD_BYTES of their bodies (`ByteBudget`). An upload reserves its whole size
(its Content-Length, at most its route's limit) before it reads a byte, waiting up to
WAIT_S for room, and gives parts of it back as the parts it forwarded are answered; it
never asks for more while it holds some, so uploads cannot starve each other. Unset, the
byte budget is an eighth of the memory limit of the process's cgroup (the pod's limit), or
64 MiB without one: each byte held costs about three in memory (the part, its protobuf
message and the serialised call), which leaves the rest of the limit to everything else.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from aiohttp import web

from annotation_gateway.errors import ApiError

READ_CHUNK = 64 * 1024
WAIT_S = 30.0
DEFAULT_BYTES = 64 << 20
SHARE_OF_LIMIT = 8
_CGROUP_LIMITS = (Path("/sys/fs/cgroup/memory.max"),
                  Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"))


def memory_limit() -> int | None:
    """The cgroup's memory limit in bytes (v2, then v1), or None when there is none."""
    for path in _CGROUP_LIMITS:
        try:
            raw = path.read_text().strip()
        except OSError:
            continue
        if raw.isdigit() and int(raw) < 1 << 60:  # v1 says "no limit" with a huge number
            return int(raw)
    return None


def budget_bytes(configured: int) -> int:
    if configured > 0:
        return configured
    limit = memory_limit()
    return limit // SHARE_OF_LIMIT if limit else DEFAULT_BYTES


class ByteBudget:
    """Bytes held at once by every upload of the process together."""

    def __init__(self, capacity: int) -> None:
        self.capacity, self.used = capacity, 0
        self._room = asyncio.Condition()

    async def take(self, n: int) -> None:
        """Waits until `n` more bytes fit (`n` is never above the capacity)."""
        async with self._room:
            await self._room.wait_for(lambda: self.used + n <= self.capacity)
            self.used += n

    async def give(self, n: int) -> None:
        async with self._room:
            self.used -= n
            self._room.notify_all()


def unread(request: web.Request, error: ApiError) -> ApiError:
    """`error` for a caller refused for what it did (past its rate, past its uploads in
    flight) before its body is read. By default the server would
    read and drop the rest of the body (for up to 10 s), so a flooding client would keep
    it copying megabytes; the connection closes after the answer instead (a client still
    sending may see it reset)."""
    if request.protocol is not None and not request.content.is_eof():
        request.protocol.force_close()
    return error


class Uploads:
    """The process's bound on uploads: requests at once, per caller, and their bytes."""

    def __init__(self, max_requests: int, max_bytes: int, per_caller: int = 1) -> None:
        self.max_requests, self.per_caller, self.active = max_requests, per_caller, 0
        self.budget = ByteBudget(max_bytes)
        self.callers: dict[str, int] = {}  # uploads in flight per caller

    @contextlib.asynccontextmanager
    async def slot(self, request: web.Request, limit: int, caller: str
                   ) -> AsyncIterator[Held]:
        """One upload's turn with its size reserved: 429 when `caller` has as many in
        flight as it may, 503 when every slot is taken or no room comes in time; the
        reservation is given back when the upload ends, however it ends."""
        if self.callers.get(caller, 0) >= self.per_caller:
            raise unread(request, ApiError(
                429, "too_many_uploads", f"at most {self.per_caller} upload(s) at a time "
                "per annotator: send the next when this one is answered",
                headers={"Retry-After": "1"}))
        if self.active >= self.max_requests:
            # Honest annotators meet this when their uploads collide: the body is read and
            # dropped, so that their client reads the answer and its Retry-After.
            raise _busy()
        size = min(request.content_length or limit, limit, self.budget.capacity)
        self.active += 1
        self.callers[caller] = self.callers.get(caller, 0) + 1
        held = Held(self.budget)
        try:
            try:
                await asyncio.wait_for(self.budget.take(size), WAIT_S)
            except TimeoutError:
                raise _busy() from None
            held.bytes = size
            yield held
        finally:
            self.active -= 1
            self.callers[caller] -= 1
            if not self.callers[caller]:
                del self.callers[caller]
            await held.release()


def _busy() -> ApiError:
    return ApiError(503, "busy", "the gateway is handling as many uploads as it may; retry "
                    "shortly", headers={"Retry-After": "1"})


class Held:
    """What one upload holds of the budget."""

    def __init__(self, budget: ByteBudget) -> None:
        self.budget, self.bytes = budget, 0

    async def read(self, read: Callable[[int], Awaitable[bytes]], limit: int) -> bytes:
        """Everything `read` gives, or 413 once it passes `limit` bytes (or the whole
        budget, which a single part may never pass)."""
        limit = min(limit, self.budget.capacity)
        chunks, size = [], 0
        while chunk := await read(READ_CHUNK):
            size += len(chunk)
            if size > limit:
                raise ApiError(413, "too_large", f"the request is larger than {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    async def release(self, n: int | None = None) -> None:
        """Gives back `n` bytes of the reservation (all of it by default): bytes read and
        forwarded, whose answer is in, are no longer held."""
        n = self.bytes if n is None else min(n, self.bytes)
        self.bytes -= n
        await self.budget.give(n)


UPLOADS = web.AppKey("uploads", Uploads)
