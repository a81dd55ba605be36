"""Who is asking: annotators sign in with their own token, and the name their labels
carry is the one that token belongs to.

A browser signs in once (POST /api/login) and then carries a session cookie: the name,
signed and timestamped with GATEWAY_SESSION_SECRET (itsdangerous), HttpOnly, SameSite
Strict, expiring after GATEWAY_SESSION_TTL_S. The cookie also carries a fingerprint of
the annotator's token, so removing or changing a token ends that annotator's sessions.
API clients may send `Authorization: Bearer <their token>` instead. Tokens are kept as
SHA-256 digests and compared in constant time (hitl.auth).

With no annotator tokens configured the gateway is open (loopback only, the local demo):
anyone chooses a name with POST /api/session and has every role.

Routes that need a role say so with `@requires_admin` (or `requires(ADMIN)`).
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from itsdangerous import BadSignature, URLSafeTimedSerializer

from annotation_gateway.config import Config
from annotation_gateway.errors import ApiError
from hitl.auth import Callers, bearer_token, read_token_dir
from hitl.config import ConfigError

log = logging.getLogger(__name__)

ADMIN = "admin"
SESSION_COOKIE = "hitl_session"
MIN_SECRET_CHARS = 32
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
_SALT = "hitl-gateway-session-v1"


@dataclass(frozen=True)
class Identity:
    name: str
    roles: frozenset[str]

    @property
    def admin(self) -> bool:
        return ADMIN in self.roles


IDENTITY = web.RequestKey("identity", Identity)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def is_loopback(host: str) -> bool:
    host = host.strip().strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def startup_refusal(config: Config, annotators: Callers) -> str | None:
    """Why this configuration must not serve, in one line, or None."""
    unknown = set(config.admins) - annotators.names
    if annotators.enabled and unknown:
        return (f"GATEWAY_ADMINS names {', '.join(sorted(unknown))}, who has no token in "
                "GATEWAY_ANNOTATOR_TOKENS or GATEWAY_ANNOTATOR_TOKENS_DIR")
    if is_loopback(config.host):
        return None
    where = f"GATEWAY_HOST={config.host} is not a loopback address"
    if not annotators.enabled:
        return (f"{where}, so annotators must sign in: set GATEWAY_ANNOTATOR_TOKENS or "
                "GATEWAY_ANNOTATOR_TOKENS_DIR (name=token), or bind GATEWAY_HOST=127.0.0.1")
    if not config.session_secret:
        return (f"{where}: set GATEWAY_SESSION_SECRET (at least {MIN_SECRET_CHARS} random "
                "characters, the same on every replica) to sign the sessions")
    if not config.allowed_hosts:
        return (f"{where}: set GATEWAY_ALLOWED_HOSTS to the host names the page is reached "
                "by (e.g. annotate.example.org)")
    return None


def _fingerprint(digest: bytes) -> str:
    # Ties a session to the token it was opened with, without carrying the digest itself.
    return hashlib.sha256(b"hitl-session-token:" + digest).hexdigest()[:16]


class Identities:
    def __init__(self, config: Config) -> None:
        pairs = list(config.annotator_tokens)
        if config.annotator_tokens_dir:
            pairs.extend(read_token_dir(config.annotator_tokens_dir))
        self.annotators = Callers.from_pairs(pairs)
        refusal = startup_refusal(config, self.annotators)
        if refusal:
            raise ConfigError(refusal)
        keys = [k.strip() for k in config.session_secret.split(",") if k.strip()]
        if any(len(k) < MIN_SECRET_CHARS for k in keys):
            raise ConfigError(f"GATEWAY_SESSION_SECRET: each key must be at least "
                              f"{MIN_SECRET_CHARS} characters")
        if not keys:
            # Loopback only (checked above): sessions end when the gateway restarts.
            keys = [secrets.token_hex(32)]
        self.serializer = URLSafeTimedSerializer(keys, salt=_SALT)
        self.ttl_s = config.session_ttl_s
        self.admins = frozenset(config.admins)
        self._fingerprints = {name: _fingerprint(d) for name, d in self.annotators.digests}
        if self.open:
            log.warning("no annotator tokens configured: anyone on this machine chooses a "
                        "name and has every role (local use only)")
        else:
            log.info("annotators sign in", extra={"annotators": len(self._fingerprints),
                                                  "admins": sorted(self.admins)})

    @property
    def open(self) -> bool:
        """No tokens: names are chosen, not proven (allowed on loopback only)."""
        return not self.annotators.enabled

    def _identity(self, name: str) -> Identity:
        admin = self.open or name in self.admins
        return Identity(name, frozenset({ADMIN}) if admin else frozenset())

    def by_token(self, token: str | None) -> Identity | None:
        name = self.annotators.identify(token)
        return self._identity(name) if name is not None else None

    def require_open(self) -> None:
        """Names are chosen on the page only while the gateway is open."""
        if not self.open:
            raise ApiError(403, "name_from_login", "your name is the one you signed in as; "
                                                   "sign out and in to change it")

    def chosen(self, name: str) -> Identity:
        self.require_open()
        return self._identity(name)

    def cookie_value(self, identity: Identity) -> str:
        return self.serializer.dumps({"n": identity.name,
                                      "k": self._fingerprints.get(identity.name, "")})

    def from_cookie(self, value: str) -> Identity | None:
        try:
            data: Any = self.serializer.loads(value, max_age=int(self.ttl_s))
        except BadSignature:  # also an expired one (SignatureExpired)
            return None
        if not isinstance(data, dict) or not isinstance(data.get("n"), str):
            return None
        name = data["n"]
        if not self.open and (name not in self._fingerprints
                              or data.get("k") != self._fingerprints[name]):
            return None  # the token was removed or changed since
        return self._identity(name)

    def set_cookie(self, response: web.StreamResponse, identity: Identity,
                   secure: bool) -> None:
        response.set_cookie(SESSION_COOKIE, self.cookie_value(identity),
                            max_age=int(self.ttl_s), path="/", httponly=True,
                            samesite="Strict", secure=secure)

    def of_request(self, request: web.Request) -> tuple[Identity | None, bool]:
        """(who is asking, whether an unknown token was presented)."""
        token = bearer_token([(k, v) for k, v in request.headers.items()])
        if token is not None:
            identity = self.by_token(token)
            return identity, identity is None and not self.open
        cookie = request.cookies.get(SESSION_COOKIE)
        return (self.from_cookie(cookie) if cookie else None), False


def identity_of(request: web.Request) -> Identity | None:
    return request.get(IDENTITY)


def annotator_of(request: web.Request) -> str:
    """The signed-in annotator's name: the only name a request may act as."""
    identity = identity_of(request)
    if identity is None:
        raise ApiError(409, "no_annotator", "choose an annotator name first (POST /api/session)")
    return identity.name


def requires(role: str) -> Callable[[Handler], Handler]:
    """Decorates a handler that only annotators with `role` may call (403 otherwise)."""
    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def checked(request: web.Request) -> web.StreamResponse:
            identity = identity_of(request)
            if identity is None:
                raise ApiError(401, "unauthenticated", "sign in first")
            if role not in identity.roles:
                raise ApiError(403, f"{role}_only", f"this needs the {role} role")
            return await handler(request)
        return checked
    return decorate


requires_admin = requires(ADMIN)


def status_for(status: dict[str, Any] | None, identity: Identity | None
               ) -> dict[str, Any] | None:
    """The status as `identity` may see it: their own agreement with the known answers,
    and everyone's for admins."""
    if status is None or identity is None or identity.admin:
        return status
    mine = [a for a in status.get("annotators", ()) if a.get("annotator") == identity.name]
    return {**status, "annotators": mine}
