"""Types shared by the servicers and the code around them (the generated stubs type each
RPC's own request, response and context)."""

from __future__ import annotations

from typing import Any, TypeAlias

import grpc

# The context of whichever RPC is being served, for the helpers every RPC calls (abort,
# metadata, status code): grpc.aio.ServicerContext is invariant in its request and
# response types, so one helper for all of them takes it with both left open.
# (A string: grpc's classes are generic only in their type stubs.)
AnyContext: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"
