"""`python -m trainer_service`: the trainer gRPC server."""

from __future__ import annotations

import asyncio

from hitl.config import load_or_exit
from hitl.logs import setup_logging
from trainer_service.config import Config
from trainer_service.server import build_service


def main() -> None:
    config = load_or_exit(Config)
    setup_logging("trainer", config.log_level)

    async def serve() -> None:
        await build_service(config).run_until_signal()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
