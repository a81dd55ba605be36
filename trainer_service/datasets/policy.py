"""What the trainer may download, and connections that keep to it.

A dataset file is downloaded only from a configured source (the http(s) base URLs of
TRAINER_OPENIMAGES_SOURCE and TRAINER_DOWNLOAD_SOURCES), only from public addresses
unless allowlisted (the feature service's address policy, hitl.addresses), checked again
on every redirect hop, and the connection goes to exactly the addresses checked, so a
second DNS answer cannot swap in a private one. Proxy variables are never read
(http.client knows none), and size and time are capped.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import SplitResult, urlsplit

from hitl.addresses import Allowlist, IPAddress, refusal
from trainer_service.datasets.local import DatasetError


class DownloadRefused(DatasetError):
    """The URL, or an address or redirect on the way, is outside the policy."""


@dataclass(frozen=True)
class DownloadPolicy:
    sources: tuple[str, ...] = ()  # base URLs; nothing is downloaded from elsewhere
    allowlist: Allowlist = field(default_factory=Allowlist)
    max_bytes: int = 16 << 30
    timeout_s: float = 7200.0  # the whole download, redirects and body included
    stall_s: float = 60.0  # connecting, and each read
    max_redirects: int = 5

    def source_refusal(self, url: str) -> str | None:
        """Why `url` may not be downloaded (not under a configured source), or None."""
        target = urlsplit(url)
        for source in self.sources:
            base = urlsplit(source.rstrip("/"))
            same_origin = (base.scheme, base.hostname, _port(base)) == (
                target.scheme, target.hostname, _port(target))
            if same_origin and (target.path == base.path
                                or target.path.startswith(base.path + "/")):
                return None
        return (f"{url} is not under a configured download source (TRAINER_OPENIMAGES_SOURCE "
                "or TRAINER_DOWNLOAD_SOURCES)")


def _port(url: SplitResult) -> int | None:
    return url.port or {"http": 80, "https": 443}.get(url.scheme)


def policy_from(config: Any) -> DownloadPolicy:
    """The policy a trainer Config describes."""
    sources = [s.strip() for s in config.openimages_source.split(",")]
    return DownloadPolicy(
        sources=tuple(s for s in [*sources, *config.download_sources]
                      if s.startswith(("http://", "https://"))),
        allowlist=Allowlist.from_entries(config.download_allowlist),
        max_bytes=config.download_max_bytes, timeout_s=config.download_timeout_s,
        stall_s=config.download_stall_s)


def checked_addresses(host: str, port: int, allowlist: Allowlist) -> list[IPAddress]:
    """Every address `host` resolves to, if the policy permits all of them."""
    try:
        addresses: list[IPAddress] = [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise OSError(f"cannot resolve host {host!r}: {exc}") from None
        addresses = list(dict.fromkeys(
            ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos))
    for address in addresses:
        if not allowlist.permits(host, address):
            raise DownloadRefused(refusal(host, "TRAINER_DOWNLOAD_ALLOWLIST"))
    if not addresses:
        raise OSError(f"host {host!r} has no address")
    return addresses


def _open_socket(addresses: list[IPAddress], port: int, timeout: float | None
                 ) -> socket.socket:
    error: OSError | None = None
    for address in addresses:
        try:
            return socket.create_connection((str(address), port), timeout)
        except OSError as exc:
            error = exc
    raise error or OSError("no address to connect to")


class PinnedHTTP(http.client.HTTPConnection):
    """Connects to the checked addresses only; `timeout` bounds connecting and every
    read (a stalled server)."""

    def __init__(self, host: str, port: int, addresses: list[IPAddress],
                 timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.addresses = addresses

    def connect(self) -> None:
        self.sock = _open_socket(self.addresses, self.port, self.timeout)


class PinnedHTTPS(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, addresses: list[IPAddress],
                 timeout: float) -> None:
        self.tls = ssl.create_default_context()
        super().__init__(host, port, timeout=timeout, context=self.tls)
        self.addresses = addresses

    def connect(self) -> None:
        # The certificate is still checked against the host name, not the address.
        sock = _open_socket(self.addresses, self.port, self.timeout)
        self.sock = self.tls.wrap_socket(sock, server_hostname=self.host)


def connect(url: str, policy: DownloadPolicy) -> PinnedHTTP | PinnedHTTPS:
    """A connection to the checked addresses of `url`'s host."""
    target = urlsplit(url)
    if target.scheme not in ("http", "https") or not target.hostname:
        raise DownloadRefused(f"{url}: only http and https URLs are downloaded")
    port = _port(target) or 0
    addresses = checked_addresses(target.hostname, port, policy.allowlist)
    kind = PinnedHTTPS if target.scheme == "https" else PinnedHTTP
    return kind(target.hostname, port, addresses, policy.stall_s)
