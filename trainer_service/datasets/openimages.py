"""Open Images image-level labels for one label (e.g. /m/0199g Bicycle).

Validation items (verified present or absent) are the gold set and the split the shown
F-score is measured on; test items are the held-out evaluation set; train images form the
unlabelled pool (their verifications are never given to the trainer). Image locations
come from the official image CSVs when present, else from the ImageID on the public
mirror. Files are read from a folder or downloaded from a base URL; every CSV is parsed as
a stream, since the train files are hundreds of MB.
"""

from __future__ import annotations

import hashlib
import pickle
from collections.abc import Generator
from pathlib import Path

from trainer_service.datasets.base import Item, Progress, is_url
from trainer_service.datasets.csvstream import CsvStream
from trainer_service.datasets.download import NotFound, download
from trainer_service.datasets.local import BATCH, Batches, DatasetError
from trainer_service.domain import Label, Split

# Official file names, newest release first; each may also be gzipped.
LABEL_FILES = {
    "validation": ("validation-annotations-human-imagelabels.csv",),
    "test": ("test-annotations-human-imagelabels.csv",),
    "train": ("oidv6-train-annotations-human-imagelabels.csv",
              "train-annotations-human-imagelabels.csv"),
}
IMAGE_FILES = {
    "validation": ("validation-images-with-rotation.csv",),
    "test": ("test-images-with-rotation.csv",),
    "train": ("oidv6-train-images-with-labels-with-rotation.csv",
              "train-images-boxable-with-rotation.csv"),
}
# Validation first: it gives the gold items and the F-score, and is small.
SPLITS = (("validation", Split.VALIDATION), ("test", Split.EVALUATION), ("train", Split.POOL))
CACHE_FORMAT = 1
# Cached ints back to enums (a dict lookup: millions of rows).
_SPLITS = {int(s): s for s in Split}
_LABELS = {int(label): label for label in Label}


class OpenImages:
    def __init__(self, source: str, label_id: str, mirror: str, cache_dir: Path) -> None:
        # Several sources may be given, comma-separated: the official files are spread over
        # release folders (e.g. v6 for train, v5 for validation and test labels).
        self.sources = [part.strip().rstrip("/") for part in source.split(",") if part.strip()]
        self.source, self.label_id = ",".join(self.sources), label_id
        self.mirror = mirror.rstrip("/")
        self.cache_dir = cache_dir
        key = hashlib.sha1(f"{CACHE_FORMAT}|{self.source}|{label_id}|{self.mirror}".encode())
        self._label_files = 0
        self.manifest_cache = cache_dir / f"openimages-{key.hexdigest()[:16]}.pickle"

    def load(self) -> Batches:
        """Yields items split by split; the whole parsed manifest is cached at the end, so
        a restart reads one file instead of parsing (or downloading) again."""
        if self.manifest_cache.exists():
            yield from self._load_cache()
            return
        everything: list[Item] = []
        self._label_files = 0
        for split_name, split in SPLITS:
            for items, progress in self._load_split(split_name, split):
                everything.extend(items)
                yield items, progress
        if not self._label_files:
            raise DatasetError(f"no Open Images label file found under {self.source}")
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.manifest_cache.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            # Plain ints in the cache: it must not depend on where the enums are defined.
            pickle.dump([(i.id, i.location, int(i.split), int(i.known_label), i.thumbnail_url)
                         for i in everything], f, protocol=pickle.HIGHEST_PROTOCOL)
        tmp.replace(self.manifest_cache)
        yield [], Progress("Open Images loaded", 1.0)

    def _load_cache(self) -> Batches:
        with open(self.manifest_cache, "rb") as f:
            rows = pickle.load(f)
        for start in range(0, len(rows), BATCH * 10):
            chunk = [Item(item_id, location, _SPLITS[split], _LABELS[label], thumbnail)
                     for item_id, location, split, label, thumbnail
                     in rows[start:start + BATCH * 10]]
            yield chunk, Progress("reading the cached manifest", start / max(len(rows), 1))
        yield [], Progress("Open Images loaded from cache", 1.0)

    def locate(self, names: tuple[str, ...], what: str) -> Generator[Progress, None, Path | None]:
        """Finds one of `names` (or its .gz) locally or by download, yielding progress;
        returns the path, or None when the source has none of them."""
        for name in names:
            for candidate, source in ((c, s) for c in (name, name + ".gz") for s in self.sources):
                if not is_url(source):
                    path = Path(source) / candidate
                    if path.is_file():
                        return path
                    continue
                progress = download(f"{source}/{candidate}", self.cache_dir / "downloads")
                try:
                    while True:
                        done, total = next(progress)
                        fraction = done / total if total > 0 else -1.0
                        yield Progress(f"downloading {what} ({done >> 20} MiB)", fraction)
                except StopIteration as finished:
                    return Path(finished.value)
                except NotFound:
                    continue
        return None

    def _load_split(self, split_name: str, split: Split) -> Batches:
        label_path = yield from self._progress(LABEL_FILES[split_name], f"{split_name} labels")
        if label_path is None:
            return
        self._label_files += 1
        image_path = yield from self._progress(IMAGE_FILES[split_name], f"{split_name} images")
        if split == Split.POOL:
            yield from self._pool(split_name, label_path, image_path)
        else:
            yield from self._labelled(split_name, split, label_path, image_path)

    def _progress(self, names: tuple[str, ...],
                  what: str) -> Generator[tuple[list[Item], Progress], None, Path | None]:
        located = self.locate(names, what)
        while True:
            try:
                progress = next(located)
            except StopIteration as done:
                found: Path | None = done.value
                return found
            yield [], progress

    def _mirror_url(self, split_name: str, image_id: str) -> str:
        return f"{self.mirror}/{split_name}/{image_id}.jpg"

    def _labelled(self, split_name: str, split: Split, label_path: Path,
                  image_path: Path | None) -> Batches:
        labels: dict[str, Label] = {}
        with CsvStream(label_path) as stream:
            for n, row in enumerate(stream.dict_rows()):
                if row["LabelName"] == self.label_id:
                    labels[row["ImageID"]] = (Label.POSITIVE if float(row["Confidence"]) >= 0.5
                                              else Label.NEGATIVE)
                if n % 200_000 == 0:
                    yield [], Progress(f"parsing {split_name} labels", stream.fraction())
        urls: dict[str, tuple[str, str]] = {}
        if image_path is not None:
            with CsvStream(image_path) as stream:
                for row in stream.dict_rows():
                    if row["ImageID"] in labels:
                        urls[row["ImageID"]] = (row.get("OriginalURL") or "",
                                                row.get("Thumbnail300KURL") or "")
        items = []
        for image_id, label in labels.items():
            original, thumbnail = urls.get(image_id, ("", ""))
            items.append(Item(image_id, original or self._mirror_url(split_name, image_id),
                              split, label, thumbnail))
        yield items, Progress(f"{split_name}: {len(items)} items")

    def _pool(self, split_name: str, label_path: Path, image_path: Path | None) -> Batches:
        """Every train image; from the image CSV when present (it carries the URLs), else
        the distinct ImageIDs of the label file (grouped by image, so no set is needed)."""
        batch: list[Item] = []
        previous = ""
        path = image_path or label_path
        with CsvStream(path) as stream:
            for row in stream.dict_rows():
                image_id = row["ImageID"]
                if image_id == previous:
                    continue
                previous = image_id
                url = row.get("OriginalURL") or self._mirror_url(split_name, image_id)
                batch.append(Item(image_id, url, Split.POOL, Label.UNSPECIFIED,
                                  row.get("Thumbnail300KURL") or ""))
                if len(batch) >= BATCH * 10:
                    yield batch, Progress(f"parsing {split_name} images", stream.fraction())
                    batch = []
        yield batch, Progress(f"{split_name}: pool read", 1.0)
