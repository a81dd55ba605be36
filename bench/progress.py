"""A one-line text progress bar on stderr (redrawn in place on a terminal, printed at
most every few seconds otherwise so that CI logs stay short)."""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, title: str, total: int, width: int = 30, every_s: float = 5.0) -> None:
        self.title, self.total, self.width = title, max(total, 1), width
        self.tty = sys.stderr.isatty()
        self.every_s = 0.2 if self.tty else every_s
        self.started = time.monotonic()
        self._last = 0.0

    def update(self, done: int, note: str = "", force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < self.every_s:
            return
        self._last = now
        fraction = min(max(done / self.total, 0.0), 1.0)
        filled = int(fraction * self.width)
        bar = "#" * filled + "-" * (self.width - filled)
        elapsed = now - self.started
        line = (f"{self.title} [{bar}] {done}/{self.total} {fraction:4.0%} "
                f"{elapsed:5.0f}s {note}")
        sys.stderr.write(("\r" + line) if self.tty else (line + "\n"))
        sys.stderr.flush()

    def close(self, done: int, note: str = "") -> None:
        self.update(done, note, force=True)
        if self.tty:
            sys.stderr.write("\n")
