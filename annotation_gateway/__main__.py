"""`python -m annotation_gateway` (or `hitl-gateway`): the UI and its API on GATEWAY_PORT."""

from __future__ import annotations

import sys

from aiohttp import web

from annotation_gateway.config import Config
from annotation_gateway.server import init_app
from hitl.config import ConfigError, load_or_exit, parse_command_line
from hitl.logs import setup_logging
from hitl.metrics import start_metrics_server

DESCRIPTION = ("The annotation gateway: the browser UI, its JSON API and live updates over "
               "HTTP, in front of the trainer and feature services. Serves until SIGTERM; "
               "every setting comes from the environment.")


def main(argv: list[str] | None = None) -> None:
    parse_command_line(Config, "annotation_gateway", DESCRIPTION, argv)
    config = load_or_exit(Config)
    setup_logging("annotation_gateway", config.log_level)
    try:
        app = init_app(config)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    start_metrics_server(config.metrics_port, config.metrics_host)
    web.run_app(app, host=config.host, port=config.port,
                shutdown_timeout=config.grace_s, access_log=None, print=None)


if __name__ == "__main__":
    main()
