"""Reads a CSV (optionally gzipped) row by row, knowing how far into the file it is.

A row the csv module cannot read (a field past its size limit, a stray quote) is skipped
and counted with its line, so one bad row never costs the rest of the dataset; a file that
ends inside a quoted field was cut off, and fails whole (`CutOff`).
"""

from __future__ import annotations

import csv
import gzip
import io
import logging
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

log = logging.getLogger(__name__)

# Each bad row is logged with its line up to this many; all of them are counted.
LOGGED_SKIPS = 100


class CutOff(ValueError):
    """The file ends inside a quoted field: it was cut off."""


class CsvStream:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._size = max(path.stat().st_size, 1)
        self._raw = open(path, "rb")  # noqa: SIM115 - closed by __exit__
        binary: Any = gzip.GzipFile(fileobj=self._raw) if path.suffix == ".gz" else self._raw
        self._text = io.TextIOWrapper(binary, encoding="utf-8", newline="")
        self.line = 0  # the first line of the row last given
        self.skipped = 0
        self.first_skip = ""

    def rows(self) -> Iterator[list[str]]:
        reader = csv.reader(self._text, strict=True)
        while True:
            start = reader.line_num + 1
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                if "unexpected end of data" in str(exc):
                    raise CutOff(f"{self.path.name} ends inside a quoted field at line "
                                 f"{start}: the file is cut off") from None
                self.skip(start, str(exc))
                continue
            self.line = start
            yield row

    def dict_rows(self) -> Iterator[dict[str, str]]:
        """Rows by the header's names (as csv.DictReader: blank lines are passed over, a
        short row's missing fields are empty)."""
        rows = self.rows()
        header = next(rows, None)
        if header is None:
            return
        for row in rows:
            if row:
                yield dict(zip(header, [*row, *[""] * (len(header) - len(row))], strict=False))

    def skip(self, line: int, reason: str) -> None:
        """Counts a bad row (the reader's own, or one its caller refuses)."""
        self.skipped += 1
        where = f"line {line}: {reason}"
        self.first_skip = self.first_skip or where
        if self.skipped <= LOGGED_SKIPS:
            log.warning("bad row skipped", extra={"file": self.path.name, "line": line,
                                                  "reason": reason})

    def skipped_note(self) -> str:
        """What the status says of the skipped rows, or ""."""
        if not self.skipped:
            return ""
        rows = "row" if self.skipped == 1 else "rows"
        return (f"{self.skipped} bad {rows} skipped in {self.path.name} (first at "
                f"{self.first_skip}; each is in the log)")

    def fraction(self) -> float:
        """Share of the (compressed) file read so far."""
        return min(self._raw.tell() / self._size, 1.0)

    def __enter__(self) -> CsvStream:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._text.close()
        self._raw.close()
