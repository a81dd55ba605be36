"""Which network addresses a service may fetch from (the feature service's images, the
trainer's dataset downloads).

Public unicast addresses are allowed. Loopback, private, link-local (cloud metadata
169.254.169.254 among them), multicast, reserved, shared (CGNAT) and unspecified
addresses are refused unless the allowlist names the address, a block holding it, or the
host name being fetched. An IPv6 address that carries an IPv4 address (IPv4-mapped or
-compatible, 6to4, NAT64, Teredo) is judged by the IPv4 address it reaches.

A refusal says only that (`refusal`): never what a name resolved to, which would let a
caller map internal names.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
_HOSTNAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*\.?$")
_LOOKS_NUMERIC = re.compile(r"^[0-9./]+$|:")


def parse_entry(entry: str) -> IPNetwork | str:
    """A CIDR block (a bare address is a /32 or /128) or a lower-case host name."""
    entry = entry.strip().lower()
    if _LOOKS_NUMERIC.search(entry):
        return ipaddress.ip_network(entry.strip("[]"), strict=False)
    if not _HOSTNAME.match(entry):
        raise ValueError(f"{entry!r} is neither a host name, an address nor a CIDR block")
    return entry.rstrip(".")


def is_host_name(host: str) -> bool:
    return bool(_HOSTNAME.match(host.lower()))


def parse_allowlist(raw: str) -> tuple[str, ...]:
    """FEATURE_URL_ALLOWLIST: comma-separated; each entry validated here, at start."""
    entries = tuple(e.strip() for e in raw.split(",") if e.strip())
    for entry in entries:
        parse_entry(entry)
    return entries


# Translators that reach the IPv4 address in an IPv6 address's last 32 bits (RFC 6052's
# well-known prefix and RFC 8215's local-use one), and IPv4-compatible addresses (::/96).
_NAT64 = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))
_COMPATIBLE = ipaddress.IPv6Network("::/96")


def embedded_ipv4(address: IPAddress) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address reaches: ::ffff:127.0.0.1 reaches 127.0.0.1,
    2002:7f00:1:: (6to4) too, and a Teredo address its server and client."""
    if not isinstance(address, ipaddress.IPv6Address):
        return []
    found = [a for a in (address.ipv4_mapped, address.sixtofour) if a is not None]
    if address.teredo is not None:
        found.extend(address.teredo)
    last32 = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if any(address in n for n in _NAT64) or (address in _COMPATIBLE and int(address) > 1):
        found.append(last32)
    return found


def _publicly_routed(address: IPAddress) -> bool:
    return not (address.is_private or address.is_loopback or address.is_link_local
                or address.is_multicast or address.is_reserved or address.is_unspecified
                or not address.is_global)


def is_public(address: IPAddress) -> bool:
    carried = embedded_ipv4(address)
    if carried:
        return all(_publicly_routed(a) for a in carried)
    return _publicly_routed(address)


def refusal(host: str, setting: str) -> str:
    """Why a URL's host may not be fetched, without what it resolved to."""
    return f"forbidden_url: {host!r} is not a public address (unless {setting} allows it)"


@dataclass(frozen=True)
class Allowlist:
    networks: tuple[IPNetwork, ...] = ()
    hosts: frozenset[str] = frozenset()

    @classmethod
    def from_entries(cls, entries: tuple[str, ...]) -> Allowlist:
        parsed = [parse_entry(e) for e in entries]
        return cls(tuple(p for p in parsed if not isinstance(p, str)),
                   frozenset(p for p in parsed if isinstance(p, str)))

    def permits(self, host: str, address: IPAddress) -> bool:
        """May `address`, which `host` resolved to (or is), be connected to?"""
        if is_public(address) or host.lower().rstrip(".") in self.hosts:
            return True
        reached: list[IPAddress] = [*embedded_ipv4(address)] or [address]
        return all(any(a.version == n.version and a in n for n in self.networks)
                   for a in reached)
