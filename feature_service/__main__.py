"""`python -m feature_service` (or `hitl-feature`): serve until SIGTERM."""

from __future__ import annotations

import asyncio
import os
import sys

# OpenMP threads that spin while waiting collapse PyTorch's CPU speed when other processes
# share the cores (measured: 5-7x slower under load). Must be set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from collections.abc import Callable

from feature_service.cache import CacheUnavailable
from feature_service.config import Config
from feature_service.extractors.base import MissingWeightsError
from feature_service.jobs import Builder
from hitl.config import ConfigError, load_or_exit, parse_command_line
from hitl.logs import setup_logging

DESCRIPTION = ("The feature service: images (bytes or URLs) to feature vectors over gRPC, "
               "batched across callers and cached in LMDB. Serves until SIGTERM; every "
               "setting comes from the environment.")


def main(make_builder: Callable[[Config], Builder] | None = None,
         argv: list[str] | None = None) -> None:
    """Serves the configured extractor; `make_builder` builds another in the workers (the
    benchmark's random-weight service, bench/untrained_feature_service.py)."""
    parse_command_line(Config, "feature_service", DESCRIPTION, argv)
    config = load_or_exit(Config)
    setup_logging("feature", config.log_level)
    from feature_service.startup import configured_builder
    try:
        builder = (make_builder or configured_builder)(config)
    except (MissingWeightsError, ValueError) as exc:
        # One line: the missing file and the command that fetches it, or the bad device.
        print(f"feature service cannot start: {exc}", file=sys.stderr)
        raise SystemExit(1) from None

    async def serve() -> None:
        from feature_service.server import build_service
        try:
            service = build_service(config, builder=builder)
        except (CacheUnavailable, ConfigError) as exc:
            print(f"feature service cannot start: {exc}", file=sys.stderr)
            raise SystemExit(1) from None
        await service.run_until_signal()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
