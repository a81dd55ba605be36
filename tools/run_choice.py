"""What `make run` runs. Told nothing, it runs Open Images with `resnext50-frcnn` where
both can be had (Open Images reachable and the pretrained weights present) and otherwise
the offline demo, the shared street tiles with `lite`, saying so in one line; what it is
told explicitly it runs as told, or refuses in one line naming what is missing."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

OPEN_IMAGES = "openimages"
FULL_EXTRACTOR = "resnext50-frcnn"
DEMO_EXTRACTOR = "lite"
# Beside the checkout, where the project's shared data lives.
DEMO_TILES = Path("..") / "shared" / "data" / "streetview-tiles" / "labels.csv"
OPEN_IMAGES_HOST = ("storage.googleapis.com", 443)
EXPLICIT = "make run DATASET=<openimages, a folder of images or a CSV manifest> EXTRACTOR=lite"
OFFLINE = (f"offline, run `make run` with no DATASET or EXTRACTOR (the demo), or "
           f"make run DATASET={DEMO_TILES} EXTRACTOR={DEMO_EXTRACTOR}")


class CannotRun(Exception):
    """What was asked for (or anything at all) cannot run here; one line saying why and
    what to pass instead."""


@dataclass(frozen=True)
class Choice:
    dataset: str
    extractor: str
    note: str | None = None  # one line when something was chosen on the caller's behalf


def reachable(host: tuple[str, int] = OPEN_IMAGES_HOST, timeout: float = 3.0) -> bool:
    try:
        with socket.create_connection(host, timeout=timeout):
            return True
    except OSError:
        return False


def open_images_available() -> bool:
    # A TRAINER_OPENIMAGES_SOURCE is the operator's own copy (folders or a mirror).
    return bool(os.environ.get("TRAINER_OPENIMAGES_SOURCE")) or reachable()


def resnext_weights_present() -> bool:
    # Imports torchvision (seconds): asked only when the answer matters.
    from feature_service.extractors.resnext_frcnn import WEIGHTS, weights_file

    return all(weights_file(w).is_file() for w in WEIGHTS)


@dataclass
class Checks:
    """The facts the choice depends on, asked lazily (each can take seconds)."""

    open_images: Callable[[], bool] = open_images_available
    weights: Callable[[], bool] = resnext_weights_present
    tiles: Path = DEMO_TILES


NO_OPEN_IMAGES = f"Open Images cannot be reached (no network to {OPEN_IMAGES_HOST[0]})"
NO_WEIGHTS = ("the resnext50-frcnn weights are not here (`make weights` fetches them "
              "where there is internet)")


def choose(dataset: str | None, extractor: str | None, checks: Checks | None = None) -> Choice:
    """The dataset and extractor to run; None means "not given". Raises CannotRun."""
    checks = checks or Checks()
    if dataset is None and extractor is None:
        return _default(checks)
    if dataset is None:
        assert extractor is not None
        _check_extractor(extractor, checks)
        if checks.open_images():
            return Choice(OPEN_IMAGES, extractor)
        return Choice(_demo_tiles(checks, NO_OPEN_IMAGES), extractor,
                      f"{NO_OPEN_IMAGES}: using the street tiles at {checks.tiles}")
    _check_dataset(dataset, checks)
    if extractor is None:
        if checks.weights():
            return Choice(dataset, FULL_EXTRACTOR)
        return Choice(dataset, DEMO_EXTRACTOR, f"{NO_WEIGHTS}: using the lite extractor")
    _check_extractor(extractor, checks)
    return Choice(dataset, extractor)


def _default(checks: Checks) -> Choice:
    missing = (NO_OPEN_IMAGES if not checks.open_images()
               else NO_WEIGHTS if not checks.weights() else None)
    if missing is None:
        return Choice(OPEN_IMAGES, FULL_EXTRACTOR,
                      f"Open Images with {FULL_EXTRACTOR} (the full setup)")
    tiles = _demo_tiles(checks, missing)
    return Choice(tiles, DEMO_EXTRACTOR,
                  f"{missing}: running the offline demo, the street tiles at {checks.tiles} "
                  f"with the {DEMO_EXTRACTOR} extractor")


def _demo_tiles(checks: Checks, missing: str) -> str:
    if not checks.tiles.is_file():
        raise CannotRun(f"{missing}, and the offline demo's street tiles are not at "
                        f"{checks.tiles}: pass what to run, e.g. {EXPLICIT}")
    return str(checks.tiles)


def _check_dataset(dataset: str, checks: Checks) -> None:
    if dataset == OPEN_IMAGES:
        if not checks.open_images():
            raise CannotRun(f"{NO_OPEN_IMAGES}; {OFFLINE}")
    elif not dataset.startswith(("http://", "https://")) and not Path(dataset).exists():
        raise CannotRun(f"dataset {dataset} not found: DATASET is openimages, a folder of "
                        "images or a CSV manifest")


def _check_extractor(extractor: str, checks: Checks) -> None:
    if extractor not in (FULL_EXTRACTOR, DEMO_EXTRACTOR):
        raise CannotRun(f"unknown extractor {extractor!r}: {FULL_EXTRACTOR} or "
                        f"{DEMO_EXTRACTOR}")
    if extractor == FULL_EXTRACTOR and not checks.weights():
        raise CannotRun(f"{NO_WEIGHTS}; or use EXTRACTOR={DEMO_EXTRACTOR}")
