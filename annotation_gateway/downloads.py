"""Streamed downloads of what the trainer streams (labels, predictions): the answer
starts as soon as the first batch is read, so a failure after that can no longer be an
error status."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping

import grpc
from aiohttp import web

log = logging.getLogger(__name__)


async def stream(request: web.Request, headers: Mapping[str, str], head: str,
                 rest: AsyncIterator[str], what: str) -> web.StreamResponse:
    """Answers with `head`, then every piece of `rest`. A trainer call that fails mid-way
    cuts the connection, so that the client sees a failed download rather than a
    silently short file."""
    response = web.StreamResponse(headers=headers)
    await response.prepare(request)
    try:
        await response.write(head.encode())
        async for text in rest:
            await response.write(text.encode())
    except grpc.aio.AioRpcError as exc:
        log.warning(f"{what} interrupted", extra={"code": exc.code().name})
        if request.transport is not None:
            request.transport.abort()
        return response
    await response.write_eof()
    return response
