"""The gateway's front door, as middlewares: the Host header must name this gateway, a
token never travels in a URL, and every request is tied to the annotator who signed in
(or sent to sign in).

The Host check stops DNS rebinding: a page on another site whose name was made to resolve
to this gateway (or to 127.0.0.1 for `make run`) would otherwise be same-origin with it.
Probes are exempt: the kubelet names the pod's address.
"""

from __future__ import annotations

from urllib.parse import quote

from aiohttp import web
from aiohttp.typedefs import Middleware

from annotation_gateway.config import Config
from annotation_gateway.errors import ApiError
from annotation_gateway.identity import (
    IDENTITY,
    LOOPBACK_NAMES,
    Handler,
    Identities,
    is_loopback,
)
from annotation_gateway.ratelimit import LOGINS, client_address

# Reachable without signing in: probes, the login page and the static assets it needs.
PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/login", "/api/login", "/api/openapi.json",
                          "/api/docs"})
PUBLIC_PREFIXES = ("/static/", "/vendor/")
PROBES = frozenset({"/healthz", "/readyz"})
QUERY_TOKEN_NAMES = frozenset({"token", "access_token", "auth"})


def allowed_hosts(config: Config) -> frozenset[str]:
    names = {h.strip().lower().strip("[]") for h in config.allowed_hosts}
    if is_loopback(config.host):
        names.update(LOOPBACK_NAMES)
    return frozenset(names)


def host_name(header: str) -> str:
    """The name in a Host header, without its port: "[::1]:8080" -> "::1"."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].partition("]")[0]
    return header.rpartition(":")[0] if header.count(":") == 1 else header


def make_host_middleware(config: Config) -> Middleware:
    allowed = allowed_hosts(config)

    @web.middleware
    async def host(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path not in PROBES and host_name(request.host) not in allowed:
            raise ApiError(400, "host_not_allowed",
                           "this gateway does not answer to that host name")
        return await handler(request)
    return host


def _is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


def make_identity_middleware(identities: Identities) -> Middleware:
    @web.middleware
    async def identify(request: web.Request, handler: Handler) -> web.StreamResponse:
        if QUERY_TOKEN_NAMES & set(request.query):
            raise ApiError(400, "token_in_query",
                           "send your token in the Authorization header or sign in; "
                           "tokens in URLs are not accepted")
        identity, unknown_token = identities.of_request(request)
        if unknown_token:
            # Guessing tokens in headers counts like guessing them at the sign-in.
            request.app[LOGINS].hit(client_address(request))
        if identity is not None:
            request[IDENTITY] = identity
        if identity is not None or identities.open or _is_public(request.path):
            return await handler(request)
        if request.path.startswith("/api/"):
            raise ApiError(401, "unauthenticated", "sign in with your annotator token")
        # Back to the page asked for once signed in (a task's link, for one).
        after = "" if request.path == "/" else f"?next={quote(request.path)}"
        raise web.HTTPSeeOther(f"/login{after}")
    return identify
