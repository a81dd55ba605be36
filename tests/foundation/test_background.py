"""hitl.background.Debounced: the one helper behind the trainer's live estimate, ranking
and search for label errors."""

from __future__ import annotations

import asyncio
import logging

import pytest

from hitl.background import Debounced

log = logging.getLogger("test-background")


class Work:
    def __init__(self, seconds: float = 0.0, fail: int = 0) -> None:
        self.runs: list[float] = []
        self.seconds, self.fail = seconds, fail
        self.started = asyncio.Event()

    async def __call__(self) -> None:
        self.runs.append(asyncio.get_running_loop().time())
        self.started.set()
        await asyncio.sleep(self.seconds)
        if self.fail:
            self.fail -= 1
            raise RuntimeError("boom")


async def settle(job: Debounced) -> None:
    while job.busy:
        await asyncio.sleep(0.01)


async def test_a_burst_of_requests_costs_one_run() -> None:
    work = Work()
    job = Debounced(work, name="t", failure="failed", log=log, delay_s=0.05)
    for _ in range(20):
        job.schedule()
    await settle(job)
    assert len(work.runs) == 1


async def test_a_request_during_a_run_runs_once_more_after_it() -> None:
    work = Work(seconds=0.1)
    job = Debounced(work, name="t", failure="failed", log=log)
    job.schedule()
    await work.started.wait()
    job.schedule()
    job.schedule()
    await settle(job)
    assert len(work.runs) == 2


async def test_a_failure_is_logged_and_the_next_request_runs_again(
        caplog: pytest.LogCaptureFixture) -> None:
    work = Work(fail=1)
    job = Debounced(work, name="t", failure="the thing failed", log=log)
    with caplog.at_level(logging.ERROR, logger="test-background"):
        job.schedule()
        await settle(job)
    assert [r.getMessage() for r in caplog.records] == ["the thing failed"]
    assert caplog.records[0].exc_info is not None
    job.schedule()
    await settle(job)
    assert len(work.runs) == 2


async def test_pace_spaces_costly_passes() -> None:
    work = Work(seconds=0.05)
    job = Debounced(work, name="t", failure="failed", log=log, pace=4.0)
    job.schedule()
    await work.started.wait()
    job.schedule()
    await settle(job)
    first, second = work.runs
    assert second - first >= 4.0 * 0.05 * 0.9


async def test_close_cancels_a_waiting_run() -> None:
    work = Work()
    job = Debounced(work, name="t", failure="failed", log=log, delay_s=10.0)
    job.schedule()
    await job.close()
    assert work.runs == [] and not job.busy
