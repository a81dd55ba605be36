"""Access token, cross-site request protection and the response security headers.

A browser proves it knows the token once (POST /api/login) and then carries an HttpOnly,
SameSite=Strict cookie derived from it; API clients may send `Authorization: Bearer`.
A token in the query string is refused: it would end up in logs and browser history.
State-changing requests must come from the gateway's own origin and carry the
X-Requested-With header, which a cross-site form cannot set without a CORS preflight
that the gateway never grants.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from aiohttp import web

from annotation_gateway.errors import ApiError

AUTH_COOKIE = "hitl_auth"
ANNOTATOR_COOKIE = "hitl_annotator"
CSRF_HEADER = "X-Requested-With"
COOKIE_MAX_AGE_S = 30 * 24 * 3600
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Reachable without the token: probes, the login page and the static assets it needs.
PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/login", "/api/login", "/api/openapi.json"})
PUBLIC_PREFIXES = ("/static/", "/vendor/")
QUERY_TOKEN_NAMES = frozenset({"token", "access_token", "auth"})

CONTENT_SECURITY_POLICY = "; ".join((
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "connect-src 'self'",
    # Remote dataset items are shown straight from their own http(s) URLs.
    "img-src 'self' https: http: data: blob:",
    "font-src 'self'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
))
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), interest-cohort=()",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def session_value(token: str) -> str:
    """The cookie value for `token`: the same on every replica, and not the token itself."""
    return hmac.new(token.encode(), b"hitl-gateway-session-v1", hashlib.sha256).hexdigest()


def token_matches(token: str, candidate: str) -> bool:
    return hmac.compare_digest(token.encode(), candidate.encode())


def is_authenticated(request: web.Request, token: str) -> bool:
    if not token:
        return True
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer ") and token_matches(token, header[7:].strip()):
        return True
    cookie = request.cookies.get(AUTH_COOKIE, "")
    return bool(cookie) and hmac.compare_digest(cookie, session_value(token))


def _is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


def make_auth_middleware(token: str) -> Callable:
    @web.middleware
    async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        if QUERY_TOKEN_NAMES & set(request.query):
            raise ApiError(400, "token_in_query",
                           "send the access token in the Authorization header or log in; "
                           "tokens in URLs are not accepted")
        if _is_public(request.path) or is_authenticated(request, token):
            return await handler(request)
        if request.path.startswith("/api/"):
            raise ApiError(401, "unauthenticated", "an access token is required")
        raise web.HTTPSeeOther("/login")
    return auth


def _origin_allowed(request: web.Request, allowed: tuple[str, ...]) -> bool:
    origin = request.headers.get("Origin")
    if origin is None:
        # Browsers send Origin on every cross-site POST/DELETE; where it is missing,
        # Fetch Metadata (when present) still tells a cross-site request apart.
        return request.headers.get("Sec-Fetch-Site", "same-origin") in ("same-origin", "none")
    if origin.rstrip("/") in allowed:
        return True
    return urlsplit(origin).netloc == request.host


def make_csrf_middleware(allowed_origins: tuple[str, ...]) -> Callable:
    allowed = tuple(o.rstrip("/") for o in allowed_origins)

    @web.middleware
    async def csrf(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method not in SAFE_METHODS:
            if not _origin_allowed(request, allowed):
                raise ApiError(403, "cross_site_request", "cross-site requests are refused")
            if not request.headers.get(CSRF_HEADER):
                raise ApiError(403, "missing_csrf_header",
                               f"state-changing requests need the {CSRF_HEADER} header")
        return await handler(request)
    return csrf


async def add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if request.path.startswith("/api/") and "Cache-Control" not in response.headers:
        response.headers["Cache-Control"] = "no-store"


def set_cookie(response: web.StreamResponse, name: str, value: str, secure: bool,
               http_only: bool = True) -> None:
    response.set_cookie(name, value, max_age=COOKIE_MAX_AGE_S, path="/", httponly=http_only,
                        samesite="Strict", secure=secure)
