"""Where inference runs: the device choice and a thread count that suits a small box."""

from __future__ import annotations

import os


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


def use_cpu_threads() -> int:
    """Caps torch's intra-op threads at the usable cores; more only thrash a 2-core box."""
    import torch

    threads = cpu_threads()
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads


PRECISIONS = ("auto", "float32")


def reduced_dtype(device: str, precision: str = "auto"):  # type: ignore[no-untyped-def]
    """The dtype convolutions run in: float16 on CUDA, bfloat16 on a CPU that computes it
    natively (AVX512-BF16 or AMX; elsewhere it is emulated and slower than float32),
    None for float32. precision="float32" always gives None."""
    import torch

    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}: use {' or '.join(PRECISIONS)}")
    if precision == "float32":
        return None
    if device.startswith("cuda"):
        return torch.float16
    if torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return torch.bfloat16
    return None
