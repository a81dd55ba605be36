"""Auth against the gateway process with a token configured: every route of the OpenAPI
document refuses a caller without the token, a token in the query string is never
accepted, cross-site state changes are refused, and every response carries the
security headers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

from tests.hostile.conftest import TOKEN
from tests.reliability import report
from tests.reliability.stack import CSRF

OPENAPI = Path(__file__).resolve().parents[2] / "annotation_gateway" / "openapi.json"
PUBLIC = {("/api/login", "post"), ("/healthz", "get"), ("/readyz", "get")}
SECURITY_HEADERS = ("Content-Security-Policy", "X-Content-Type-Options", "X-Frame-Options",
                    "Referrer-Policy")


def routes() -> list[tuple[str, str]]:
    spec = json.loads(OPENAPI.read_text())
    return [(path, method) for path, ops in spec["paths"].items() for method in ops]


def concrete(path: str) -> str:
    return path.replace("{item_id}", "some-item").replace("{annotation_id}",
                                                          "a" * 32).replace("{version}", "v0001")


def call(base: str, method: str, path: str, **kwargs) -> requests.Response:  # type: ignore[no-untyped-def]
    headers = {**CSRF, "Origin": base, **kwargs.pop("headers", {})}
    body = {"json": {}} if method in ("post", "delete") else {}
    return requests.request(method, base + path, headers=headers, timeout=10,
                            allow_redirects=False, **body, **kwargs)


def assert_security_headers(response: requests.Response) -> None:
    missing = [h for h in SECURITY_HEADERS if h not in response.headers]
    assert not missing, f"{response.request.method} {response.url}: missing {missing}"
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"


@pytest.fixture(scope="module")
def base(guarded_gateway) -> str:  # type: ignore[no-untyped-def]
    return f"http://127.0.0.1:{guarded_gateway.port}"


def test_every_route_without_the_token_is_refused(base: str):
    checked = 0
    for path, method in routes():
        response = call(base, method, concrete(path))
        assert_security_headers(response)
        if (path, method) in PUBLIC:
            assert response.status_code != 401, (method, path)
            continue
        assert response.status_code == 401, (method, path, response.status_code,
                                             response.text[:200])
        assert response.json()["error"]["code"] == "unauthenticated"
        checked += 1
    report.inputs("auth: API route without the token", "401", checked)
    page = requests.get(base + "/", timeout=10, allow_redirects=False)
    assert page.status_code in (302, 303) and page.headers["Location"] == "/login"
    assert_security_headers(page)
    assert checked >= 10


def test_a_token_in_the_query_string_is_never_accepted(base: str):
    refused = 0
    for path, method in routes():
        for name in ("token", "access_token"):
            response = call(base, method, concrete(path), params={name: TOKEN})
            assert response.status_code in (400, 401), (method, path, name)
            assert response.status_code != 200
            refused += 1
        # Not even beside a valid bearer header: the URL must not carry secrets.
        response = call(base, method, concrete(path), params={"token": TOKEN},
                        headers={"Authorization": f"Bearer {TOKEN}"})
        assert response.status_code == 400 and "token" in response.text, (method, path)
        refused += 1
    report.inputs("auth: token in the query string", "refused (400/401)", refused)


def test_wrong_tokens_are_refused_and_the_right_one_works(base: str):
    for wrong in ("", "x", TOKEN[:-1], TOKEN + "x", TOKEN.upper(), f"{TOKEN}\x00"):
        response = requests.get(base + "/api/status", timeout=10,
                                headers={"Authorization": f"Bearer {wrong}"})
        # A NUL byte makes the header itself malformed: refused before auth (400).
        assert response.status_code == (400 if "\x00" in wrong else 401), repr(wrong)
    report.inputs("auth: wrong bearer token", "401", 6)
    ok = requests.get(base + "/api/status", timeout=10,
                      headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200
    assert_security_headers(ok)
    login = requests.post(base + "/api/login", json={"token": TOKEN}, timeout=10,
                          headers={**CSRF, "Origin": base})
    assert login.status_code == 200
    cookie = login.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and TOKEN not in cookie


@pytest.mark.parametrize("headers,why", [
    ({"Origin": "https://evil.example"}, "foreign Origin"),
    ({"Origin": "null"}, "opaque Origin"),
    ({"Sec-Fetch-Site": "cross-site"}, "cross-site fetch metadata"),
    ({"X-Requested-With": ""}, "no X-Requested-With"),
])
def test_cross_site_state_changes_are_refused(base: str, headers: dict, why: str):
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    refused = 0
    for path, method in routes():
        if method not in ("post", "delete"):
            continue
        sent = {**bearer, "X-Requested-With": "x", **headers}
        if "Origin" not in headers:
            sent["Origin"] = ""
        response = requests.request(
            method, base + concrete(path), json={}, timeout=10,
            headers={k: v for k, v in sent.items() if v != ""})
        assert response.status_code == 403, (why, method, path, response.status_code)
        assert_security_headers(response)
        refused += 1
    report.inputs(f"cross-site POST/DELETE: {why}", "403", refused)


def test_security_headers_on_pages_assets_and_errors(base: str):
    auth = {"Authorization": f"Bearer {TOKEN}"}
    for path, headers in [("/login", {}), ("/", auth), ("/static/app.css", {}),
                          ("/api/openapi.json", {}), ("/api/no-such-route", auth),
                          ("/healthz", {}), ("/api/items/x/image", auth)]:
        response = requests.get(base + path, headers=headers, timeout=10,
                                allow_redirects=False)
        assert_security_headers(response)
        if path.startswith("/api/"):
            assert "no-store" in response.headers.get("Cache-Control", "") or \
                response.status_code == 200
