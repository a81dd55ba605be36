"""Workers: where images are decoded, prepared and (on a CPU) run through the models
(the jobs of feature_service/jobs.py).

`ProcessWorkers` are spawned processes, each with its own extractor built by a picklable
`Builder`, so decoding, resizing and the models never hold the service process's GIL,
and each worker's intra-op threads are its own (workers x threads never exceeds what the
calibration chose). The service sends each a job at a time over a pipe and waits on a
thread of its own. A worker that dies (out of memory, a crash in a decoder) is replaced;
its images fail with a retryable INTERNAL error and the service keeps serving.
`ThreadWorkers` run the same jobs on threads of the service process around one extractor
object: for tests, and for extractors that cannot be rebuilt elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import signal
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from typing import Any

from feature_service.extractors.base import Extractor
from feature_service.jobs import Builder, Job, Limits, State, lower_priority

log = logging.getLogger(__name__)
def _serve(conn: Connection, builder: Builder | None, limits: Limits,
           preparer: tuple[Callable[[Any], object], int] | None) -> None:
    """A worker process's loop: one job in, its result (or its error) out, until the
    service closes the pipe (or dies: the pipe closes with it, so no worker outlives it).
    Ctrl-C in a terminal reaches the whole process group: the service stops its workers."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    lower_priority(limits.nice)  # before the models' thread pools start: they inherit it
    state = State(builder, limits, preparer)
    try:
        conn.send("ready")
        while True:
            job = conn.recv()
            try:
                result: object = ("ok", state.run(job))
            except Exception as exc:
                result = ("error", f"{type(exc).__name__}: {exc}")
            conn.send(result)
    except (EOFError, OSError):
        return


class WorkerStopped(RuntimeError):
    """The worker died during the job."""


class _Process:
    def __init__(self, builder: Builder | None, limits: Limits,
                 preparer: tuple[Callable[[Any], object], int] | None) -> None:
        context = multiprocessing.get_context("spawn")
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(child, builder, limits, preparer),
                                       daemon=True, name="feature-worker")
        self.process.start()
        child.close()

    def call(self, message: object) -> object:
        """Blocking: sends `message` (None: only wait for "ready") and reads the answer."""
        try:
            if message is not None:
                self.conn.send(message)
            return self.conn.recv()
        except (EOFError, OSError, BrokenPipeError):
            raise WorkerStopped(f"worker exited with code {self.process.exitcode}") from None

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.close()
        self.process.join(5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)


class ProcessWorkers:
    """`count` worker processes; `run` gives a job to a free one (the scheduler never
    asks for more at once than there are workers)."""

    def __init__(self, count: int, builder: Builder | None, limits: Limits,
                 preparer: tuple[Callable[[Any], object], int] | None = None) -> None:
        self.count = count
        self._args = (builder, limits, preparer)
        self._processes: list[_Process] = []
        self._free: asyncio.Queue[int] = asyncio.Queue()
        self._io = ThreadPoolExecutor(count, thread_name_prefix="worker-io")

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._processes = [_Process(*self._args) for _ in range(self.count)]
        await asyncio.gather(*(loop.run_in_executor(self._io, p.call, None)
                               for p in self._processes))
        for index in range(self.count):
            self._free.put_nowait(index)

    async def run(self, job: Job) -> Any:
        loop = asyncio.get_running_loop()
        index = await self._free.get()
        try:
            reply: Any = await loop.run_in_executor(self._io, self._processes[index].call, job)
        except WorkerStopped as exc:
            log.error("a worker process stopped; starting another", extra={"error": str(exc)})
            self._processes[index].stop()
            self._processes[index] = _Process(*self._args)
            with contextlib.suppress(WorkerStopped):
                await loop.run_in_executor(self._io, self._processes[index].call, None)
            raise
        finally:
            self._free.put_nowait(index)
        status, value = reply
        if status == "error":
            raise RuntimeError(value)
        return value

    async def shrink(self, count: int) -> None:
        """Stops all but `count` workers (the calibration chose fewer), once idle."""
        loop = asyncio.get_running_loop()
        while self.count > count:
            index = await self._free.get()
            if index < count:
                self._free.put_nowait(index)
                await asyncio.sleep(0)
                continue
            await loop.run_in_executor(self._io, self._processes[index].stop)
            self.count -= 1
        self._processes = self._processes[:count]

    async def close(self) -> None:
        for process in self._processes:
            process.stop()
        self._io.shutdown(wait=False)


class ThreadWorkers:
    """The same jobs on `count` threads of this process, around one extractor object."""

    def __init__(self, count: int, extractor: Extractor, limits: Limits) -> None:
        self.count = count
        self._state = State(None, limits, None, extractor)
        self._threads = ThreadPoolExecutor(count, thread_name_prefix="worker",
                                           initializer=lower_priority,
                                           initargs=(limits.nice,))

    async def start(self) -> None:
        pass

    async def shrink(self, count: int) -> None:
        self.count = count

    async def run(self, job: Job) -> Any:
        return await asyncio.get_running_loop().run_in_executor(
            self._threads, self._state.run, job)

    async def close(self) -> None:
        self._threads.shutdown(wait=True)


Workers = ProcessWorkers | ThreadWorkers
