"""Signing in and out, and the name a browser works under (see identity.py)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from annotation_gateway import validation
from annotation_gateway.errors import ApiError
from annotation_gateway.handlers import CONFIG, read_json
from annotation_gateway.identity import SESSION_COOKIE, Identities, Identity, identity_of
from annotation_gateway.ratelimit import LOGINS, client_address

IDENTITIES = web.AppKey("identities", Identities)


def _body(request: web.Request, identity: Identity | None) -> dict[str, Any]:
    return {"annotator": identity.name if identity else None,
            "admin": bool(identity and identity.admin),
            "auth_required": not request.app[IDENTITIES].open}


async def get_session(request: web.Request) -> web.Response:
    return web.json_response(_body(request, identity_of(request)))


async def set_session(request: web.Request) -> web.Response:
    """Chooses a name: only while the gateway is open (loopback, no annotator tokens)."""
    identities = request.app[IDENTITIES]
    identities.require_open()
    identity = identities.chosen(validation.annotator((await read_json(request)).get("annotator")))
    response = web.json_response(_body(request, identity))
    identities.set_cookie(response, identity, request.app[CONFIG].secure_cookies)
    return response


async def login(request: web.Request) -> web.Response:
    """Signs in with a token. Only wrong tokens count against the sign-in limit of the
    client's address, so a guesser behind a shared address (a proxy, a NAT) never locks
    out the annotators behind it: a right token always signs in. Tokens are long random
    secrets (at least 16 characters), so the limit slows guessing rather than prevents it."""
    identities = request.app[IDENTITIES]
    candidate = (await read_json(request)).get("token")
    if not isinstance(candidate, str):
        raise ApiError(400, "invalid_token", "send your token as {\"token\": \"...\"}")
    if identities.open:
        return web.json_response(_body(request, identity_of(request)))
    identity = identities.by_token(candidate)
    if identity is None:
        request.app[LOGINS].hit(client_address(request))  # 429 past the limit
        raise ApiError(401, "wrong_token", "that token is not right")
    response = web.json_response(_body(request, identity))
    identities.set_cookie(response, identity, request.app[CONFIG].secure_cookies)
    return response


async def logout(request: web.Request) -> web.Response:
    response = web.json_response({"ok": True})
    response.del_cookie(SESSION_COOKIE, path="/")
    return response
