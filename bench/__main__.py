"""`make bench`: one report (markdown + JSON) of figures measured side by side in one run.

    python -m bench --short     # CI form: tens of seconds
    python -m bench             # full form
    python -m bench --only gateway

Each part is a module with `run(short: bool) -> dict`; a part whose module is absent is
reported as missing and one that fails as an error, so the other parts still report.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PARTS = {"features": "bench.features", "lite_stages": "bench.lite_stages",
         "precision": "bench.precision",
         "embedding": "bench.embed_dataset",
         "trainer": "bench.trainer", "gateway": "bench.gateway", "startup": "bench.startup",
         "predictions": "bench.predictions", "floods": "bench.floods", "tasks": "bench.tasks"}
DEFAULT_OUT = ROOT / "artifacts" / "bench"


def load_part(module: str) -> Callable[[bool], dict] | None:
    """The part's `run`, or None when its module does not exist."""
    try:
        return importlib.import_module(module).run  # type: ignore[no-any-return]
    except ModuleNotFoundError as exc:
        if exc.name == module:
            return None
        raise


def run_part(name: str, module: str, short: bool) -> dict:
    started = time.monotonic()
    try:
        run = load_part(module)
        if run is None:
            return {"status": "missing", "reason": f"{module} is not in this checkout"}
        result = dict(run(short))
    except Exception as exc:
        return {"status": "error", "error": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc(limit=8),
                "seconds": round(time.monotonic() - started, 1)}
    result.setdefault("status", "ok")
    result["seconds"] = round(time.monotonic() - started, 1)
    return result


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                              capture_output=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine() -> dict:
    return {"python": platform.python_version(), "platform": platform.platform(),
            "cpus": os.cpu_count(), "commit": _commit(),
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def flatten(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """Nested dicts as (dotted key, leaf) rows, lists of scalars kept whole."""
    if isinstance(value, dict):
        rows: list[tuple[str, Any]] = []
        for key, inner in value.items():
            rows.extend(flatten(inner, f"{prefix}.{key}" if prefix else str(key)))
        return rows
    if isinstance(value, list) and any(isinstance(v, dict) for v in value):
        rows = []
        for i, inner in enumerate(value):
            rows.extend(flatten(inner, f"{prefix}[{i}]"))
        return rows
    return [(prefix, value)]


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = [f"# Benchmarks ({report['form']} form)", "",
             f"{m['time']}, commit {m['commit'] or 'unknown'}, Python {m['python']}, "
             f"{m['cpus']} CPUs, {m['platform']}.", ""]
    for name, part in report["parts"].items():
        lines += [f"## {name}: {part.get('status', 'ok')}", ""]
        if part.get("status") in ("missing", "skipped"):
            lines += [part.get("reason", ""), ""]
            continue
        if part.get("status") == "error":
            lines += ["```", part.get("traceback") or part.get("error", ""), "```", ""]
            continue
        lines += ["| figure | value |", "|---|---|"]
        lines += [f"| {_cell(k)} | {_cell(v)} |" for k, v in flatten(part)
                  if k not in ("status",)]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--short", action="store_true", help="the quick CI form")
    parser.add_argument("--only", default="", help=f"comma-separated parts: {', '.join(PARTS)}")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    chosen = [p.strip() for p in args.only.split(",") if p.strip()] or list(PARTS)
    unknown = [p for p in chosen if p not in PARTS]
    if unknown:
        parser.error(f"unknown part {', '.join(unknown)}; choose from {', '.join(PARTS)}")

    report = {"form": "short" if args.short else "full", "machine": machine(), "parts": {}}
    for name in chosen:
        print(f"bench: {name}...", file=sys.stderr, flush=True)
        report["parts"][name] = run_part(name, PARTS[name], args.short)
        print(f"bench: {name}: {report['parts'][name]['status']}", file=sys.stderr, flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "report.json").write_text(json.dumps(report, indent=2, default=str))
    text = markdown(report)
    (args.out / "report.md").write_text(text)
    print(text)
    print(f"written to {args.out / 'report.md'} and report.json", file=sys.stderr)
    return 1 if any(p["status"] == "error" for p in report["parts"].values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
