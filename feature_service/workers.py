"""Workers: where images are decoded, prepared and (on a CPU) run through the models
(the jobs of feature_service/jobs.py).

`ProcessWorkers` are spawned processes, each with its own extractor built by a picklable
`Builder`, so decoding, resizing and the models never hold the service process's GIL,
and each worker's intra-op threads are its own (workers x threads never exceeds what the
calibration chose). The service keeps up to DEPTH jobs in each one's pipe and reads the
answers on threads of its own. A worker that dies (out of memory, a crash in a decoder)
is replaced; its images fail with a retryable INTERNAL error and the service keeps
serving.
`ThreadWorkers` run the same jobs on threads of the service process around one extractor
object: for tests, and for extractors that cannot be rebuilt elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import signal
import time
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
                result: object = ("ok", *_run_timed(state, job))
            except Exception as exc:
                result = ("error", f"{type(exc).__name__}: {exc}", 0.0)
            conn.send(result)
    except (EOFError, OSError):
        return


def _run_timed(state: State, job: Job) -> tuple[object, float]:
    """The job's answer and the seconds spent on it (a queued job's wait not included)."""
    started = time.perf_counter()
    return state.run(job), time.perf_counter() - started


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
        # A worker answers its jobs in the order they were sent: whoever sent first
        # reads first (see ProcessWorkers.run).
        self.sending, self.reading = asyncio.Lock(), asyncio.Lock()

    def send(self, message: object) -> None:
        try:
            self.conn.send(message)
        except (OSError, BrokenPipeError):
            raise self._stopped() from None

    def recv(self) -> object:
        """Blocking: the answer to the oldest job not yet read (or "ready")."""
        try:
            return self.conn.recv()
        except (EOFError, OSError):
            raise self._stopped() from None

    def _stopped(self) -> WorkerStopped:
        return WorkerStopped(f"worker exited with code {self.process.exitcode}")

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.close()
        self.process.join(5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)


# Jobs a worker process holds at once: the next one waits in its pipe while it runs the
# current one, so it starts the moment the current one ends. With one at a time, each
# job's result crossed back and the service's event loop chose and sent the next while
# the worker idled: about 1 ms a job, 3.7% of the workers' time with `lite` at one image
# a job on two cores.
DEPTH = 2


class ProcessWorkers:
    """`count` worker processes, each given up to DEPTH jobs at once; `run` gives a job
    to the least busy one (so that jobs sent together, as the calibration's, run on
    different processes)."""

    def __init__(self, count: int, builder: Builder | None, limits: Limits,
                 preparer: tuple[Callable[[Any], object], int] | None = None) -> None:
        self.count = count
        self._args = (builder, limits, preparer)
        self._processes: list[_Process] = []
        self._jobs = [0] * count  # given and not yet answered, per process
        self._large = [0] * count  # of which large images
        self._changed = asyncio.Event()
        self._io = ThreadPoolExecutor(count * DEPTH, thread_name_prefix="worker-io")

    @property
    def slots(self) -> int:
        """Jobs that may be under way at once."""
        return self.count * DEPTH

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._processes = [_Process(*self._args) for _ in range(self.count)]
        await asyncio.gather(*(loop.run_in_executor(self._io, p.recv)
                               for p in self._processes))

    async def _take(self, large: bool) -> int:
        """The least busy process with room; a small job never waits behind a large one
        (the scheduler keeps a process free of them), it waits for room instead."""
        while True:
            room = [i for i in range(self.count) if self._jobs[i] < DEPTH
                    and (large or not self._large[i])]
            if room:
                index = min(room, key=self._jobs.__getitem__)
                self._jobs[index] += 1
                self._large[index] += large
                return index
            self._changed.clear()
            await self._changed.wait()

    def _give_back(self, index: int, large: bool) -> None:
        self._jobs[index] -= 1
        self._large[index] -= large
        self._changed.set()

    async def run(self, job: Job, large: bool = False) -> Any:
        """`job`'s answer; `large`: the job is one large image."""
        value, _ = await self.run_timed(job, large)
        return value

    async def run_timed(self, job: Job, large: bool = False) -> tuple[Any, float]:
        """`job`'s answer and the seconds the worker spent on it."""
        loop = asyncio.get_running_loop()
        index = await self._take(large)
        process = self._processes[index]
        try:
            # Sending, then queueing to read before the next job may send, keeps the
            # reads in the order of the sends.
            async with process.sending:
                await loop.run_in_executor(self._io, process.send, job)
                await process.reading.acquire()
            try:
                reply: Any = await loop.run_in_executor(self._io, process.recv)
            finally:
                process.reading.release()
        except WorkerStopped as exc:
            if self._processes[index] is process:  # the first of its jobs to find out
                log.error("a worker process stopped; starting another",
                          extra={"error": str(exc)})
                process.stop()
                self._processes[index] = _Process(*self._args)
                with contextlib.suppress(WorkerStopped):
                    await loop.run_in_executor(self._io, self._processes[index].recv)
            raise
        finally:
            self._give_back(index, large)
        status, value, seconds = reply
        if status == "error":
            raise RuntimeError(value)
        return value, seconds

    async def shrink(self, count: int) -> None:
        """Stops all but `count` workers (the calibration chose fewer) once their jobs
        are answered; no new job goes to them meanwhile."""
        loop = asyncio.get_running_loop()
        surplus = range(count, self.count)
        self.count = min(self.count, count)
        while any(self._jobs[i] for i in surplus):
            self._changed.clear()
            await self._changed.wait()
        for index in surplus:
            await loop.run_in_executor(self._io, self._processes[index].stop)
        del self._processes[self.count:], self._jobs[self.count:], self._large[self.count:]

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

    @property
    def slots(self) -> int:
        return self.count

    async def start(self) -> None:
        pass

    async def shrink(self, count: int) -> None:
        self.count = count

    async def run(self, job: Job, large: bool = False) -> Any:
        value, _ = await self.run_timed(job, large)
        return value

    async def run_timed(self, job: Job, large: bool = False) -> tuple[Any, float]:
        return await asyncio.get_running_loop().run_in_executor(
            self._threads, _run_timed, self._state, job)

    async def close(self) -> None:
        self._threads.shutdown(wait=True)


Workers = ProcessWorkers | ThreadWorkers
