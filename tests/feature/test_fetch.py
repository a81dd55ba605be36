"""Safe URL fetching against a local server on 127.0.0.1 (never outside addresses)."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from feature_service.fetch import Fetcher, FetchLimits
from feature_service.outcomes import ItemFailure, Kind
from hitl.addresses import Allowlist, parse_allowlist
from tests.feature.conftest import ImageServer

LIMITS = FetchLimits(max_bytes=1 << 20, connect_timeout_s=1.0, total_timeout_s=1.5,
                     max_redirects=3)
LOCAL = Fetcher(Allowlist.from_entries(("127.0.0.1",)), LIMITS)
STRICT = Fetcher(Allowlist(), LIMITS)


async def kind_of(fetcher: Fetcher, url: str) -> Kind:
    with pytest.raises(ItemFailure) as caught:
        await fetcher.fetch(url)
    return caught.value.kind


async def test_an_allowed_host_is_fetched(image_server: ImageServer) -> None:
    body = await LOCAL.fetch(image_server.url("/img/a.png"))
    assert body == image_server.images["a.png"]


@pytest.mark.parametrize("url", [
    "http://10.0.0.1/x.jpg", "http://169.254.169.254/latest/meta-data/",
    "http://[::1]/x.jpg", "http://[::ffff:127.0.0.2]/x.jpg", "http://0.0.0.0/x.jpg",
    "http://224.0.0.1/x.jpg", "http://100.64.0.1/x.jpg", "http://[fe80::1]/x.jpg",
    "file:///etc/passwd", "gopher://127.0.0.1:70/_x", "ftp://example.com/x.jpg",
    "javascript:alert(1)",
])
async def test_forbidden_urls_are_refused_without_connecting(url: str) -> None:
    started = time.perf_counter()
    assert await kind_of(LOCAL, url) == Kind.FORBIDDEN_URL
    assert time.perf_counter() - started < 1.0  # refused before any connect attempt


async def test_loopback_needs_the_allowlist(image_server: ImageServer) -> None:
    assert await kind_of(STRICT, image_server.url("/img/a.png")) == Kind.FORBIDDEN_URL
    # Other spellings of 127.0.0.1 resolve to it and are judged by that address.
    for host in ("2130706433", "0x7f000001", "127.1", "017700000001"):
        url = f"http://{host}:{image_server.port}/img/a.png"
        assert await kind_of(STRICT, url) == Kind.FORBIDDEN_URL, host
    assert image_server.hits == {}


async def test_a_host_name_is_judged_by_every_address_it_resolves_to(
        image_server: ImageServer) -> None:
    url = f"http://localhost:{image_server.port}/img/a.png"
    assert await kind_of(STRICT, url) == Kind.FORBIDDEN_URL
    # The refusal names the host, never what it resolved to (no DNS oracle).
    with pytest.raises(ItemFailure) as caught:
        await STRICT.fetch(url)
    assert "'localhost' is not a public address" in caught.value.message
    assert "127.0.0.1" not in caught.value.message and "::1" not in caught.value.message
    by_name = Fetcher(Allowlist.from_entries(parse_allowlist("localhost")), LIMITS)
    # localhost may also resolve to ::1, where nothing listens: connecting to 127.0.0.1
    # is still enough.
    assert await by_name.fetch(url) == image_server.images["a.png"]


async def test_a_redirect_to_a_forbidden_address_is_refused(image_server: ImageServer) -> None:
    for target in ("http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/",
                   "http://[::1]/", "file:///etc/passwd"):
        url = image_server.url("/redirect?to=" + target)
        assert await kind_of(LOCAL, url) == Kind.FORBIDDEN_URL, target
    assert image_server.hits["/redirect"] == 4


async def test_redirects_are_followed_up_to_the_limit(image_server: ImageServer) -> None:
    final = "/img/a.png"
    assert await LOCAL.fetch(image_server.url("/redirect?to=" + final)) == \
        image_server.images["a.png"]
    url = final
    for _ in range(4):
        url = "/redirect?to=" + url.replace("?", "%3F").replace("=", "%3D")
    assert await kind_of(LOCAL, image_server.url(url)) == Kind.FORBIDDEN_URL


@pytest.mark.parametrize(("path", "kind"), [
    ("/status/404", Kind.NOT_FOUND), ("/status/410", Kind.NOT_FOUND),
    ("/status/500", Kind.UPSTREAM), ("/status/503", Kind.UPSTREAM),
    ("/status/403", Kind.UPSTREAM),
])
async def test_http_errors_map_to_outcomes(image_server: ImageServer, path: str,
                                           kind: Kind) -> None:
    assert await kind_of(LOCAL, image_server.url(path)) == kind


async def test_a_refused_connection_is_a_retryable_upstream_error() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ItemFailure) as caught:
        await LOCAL.fetch(f"http://127.0.0.1:{port}/x.jpg")
    assert caught.value.kind == Kind.UPSTREAM and caught.value.retryable


@pytest.mark.parametrize("path", ["/slow", "/drip"])
async def test_slow_servers_time_out(image_server: ImageServer, path: str) -> None:
    started = time.perf_counter()
    with pytest.raises(ItemFailure) as caught:
        await LOCAL.fetch(image_server.url(path))
    assert caught.value.kind == Kind.TIMEOUT and caught.value.retryable
    assert time.perf_counter() - started < LIMITS.total_timeout_s + 1.0


async def test_an_endless_body_is_cut_off_at_the_byte_limit(image_server: ImageServer) -> None:
    started = time.perf_counter()
    assert await kind_of(LOCAL, image_server.url("/endless")) == Kind.TOO_LARGE
    assert time.perf_counter() - started < LIMITS.total_timeout_s


async def test_a_declared_oversized_body_is_refused_before_reading(
        image_server: ImageServer) -> None:
    image_server.images["big.jpg"] = b"\0" * (LIMITS.max_bytes + 1)
    assert await kind_of(LOCAL, image_server.url("/img/big.jpg")) == Kind.TOO_LARGE


async def test_the_checked_address_is_the_one_connected_to(
        image_server: ImageServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """DNS rebinding: a second answer pointing elsewhere must never be used."""
    loop = asyncio.get_running_loop()
    real = loop.getaddrinfo
    answers: list[str] = []

    async def rebinding(host, port, *args, **kwargs):  # type: ignore[no-untyped-def]
        address = "127.0.0.1" if not answers else "10.0.0.1"
        answers.append(address)
        return await real(address, port, *args, **kwargs)

    monkeypatch.setattr(loop, "getaddrinfo", rebinding)
    fetcher = Fetcher(Allowlist.from_entries(("127.0.0.1",)), LIMITS)
    url = f"http://images.test:{image_server.port}/img/a.png"
    assert await fetcher.fetch(url) == image_server.images["a.png"]
    assert answers == ["127.0.0.1"]


@pytest.mark.parametrize("url", ["http://", "http://exa mple.com/", "x" * 5000, ""])
async def test_malformed_urls_are_invalid_or_forbidden(url: str) -> None:
    assert await kind_of(LOCAL, url) in (Kind.INVALID, Kind.FORBIDDEN_URL)
