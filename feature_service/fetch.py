"""Fetching images by URL on behalf of callers, which makes this a security boundary.

Only http and https. Every address a host resolves to is checked against the address
policy before connecting, and the connection goes to exactly those checked addresses (a
pinned resolver), so a second DNS answer cannot swap in a private address. Redirects are
followed by hand so that every hop is checked the same way. Time is bounded per connect
and per fetch, and the body is read in chunks that stop at the byte limit.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver
from yarl import URL

from feature_service.outcomes import ItemFailure, Kind
from hitl.addresses import Allowlist, IPAddress, is_host_name, refusal

REDIRECTS = frozenset({301, 302, 303, 307, 308})
MAX_URL_CHARS = 4096
_CHUNK = 64 << 10


@dataclass(frozen=True)
class FetchLimits:
    max_bytes: int = 20 << 20
    connect_timeout_s: float = 3.0
    # One deadline for the whole fetch, redirects and body included, so a server that
    # drips a byte at a time cannot hold a worker forever.
    total_timeout_s: float = 10.0
    max_redirects: int = 3
    max_concurrent: int = 32


class _PinnedResolver(AbstractResolver):
    """Answers only with addresses the policy already checked for this fetch."""

    def __init__(self) -> None:
        self.pins: dict[str, list[IPAddress]] = {}

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[Any]:
        addresses = self.pins.get(host)
        if not addresses:
            raise OSError(f"{host} was not checked before connecting")
        return [{"hostname": host, "host": str(a), "port": port,
                 "family": socket.AF_INET6 if a.version == 6 else socket.AF_INET,
                 "proto": 0, "flags": socket.AI_NUMERICHOST} for a in addresses]

    async def close(self) -> None:
        pass


class Fetcher:
    def __init__(self, allowlist: Allowlist, limits: FetchLimits) -> None:
        self.allowlist, self.limits = allowlist, limits
        self._slots = asyncio.Semaphore(limits.max_concurrent)

    async def fetch(self, url: str) -> bytes:
        """The body of `url`, or ItemFailure saying why not."""
        async with self._slots:
            return await self._fetch_with_limits(url)

    async def _fetch_with_limits(self, url: str) -> bytes:
        try:
            async with asyncio.timeout(self.limits.total_timeout_s):
                return await self._fetch(url)
        except TimeoutError:
            raise ItemFailure(Kind.TIMEOUT,
                              f"fetch took longer than {self.limits.total_timeout_s:g}s") from None
        except aiohttp.ClientError as exc:
            raise ItemFailure(Kind.UPSTREAM, f"fetch failed: {type(exc).__name__}") from None

    async def _fetch(self, url: str) -> bytes:
        resolver = _PinnedResolver()
        connector = aiohttp.TCPConnector(resolver=resolver, use_dns_cache=False,
                                         force_close=True)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.limits.connect_timeout_s)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout,
                                         trust_env=False) as session:
            target = parse_url(url)
            for _hop in range(self.limits.max_redirects + 1):
                host = target.raw_host or ""
                resolver.pins[host] = await self.checked_addresses(host, target.port or 0)
                async with session.get(target, allow_redirects=False) as response:
                    if response.status in REDIRECTS:
                        target = _redirect_target(target, response)
                        continue
                    _check_status(response.status)
                    return await self._read_body(response)
        raise ItemFailure(Kind.FORBIDDEN_URL,
                          f"more than {self.limits.max_redirects} redirects")

    async def checked_addresses(self, host: str, port: int) -> list[IPAddress]:
        """Every address `host` resolves to, if the policy permits all of them."""
        try:
            addresses: list[IPAddress] = [ipaddress.ip_address(host)]
        except ValueError:
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(
                    host, port, type=socket.SOCK_STREAM)
            except socket.gaierror:
                raise ItemFailure(Kind.UPSTREAM, f"cannot resolve host {host!r}") from None
            # Drop an IPv6 zone ("fe80::1%eth0"); the address itself is what is judged.
            addresses = list(dict.fromkeys(
                ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos))
        for address in addresses:
            if not self.allowlist.permits(host, address):
                # Never what it resolved to: the message would answer DNS questions
                # about the network the service sits in.
                raise ItemFailure(Kind.FORBIDDEN_URL, refusal(host, "FEATURE_URL_ALLOWLIST"))
        if not addresses:
            raise ItemFailure(Kind.UPSTREAM, f"host {host!r} has no address")
        return addresses

    async def _read_body(self, response: aiohttp.ClientResponse) -> bytes:
        limit = self.limits.max_bytes
        if response.content_length is not None and response.content_length > limit:
            raise ItemFailure(Kind.TOO_LARGE,
                              f"body of {response.content_length} bytes exceeds {limit}")
        body = bytearray()
        async for chunk in response.content.iter_chunked(_CHUNK):
            if len(body) + len(chunk) > limit:
                raise ItemFailure(Kind.TOO_LARGE, f"body exceeds {limit} bytes")
            body += chunk
        return bytes(body)


def parse_url(url: str) -> URL:
    if len(url) > MAX_URL_CHARS:
        raise ItemFailure(Kind.INVALID, f"URL longer than {MAX_URL_CHARS} characters")
    try:
        target = URL(url)
    except (ValueError, TypeError):
        raise ItemFailure(Kind.INVALID, "malformed URL") from None
    return _checked_scheme(target)


def _checked_scheme(target: URL) -> URL:
    if target.scheme not in ("http", "https"):
        raise ItemFailure(Kind.FORBIDDEN_URL,
                          f"scheme {target.scheme or '(none)'!r} is not http or https")
    host = target.raw_host
    if not host:
        raise ItemFailure(Kind.INVALID, "URL has no host")
    if not is_host_name(host):
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ItemFailure(Kind.INVALID, f"malformed host {host!r}") from None
    return target


def _redirect_target(current: URL, response: aiohttp.ClientResponse) -> URL:
    location = response.headers.get("Location")
    if not location:
        raise ItemFailure(Kind.UPSTREAM, f"redirect {response.status} without Location")
    try:
        return _checked_scheme(current.join(URL(location)))
    except ValueError:
        raise ItemFailure(Kind.UPSTREAM, "redirect to a malformed URL") from None


def _check_status(status: int) -> None:
    if status in (404, 410):
        raise ItemFailure(Kind.NOT_FOUND, f"HTTP {status}")
    if not 200 <= status < 300:
        raise ItemFailure(Kind.UPSTREAM, f"HTTP {status}")
