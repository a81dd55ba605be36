"""What the trainer's entry point sets for the whole process before it serves."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.support import ROOT


def _blas_threads(code: str) -> list[int]:
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True, timeout=120).stdout
    return [int(n) for n in out.split()]


def test_the_trainer_runs_blas_on_the_threads_it_is_given() -> None:
    # A fresh interpreter each: the limit is process-wide, and the BLAS pool starts at
    # the machine's cores.
    before = _blas_threads("from threadpoolctl import threadpool_info; import numpy; "
                           "print(*[p['num_threads'] for p in threadpool_info() "
                           "if p['user_api'] == 'blas'])")
    after = _blas_threads("import numpy; from trainer_service.__main__ import limit_blas; "
                          "print(*limit_blas(1))")
    assert after and set(after) == {1}
    assert len(before) == len(after)
    if (os.cpu_count() or 1) > 1:
        assert max(before) > 1  # so the limit changed something
