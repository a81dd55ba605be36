"""Which answer is in force for an item that more than one person answered.

Each annotator has one vote: their latest answer on the item. A recheck (their own item
shown again unannounced, to measure self-agreement) does not vote while they have an
earlier answer, so measuring never changes what trains. The majority rules; when the
votes are tied (a review that disagreed with the first answer), the item is contested
and trains on nothing until a third answer settles it.
"""

from __future__ import annotations

from collections.abc import Sequence

from trainer_service.domain import Annotation, Label, Strategy


def votes(records: Sequence[Annotation]) -> dict[str, Annotation]:
    """Annotator -> the answer that votes for them, from answers oldest first."""
    out: dict[str, Annotation] = {}
    for r in records:
        if r.strategy == Strategy.RECHECK and r.annotator in out:
            continue
        out[r.annotator] = r
    return out


def tally(records: Sequence[Annotation]) -> tuple[int, int]:
    """(positive votes, negative votes)."""
    cast = votes(records).values()
    positive = sum(1 for r in cast if r.label == Label.POSITIVE)
    return positive, len(cast) - positive


def resolve(records: Sequence[Annotation]) -> Annotation | None:
    """The answer in force: the latest vote of the majority label; None when there is no
    vote or the votes are tied."""
    if len(records) == 1:  # the usual case, kept cheap: status and training ask per item
        return records[0]
    cast = votes(records)
    positive = sum(1 for r in cast.values() if r.label == Label.POSITIVE)
    negative = len(cast) - positive
    if positive == negative:
        return None
    winner = Label.POSITIVE if positive > negative else Label.NEGATIVE
    return next(r for r in reversed(records) if r.label == winner and cast[r.annotator] is r)


def contested(records: Sequence[Annotation]) -> bool:
    """Answered, but the votes are tied."""
    return bool(records) and resolve(records) is None
