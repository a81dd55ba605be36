"""Where inference runs: the device choice and a thread count that suits a small box."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def cpu_threads() -> int:
    """Cores this process may use (its affinity mask, not the host's core count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def resolve_device(device: str) -> str:
    """"auto" means CUDA when a GPU is usable, else the CPU."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise ValueError(f"unknown device {device!r}: use auto, cpu, cuda or cuda:N")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available")
    return device


def reduced_dtype(device: str, precision: str) -> torch.dtype | None:
    """The dtype the convolutions run in (None for float32). Whether a reduced one pays
    on this machine is measured at start (feature_service/calibration.py), not read from
    CPU flags: bfloat16 is emulated, and slower, on CPUs without AVX512-BF16 or AMX."""
    import torch

    dtypes: dict[str, torch.dtype | None] = {
        "float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if precision not in dtypes:
        raise ValueError(f"unknown precision {precision!r} for torch models: use "
                         f"{', '.join(dtypes)}")
    if precision == "float16" and not device.startswith("cuda"):
        raise ValueError("float16 runs on CUDA only; use bfloat16 or float32 on a CPU")
    return dtypes[precision]
