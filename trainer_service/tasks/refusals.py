"""Refusals on the wire: a servicer method raises `TrainerError` (or a task's `TaskError`,
given its gRPC status here) and its caller gets that error's status and message. The
servicers hold no try/except of their own, so a refusal reads the same from every
method."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Never, TypeVar

import grpc

from hitl.rpc_types import AnyContext
from trainer_service.domain import TrainerError
from trainer_service.tasks.registry import TaskDeclared, TaskExists, UnknownTask
from trainer_service.tasks.running import TaskArchived, TaskStarting
from trainer_service.tasks.spec import TaskError

S = TypeVar("S")
Q = TypeVar("Q")
R = TypeVar("R")


def trainer_error(exc: TaskError) -> TrainerError:
    """How a task's refusal reads on the wire."""
    code = (grpc.StatusCode.NOT_FOUND if isinstance(exc, UnknownTask)
            else grpc.StatusCode.ALREADY_EXISTS if isinstance(exc, TaskExists)
            else grpc.StatusCode.UNAVAILABLE if isinstance(exc, TaskStarting)
            else grpc.StatusCode.FAILED_PRECONDITION if isinstance(exc, (TaskArchived,
                                                                        TaskDeclared))
            else grpc.StatusCode.INVALID_ARGUMENT)
    return TrainerError(code, str(exc))


async def _abort(context: AnyContext, exc: TrainerError | TaskError) -> Never:
    error = trainer_error(exc) if isinstance(exc, TaskError) else exc
    await context.abort(error.code, str(error))


def answered(method: Callable[[S, Q, AnyContext], Awaitable[R]]
             ) -> Callable[[S, Q, AnyContext], Awaitable[R]]:
    """A unary-response method whose refusals become its status."""
    @functools.wraps(method)
    async def refusing(self: S, request: Q, context: AnyContext) -> R:
        try:
            return await method(self, request, context)
        except (TrainerError, TaskError) as exc:
            await _abort(context, exc)
    return refusing


def streamed(method: Callable[[S, Q, AnyContext], AsyncIterator[R]]
             ) -> Callable[[S, Q, AnyContext], AsyncIterator[R]]:
    """A response-streaming method whose refusals (before or between its messages)
    become its status."""
    @functools.wraps(method)
    async def refusing(self: S, request: Q, context: AnyContext) -> AsyncIterator[R]:
        try:
            async for message in method(self, request, context):
                yield message
        except (TrainerError, TaskError) as exc:
            await _abort(context, exc)
    return refusing
