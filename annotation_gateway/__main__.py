"""`python -m annotation_gateway`: the UI and its API on GATEWAY_PORT."""

from __future__ import annotations

from aiohttp import web

from annotation_gateway.config import Config
from annotation_gateway.server import init_app
from hitl.config import load_or_exit
from hitl.logs import setup_logging
from hitl.metrics import start_metrics_server


def main() -> None:
    config = load_or_exit(Config)
    setup_logging("annotation_gateway", config.log_level)
    start_metrics_server(config.metrics_port)
    web.run_app(init_app(config), host=config.host, port=config.port,
                shutdown_timeout=config.grace_s, access_log=None, print=None)


if __name__ == "__main__":
    main()
