"""Self-consistency: a small share of an annotator's own earlier items comes back later,
unannounced, and the status shows how often they give the same answer again (Cohen's
kappa, which discounts the agreement that chance alone would give under class imbalance)
beside their agreement with the known labels of check (gold) items.

A repeated answer is a measurement, not a vote (see `answers`): what trains does not
change because somebody was asked twice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence

from trainer_service.annotators.checks import Checks
from trainer_service.datasets import Catalog
from trainer_service.domain import ANSWERS, AnnotatorStats, Label, Split, Strategy
from trainer_service.store.labels import LabelLog


def kappa(first: Sequence[Label], second: Sequence[Label]) -> float | None:
    """Cohen's kappa of two raters, or None where it is undefined (no pairs, or both
    raters always gave the same one answer: chance explains all their agreement).

    Two answers make it a formula over four counts (scikit-learn's `cohen_kappa_score`
    gives the same value, tests/trainer/test_consistency.py); the status rebuilds it for
    every annotator on the event loop at each label, where the library's argument checks
    cost milliseconds a call."""
    n = len(first)
    if not n or len({*first, *second}) < 2:
        return None
    agree = sum(a == b for a, b in zip(first, second, strict=True)) / n
    p1 = sum(a == Label.POSITIVE for a in first) / n
    p2 = sum(b == Label.POSITIVE for b in second) / n
    chance = p1 * p2 + (1 - p1) * (1 - p2)
    return None if chance == 1 else (agree - chance) / (1 - chance)


class Rechecks:
    def __init__(self, catalog: Catalog, labels: LabelLog, checks: Checks, gap: int,
                 seed: int) -> None:
        self.catalog, self.labels, self.checks = catalog, labels, checks
        self.gap, self.seed = gap, seed
        self._stats: tuple[int, list[AnnotatorStats]] | None = None

    def _order(self, annotator: str, item_id: str) -> str:
        """A fixed pseudo-random order, so that rechecks are spread over a person's
        history rather than always the oldest items."""
        return hashlib.blake2b(f"{self.seed}/{annotator}/{item_id}".encode(),
                               digest_size=8).hexdigest()

    def candidates(self, annotator: str) -> Iterator[tuple[str, float]]:
        """This annotator's earlier pool answers, at least `gap` of their answers ago,
        still in force and not rechecked yet (an imported label was never shown to them)."""
        annotations = self.labels.annotations
        mine = [annotations[i] for i in self.labels.by_annotator.get(annotator, ())]
        answers = [a for a in mine if a.label in ANSWERS and not a.undone]
        done = {a.item_id for a in answers if a.strategy == Strategy.RECHECK}
        eligible = {a.item_id for a in answers[:max(0, len(answers) - self.gap)]
                    if a.split == Split.POOL
                    and a.strategy not in (Strategy.RECHECK, Strategy.IMPORTED)
                    and a.item_id not in done}
        for item_id in sorted(eligible, key=lambda i: self._order(annotator, i)):
            yield item_id, 0.0

    def stats(self) -> list[AnnotatorStats]:
        """Per annotator, in order of first annotation; recounted when the log changes."""
        if self._stats is not None and self._stats[0] == self.labels.version:
            return self._stats[1]
        gold = self.checks.per_annotator()
        out = [self._one(annotator, ids, gold.get(annotator, []))
               for annotator, ids in self.labels.by_annotator.items()]
        self._stats = (self.labels.version, out)
        return out

    def _one(self, annotator: str, ids: list[str],
             known: list[tuple[Label, Label]]) -> AnnotatorStats:
        """`known`: (known label, first answer) of the gold items they answered: a check is
        decided by the first answer, so that fixing it after the page showed the known
        label never turns a disagreement into an agreement."""
        records = [r for r in (self.labels.annotations[i] for i in ids) if not r.undone]
        earlier: dict[str, Label] = {}  # item -> their latest answer before any recheck
        pairs: list[tuple[Label, Label]] = []
        answers = skipped = unsure = 0
        for r in records:
            if r.label == Label.SKIP:
                skipped += 1
                continue
            if r.label == Label.UNSURE:
                unsure += 1
                continue
            if r.label not in ANSWERS:
                continue
            answers += 1
            if r.strategy == Strategy.RECHECK and r.item_id in earlier:
                pairs.append((earlier[r.item_id], r.label))
            else:
                earlier[r.item_id] = r.label
        return AnnotatorStats(
            annotator=annotator, answers=answers, skipped=skipped, unsure=unsure,
            rechecks=len(pairs), recheck_agreements=sum(a == b for a, b in pairs),
            self_kappa=kappa([a for a, _ in pairs], [b for _, b in pairs]),
            gold_checks=len(known), gold_agreements=sum(k == a for k, a in known),
            gold_kappa=kappa([k for k, _ in known], [a for _, a in known]))
