"""Progress bars (tqdm) on stderr: redrawn in place on a terminal, and otherwise drawn at
most every few seconds so that CI logs stay short."""

from __future__ import annotations

import sys

from tqdm import tqdm


def bar(title: str, total: int) -> tqdm:
    return tqdm(total=max(total, 1), desc=title, file=sys.stderr, dynamic_ncols=True,
                mininterval=0.2 if sys.stderr.isatty() else 5.0)


def advance(progress: tqdm, done: int, note: str = "") -> None:
    """Moves `progress` to `done` (the services report totals, not steps)."""
    if note:
        progress.set_postfix_str(note, refresh=False)
    progress.update(done - progress.n)
