"""Reads a CSV (optionally gzipped) row by row, knowing how far into the file it is."""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any


class CsvStream:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._size = max(path.stat().st_size, 1)
        self._raw = open(path, "rb")  # noqa: SIM115 - closed by __exit__
        binary: Any = gzip.GzipFile(fileobj=self._raw) if path.suffix == ".gz" else self._raw
        self._text = io.TextIOWrapper(binary, encoding="utf-8", newline="")

    def rows(self) -> Iterator[list[str]]:
        return csv.reader(self._text)

    def dict_rows(self) -> Iterator[dict[str, str]]:
        return csv.DictReader(self._text)

    def fraction(self) -> float:
        """Share of the (compressed) file read so far."""
        return min(self._raw.tell() / self._size, 1.0)

    def __enter__(self) -> CsvStream:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._text.close()
        self._raw.close()
