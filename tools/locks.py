"""The CPU variants of the torch locks, derived by `make lock` (`python -m tools.locks`).

requirements/feature.txt locks PyPI's torch, whose Linux wheels carry CUDA (the trainer
needs no torch). The CPU-only feature image takes torch from PyTorch's CPU index instead,
pinned to the same version; that index cannot be reached where the locks are compiled,
so its wheels have no hashes here. `<set>-cpu.txt` is `<set>.txt` without the CUDA stack
(torch, torchvision, triton, nvidia-*, cuda-*): everything else keeps its hashes.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REQUIREMENTS = ROOT / "requirements"
TORCH_SETS = ("feature",)
CUDA_STACK = re.compile(r"^(torch|torchvision|triton|nvidia-[\w-]+|cuda-[\w-]+)==")


def blocks(lock: str) -> list[str]:
    """The lock's text cut into its header and one block per pinned requirement (the pin
    line, its hash lines and its `# via` comments)."""
    out: list[str] = []
    for line in lock.splitlines(keepends=True):
        if line[:1].isalnum() or not out:
            out.append(line)
        else:
            out[-1] += line
    return out


def pins(lock: str) -> dict[str, str]:
    """Requirement name (normalised) -> pinned version."""
    found = {}
    for block in blocks(lock):
        match = re.match(r"^([A-Za-z0-9][\w.-]*)==([^\s;\\]+)", block)
        if match:
            found[re.sub(r"[-_.]+", "-", match.group(1)).lower()] = match.group(2)
    return found


def without_cuda(lock: str, source: str) -> str:
    kept = [b for b in blocks(lock) if not CUDA_STACK.match(b)]
    note = (f"# Derived from {source} by `make lock` (tools/locks.py): the CUDA stack is\n"
            "# left out; torch comes from TORCH_INDEX at the version that file pins.\n")
    return note + "".join(kept)


def derived() -> dict[Path, str]:
    """Every derived lock, by path, as it should read."""
    return {REQUIREMENTS / f"{name}-cpu.txt":
            without_cuda((REQUIREMENTS / f"{name}.txt").read_text(),
                         f"requirements/{name}.txt")
            for name in TORCH_SETS}


def main() -> int:
    for path, text in derived().items():
        path.write_text(text)
        print(f"wrote {path.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
