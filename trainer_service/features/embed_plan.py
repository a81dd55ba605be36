"""How the extraction worker puts one Embed call together, and how failed items come
round again.

Batches are bounded by bytes as well as by count: a request larger than the feature
service accepts (FEATURE_MAX_MESSAGE_BYTES, which it reports in Describe) or than the
trainer may send (TRAINER_MAX_MESSAGE_BYTES) is refused whole, every time, so a batch of
large local photos would otherwise stall extraction for good. Sizes come from the file
system before anything is read; an image that could not travel even alone is failed
without being read.

Items that fail in a way the feature service calls retryable (the image host failed or
timed out, or the service failed inside) are tried again after a growing wait, and
failed with their reason after `max_attempts` tries, instead of coming round forever.
The count is kept in memory: a restart gives such items their tries again.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from trainer_service.datasets import Item

# What an ImageRef adds to its id and bytes in the serialised EmbedRequest: field tags
# and length prefixes (at most 5 bytes each for these sizes), rounded up.
REF_OVERHEAD = 24
MAX_RETRY_WAIT_S = 300.0


def mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"


def encoded_size(item: Item) -> int:
    """Bytes `item` adds to an EmbedRequest: the URL for a remote image, the file for a
    local one (OSError when it cannot be read)."""
    payload = len(item.location.encode()) if item.is_remote else os.stat(
        Path(item.location)).st_size
    return payload + len(item.id.encode()) + REF_OVERHEAD


@dataclass
class Plan:
    batch: list[Item] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (item id, reason)


def plan_batch(items: Iterable[Item], budget: int) -> Plan:
    """The longest prefix of `items` (in priority order) whose images fit in `budget`
    bytes together; items that cannot be read or cannot fit even alone are failed, and
    the rest stay queued for later calls. Runs off the event loop (it stats files)."""
    plan, used = Plan(), 0
    for item in items:
        try:
            size = encoded_size(item)
        except OSError as exc:
            plan.failed.append((item.id, f"unreadable: {exc.strerror or exc}"))
            continue
        if size > budget:
            plan.failed.append((item.id, (
                f"TOO_LARGE: the image is {mib(size)}, more than one Embed message may carry "
                f"({mib(budget)}: the smaller of TRAINER_MAX_MESSAGE_BYTES and the feature "
                "service's FEATURE_MAX_MESSAGE_BYTES)")))
            continue
        if used + size > budget:
            break
        plan.batch.append(item)
        used += size
    return plan


@dataclass
class _Tries:
    count: int
    not_before: float
    alone: bool  # failed inside a batch that failed whole: sent alone from now on


class Retries:
    def __init__(self, max_attempts: int, first_wait_s: float) -> None:
        self.max_attempts, self.first_wait_s = max_attempts, first_wait_s
        self._tries: dict[str, _Tries] = {}

    def __len__(self) -> int:
        return len(self._tries)

    def waiting(self, item_id: str, now: float) -> bool:
        tries = self._tries.get(item_id)
        return tries is not None and tries.not_before > now

    def alone(self, item_id: str) -> bool:
        tries = self._tries.get(item_id)
        return tries is not None and tries.alone

    def next_due(self) -> float | None:
        return min((t.not_before for t in self._tries.values()), default=None)

    def failed(self, item_id: str, reason: str, alone: bool = False,
               now: float | None = None) -> str | None:
        """Counts a failed try; the reason to fail the item with once it has had every
        try, else None (and it waits before the next)."""
        now = time.monotonic() if now is None else now
        tries = self._tries.get(item_id) or _Tries(0, now, False)
        tries.count += 1
        tries.alone |= alone
        if tries.count >= self.max_attempts:
            self._tries.pop(item_id, None)
            return f"{reason} (gave up after {tries.count} tries)"
        tries.not_before = now + min(self.first_wait_s * 2 ** (tries.count - 1),
                                     MAX_RETRY_WAIT_S)
        self._tries[item_id] = tries
        return None

    def tries(self, item_id: str) -> int:
        tries = self._tries.get(item_id)
        return tries.count if tries else 0

    def forget(self, item_ids: Iterable[str]) -> None:
        for item_id in item_ids:
            self._tries.pop(item_id, None)
