"""Training waits for a quiet moment after new labels, but never longer than a bound."""

import asyncio

from trainer_service.models.training import settle


async def _poke(event: asyncio.Event, every_s: float, count: int) -> None:
    for _ in range(count):
        await asyncio.sleep(every_s)
        event.set()


async def test_waits_until_the_labels_stop_arriving():
    changed = asyncio.Event()
    poker = asyncio.create_task(_poke(changed, 0.05, 6))  # busy for 0.3 s, then quiet
    await asyncio.wait_for(settle(changed, quiet_s=0.4, max_s=30), 20)
    assert poker.done(), "settled while labels were still arriving"


async def test_a_steady_stream_cannot_postpone_training_past_the_bound():
    changed = asyncio.Event()
    poker = asyncio.create_task(_poke(changed, 0.05, 2000))  # never quiet for 0.4 s
    try:
        await asyncio.wait_for(settle(changed, quiet_s=0.4, max_s=0.8), 20)
        assert not poker.done(), "the bound, not a quiet moment, must end the wait"
    finally:
        poker.cancel()
