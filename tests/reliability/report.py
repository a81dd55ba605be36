"""What the reliability and hostile-input tests did, gathered while they run and printed
as one table at the end of the session (see tests/conftest.py), and saved as JSON under
artifacts/ for `make reliability`."""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class FaultRun:
    """One fault scenario: what was injected and what happened to the annotations."""

    scenario: str
    faults: int
    sent: int
    acknowledged: int
    exactly_once: int
    lost: int
    duplicated: int = 0
    # What was sent: "annotations", or "calls" for scenarios measured in RPCs.
    unit: str = "annotations"


FAULTS: list[FaultRun] = []
# (kind of input, outcome) -> how many were tried
INPUTS: Counter[tuple[str, str]] = Counter()
FIGURES: dict[str, str] = {}


def fault(run: FaultRun) -> None:
    FAULTS.append(run)


def inputs(kind: str, outcome: str, count: int = 1) -> None:
    INPUTS[(kind, outcome)] += count


def figure(name: str, value: str) -> None:
    FIGURES[name] = value


def _rows(header: tuple[str, ...], rows: list[tuple]) -> list[str]:
    cells = [tuple(str(c) for c in header)] + [tuple(str(c) for c in r) for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    line = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True))  # noqa: E731
    return [line(cells[0]), "  ".join("-" * w for w in widths), *map(line, cells[1:])]


def table() -> str:
    out: list[str] = []
    if FAULTS:
        out += _rows(("scenario", "faults", "sent", "unit", "acknowledged", "exactly once",
                      "lost", "duplicated"),
                     [(f.scenario, f.faults, f.sent, f.unit, f.acknowledged, f.exactly_once,
                       f.lost, f.duplicated) for f in FAULTS])
        labels = [f for f in FAULTS if f.unit == "annotations"]
        total = FaultRun("total", sum(f.faults for f in FAULTS),
                         *(sum(getattr(f, k) for f in labels)
                           for k in ("sent", "acknowledged", "exactly_once", "lost",
                                     "duplicated")))
        out.append(f"total: {total.faults} faults injected; {total.sent} annotations sent, "
                   f"{total.acknowledged} acknowledged, {total.exactly_once} present exactly "
                   f"once, {total.lost} lost, {total.duplicated} duplicated")
        out.append("")
    if INPUTS:
        out += _rows(("bad input kind", "outcome", "tried"),
                     [(k, o, n) for (k, o), n in sorted(INPUTS.items())])
        out.append(f"bad inputs tried: {sum(INPUTS.values())}")
        out.append("")
    if FIGURES:
        out += _rows(("measurement", "value"), sorted(FIGURES.items()))
    if out:
        _save()
    return "\n".join(out).rstrip()


def _save() -> None:
    folder = Path(os.environ.get("HITL_ARTIFACTS", ROOT / "artifacts"))
    try:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "reliability.json").write_text(json.dumps({
            "faults": [asdict(f) for f in FAULTS],
            "inputs": [{"kind": k, "outcome": o, "tried": n} for (k, o), n in INPUTS.items()],
            "figures": FIGURES}, indent=2))
    except OSError:
        pass  # the printed table is the report; the file is a convenience
