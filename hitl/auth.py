"""Who is calling: per-caller tokens, sent as `authorization: Bearer <token>` metadata.

Each service knows its callers by name and token, from a setting (`name=token` pairs) or
a folder with one file per caller (a mounted Kubernetes Secret). A token may be given as
`sha256:<hex>` of itself, so that a service need not hold the token at all; either way
only SHA-256 digests are kept, and a presented token is compared with every known digest
in constant time. With no callers configured authentication is off (local development):
every call is accepted as the caller "anonymous".
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from hitl.config import ConfigError

AUTHORIZATION_KEY = "authorization"
ANONYMOUS = "anonymous"  # every caller while authentication is off
UNAUTHENTICATED = "unauthenticated"  # the metrics label of refused calls
MIN_TOKEN_CHARS = 16
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
_DIGEST = re.compile(r"^sha256:([0-9a-f]{64})$")


def _checked(name: str, value: str, where: str) -> tuple[str, str]:
    if not _NAME.match(name):
        raise ValueError(f"{where}: caller name {name!r} must be lower-case letters, digits, "
                         "'.', '_' or '-' (at most 63)")
    if not _DIGEST.match(value) and len(value) < MIN_TOKEN_CHARS:
        raise ValueError(f"{where}: the token of {name!r} must be at least {MIN_TOKEN_CHARS} "
                         "characters, or sha256:<64 hex digits> of the token")
    return name, value


def parse_tokens(raw: str) -> tuple[tuple[str, str], ...]:
    """`name=token,name=sha256:<hex>` -> ((name, token or digest), ...), validated."""
    pairs = []
    for chunk in raw.split(","):
        if not chunk.strip():
            continue
        name, sep, value = chunk.strip().partition("=")
        if not sep:
            raise ValueError("expected name=token pairs")
        pairs.append(_checked(name.strip(), value.strip(), "caller tokens"))
    return tuple(pairs)


def read_token_dir(folder: str | Path) -> tuple[tuple[str, str], ...]:
    """One file per caller: its name is the caller, its content the token (or digest).
    Dot-files are skipped: Kubernetes keeps its own bookkeeping in them."""
    path = Path(folder)
    if not path.is_dir():
        raise ConfigError(f"the caller token folder {path} does not exist")
    pairs = []
    for entry in sorted(path.iterdir()):
        if entry.name.startswith(".") or not entry.is_file():
            continue
        try:
            pairs.append(_checked(entry.name, entry.read_text().strip(), str(entry)))
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    return tuple(pairs)


def bearer_token(metadata: Iterable[tuple[str, str | bytes]] | None) -> str | None:
    for key, value in metadata or ():
        if key.lower() == AUTHORIZATION_KEY and isinstance(value, str):
            scheme, _, token = value.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    return None


@dataclass(frozen=True)
class Callers:
    """The callers a service accepts: (name, SHA-256 digest of the token)."""

    digests: tuple[tuple[str, bytes], ...] = ()

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[str, str]]) -> Callers:
        digests: dict[str, bytes] = {}
        for name, value in pairs:
            if name in digests:
                raise ConfigError(f"caller {name!r} is configured twice")
            match = _DIGEST.match(value)
            digests[name] = (bytes.fromhex(match.group(1)) if match
                             else hashlib.sha256(value.encode()).digest())
        return cls(tuple(digests.items()))

    @property
    def enabled(self) -> bool:
        return bool(self.digests)

    @property
    def names(self) -> frozenset[str]:
        return frozenset(name for name, _ in self.digests)

    def identify(self, token: str | None) -> str | None:
        """The caller whose token this is, or None. Every known digest is compared, in
        constant time, so the time taken says nothing about which one (if any) matched."""
        if token is None:
            return None
        presented = hashlib.sha256(token.encode()).digest()
        found = None
        for name, digest in self.digests:
            if hmac.compare_digest(presented, digest):
                found = name
        return found


@dataclass(frozen=True)
class Refusal:
    code: grpc.StatusCode
    message: str


@dataclass(frozen=True)
class Access:
    """Who may call what. Health checking is always open; with callers configured every
    other method needs a known token, and a method listed in `restricted` answers only
    the callers named there."""

    callers: Callers = Callers()
    restricted: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def check(self, method: str, metadata: Iterable[tuple[str, str | bytes]] | None
              ) -> tuple[str, Refusal | None]:
        """(caller, None) when the call may go ahead, else (label, why not)."""
        if not self.callers.enabled:
            return ANONYMOUS, None
        name = self.callers.identify(bearer_token(metadata))
        if name is None:
            return UNAUTHENTICATED, Refusal(
                grpc.StatusCode.UNAUTHENTICATED, "a known caller token is required "
                "(metadata 'authorization: Bearer <token>')")
        allowed = self.restricted.get(method)
        if allowed is not None and name not in allowed:
            return name, Refusal(grpc.StatusCode.PERMISSION_DENIED,
                                 f"caller {name!r} may not call {method}")
        return name, None
