"""Cross-site request protection and the response security headers (who is asking is
`identity.py`'s, the front door `access.py`'s).

State-changing requests must come from the gateway's own origin and carry the
X-Requested-With header, which a cross-site form cannot set without a CORS preflight
that the gateway never grants.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.typedefs import Middleware

from annotation_gateway.errors import ApiError

CSRF_HEADER = "X-Requested-With"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

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

SERVER = "hitl-gateway"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _origin_allowed(request: web.Request, allowed: tuple[str, ...]) -> bool:
    origin = request.headers.get("Origin")
    if origin is None:
        # Browsers send Origin on every cross-site POST/DELETE; where it is missing,
        # Fetch Metadata (when present) still tells a cross-site request apart.
        return request.headers.get("Sec-Fetch-Site", "same-origin") in ("same-origin", "none")
    if origin.rstrip("/") in allowed:
        return True
    return urlsplit(origin).netloc == request.host


def make_csrf_middleware(allowed_origins: tuple[str, ...]) -> Middleware:
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
    # Instead of aiohttp's default, which names the Python and aiohttp versions.
    response.headers["Server"] = SERVER
    if request.path.startswith("/api/") and "Cache-Control" not in response.headers:
        response.headers["Cache-Control"] = "no-store"
