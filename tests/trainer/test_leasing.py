"""Leases and the sampling mix: no item to two annotators, labelled items never again,
unranked items when the queues run dry."""

from __future__ import annotations

import numpy as np

from trainer_service.domain import Strategy
from trainer_service.selection.leasing import Sampler
from trainer_service.selection.ranking import FALLBACK, uncertainty_queue

GOLD, RANDOM, UNCERTAIN = Strategy.GOLD, Strategy.RANDOM, Strategy.UNCERTAIN
MIX = (("gold", 0.1), ("random", 0.1), ("uncertain", 0.7), ("outlier", 0.1))


def always(_item_id: str) -> bool:
    return True


def test_a_new_item_is_not_served_ahead_of_better_ranked_ones() -> None:
    # The demo appended a freshly scored uncertain item and then popped that same item,
    # whatever its rank. Here queues change only as a whole, from one model's scores, and
    # serving follows their order.
    sampler = Sampler([("uncertain", 1.0)], lease_s=60)
    sampler.install({UNCERTAIN: uncertainty_queue(["a", "b"], np.array([0.5, 0.9]), 0.5)}, "v1")
    first = sampler.lease("x", 1, [], always)[0]
    assert first.item_id == "a"
    sampler.install({UNCERTAIN: uncertainty_queue(["b", "new"], np.array([0.52, 0.99]), 0.5)},
                    "v2")
    second = sampler.lease("x", 1, [], lambda i: i != "a")[0]
    assert (second.item_id, second.model_version) == ("b", "v2")


def test_leases_never_hand_one_item_to_two_annotators() -> None:
    sampler = Sampler([("random", 1.0)], lease_s=60)
    sampler.install({RANDOM: [(f"i{k}", 0.0) for k in range(10)]}, "v1")
    a = {lease.item_id for lease in sampler.lease("a", 4, [], always, now=0)}
    b = {lease.item_id for lease in sampler.lease("b", 4, [], always, now=1)}
    assert len(a) == len(b) == 4 and not a & b
    c = sampler.lease("c", 10, [], always, now=2)
    assert len(c) == 2  # only the two free items
    # Expired leases free their items; held ones are renewed and not returned again.
    held = set(sorted(a)[:2])
    assert sampler.lease("a", 0, held, always, now=59) == []
    sampler.expire(now=61)
    again = {lease.item_id for lease in sampler.lease("d", 10, [], always, now=61)}
    assert again == (a - held) | b  # c's leases (from t=2) and a's renewed ones still hold


def test_labelled_items_are_never_served_again() -> None:
    labelled = {"i0", "i1"}
    sampler = Sampler([("random", 1.0)], lease_s=60)
    sampler.install({RANDOM: [(f"i{k}", 0.0) for k in range(4)]}, "v1")
    served = [lease.item_id for lease in sampler.lease("a", 10, [], lambda i: i not in labelled)]
    assert served == ["i2", "i3"]


def test_fallback_serves_unembedded_items_when_queues_run_dry() -> None:
    # Nothing embedded yet: the non-gold slots go to unranked pool items, and gold keeps
    # its share of the mix instead of absorbing every slot.
    sampler = Sampler(MIX, lease_s=60)
    sampler.install({GOLD: [(f"g{k}", 0.0) for k in range(5)],
                     FALLBACK: [(f"u{k}", 0.0) for k in range(20)]}, "")
    leases = sampler.lease("a", 10, [], always)
    strategies = [lease.strategy for lease in leases]
    assert (strategies.count(GOLD), strategies.count(RANDOM)) == (1, 9)
    assert len({lease.item_id for lease in leases}) == 10
