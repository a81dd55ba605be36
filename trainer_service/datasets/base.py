"""The item record every loader produces."""

from __future__ import annotations

from dataclasses import dataclass

from trainer_service.domain import Label, Split


def is_url(location: str) -> bool:
    return location.startswith(("http://", "https://"))


@dataclass(frozen=True, slots=True)
class Item:
    id: str
    # A local path or an http(s) URL of the full image.
    location: str
    split: Split
    # The known label of validation and evaluation items; unspecified for the pool, whose
    # labels (when a source has any) are never given to the trainer.
    known_label: Label = Label.UNSPECIFIED
    thumbnail_url: str = ""

    @property
    def is_remote(self) -> bool:
        return is_url(self.location)


@dataclass(frozen=True)
class Progress:
    message: str
    # Fraction done in [0, 1], or -1 when unknown.
    fraction: float = -1.0
    # What loading must still say once it is done (e.g. bad rows skipped), or "".
    note: str = ""
