"""Which network addresses a service may fetch from (the feature service's images, the
trainer's dataset downloads).

Public unicast addresses are allowed. Loopback, private, link-local (cloud metadata
169.254.169.254 among them), multicast, reserved, shared (CGNAT) and unspecified
addresses are refused unless the allowlist names the address, a block holding it, or the
host name being fetched.
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


def _unmapped(address: IPAddress) -> IPAddress:
    # ::ffff:127.0.0.1 reaches 127.0.0.1: judge the IPv4 address it carries.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def is_public(address: IPAddress) -> bool:
    address = _unmapped(address)
    return not (address.is_private or address.is_loopback or address.is_link_local
                or address.is_multicast or address.is_reserved or address.is_unspecified
                or not address.is_global)


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
        address = _unmapped(address)
        return any(address.version == n.version and address in n for n in self.networks)
