"""`python -m trainer_service` (or `hitl-trainer`): the trainer gRPC server."""

from __future__ import annotations

import asyncio
import importlib
import sys
import tempfile
import threading
from pathlib import Path

from threadpoolctl import threadpool_info, threadpool_limits

from hitl.config import ConfigError, load_or_exit, parse_command_line
from hitl.logs import setup_logging
from trainer_service.config import Config
from trainer_service.server import build_service

DESCRIPTION = ("The trainer service: owns the dataset and the labelled set, trains the "
               "classifier as labels arrive and ranks the pool for annotators, over gRPC. "
               "Serves until SIGTERM; every setting comes from the environment.")


def ensure_writable(folder: Path) -> None:
    """Raises OSError unless files can be created in `folder` (made if missing): a
    read-only volume is found here, in one line, not deep in start-up."""
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=folder):
        pass


def warm_imports() -> None:
    """Imports scikit-learn in the background at start: it takes seconds on a busy
    machine, which the first model (or a cold start without a detector class) would
    otherwise wait for."""
    for module in ("sklearn.metrics", "sklearn.linear_model", "sklearn.cluster"):
        importlib.import_module(module)


def limit_blas(threads: int) -> list[int]:
    """Process-wide: the event loop's small products (lease guards, scoring) then never
    queue behind a training thread's in OpenBLAS's one shared pool (measured with
    `python -m bench.floods`: the annotators' next-image p99 under both floods 6.4x their
    p99 alone with the default threads, 2.3x with one). The BLAS libraries' thread counts
    now."""
    threadpool_limits(threads, user_api="blas")
    return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]


def main(argv: list[str] | None = None) -> None:
    parse_command_line(Config, "trainer_service", DESCRIPTION, argv)
    config = load_or_exit(Config)
    setup_logging("trainer", config.log_level)
    try:
        ensure_writable(Path(config.data_dir))
    except OSError as exc:
        print(f"trainer service cannot start: the data folder {config.data_dir} cannot be "
              f"written ({exc.strerror or exc}): set TRAINER_DATA_DIR to a writable folder",
              file=sys.stderr)
        raise SystemExit(1) from None

    limit_blas(config.blas_threads)
    threading.Thread(target=warm_imports, name="warm-imports", daemon=True).start()

    async def serve() -> None:
        try:
            service = build_service(config)
        except ConfigError as exc:  # a token folder or certificate it cannot read
            print(f"trainer service cannot start: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
        await service.run_until_signal()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
