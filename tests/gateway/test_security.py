"""Hostile requests: path traversal, missing or wrong token, cross-site writes, oversized
bodies and markup in data. Each is refused with a JSON error and the gateway keeps
serving."""

from __future__ import annotations

import uuid

import pytest

from annotation_gateway.identity import SESSION_COOKIE
from annotation_gateway.validation import MAX_BODY_BYTES
from tests.gateway.conftest import TrainerProcess
from tests.gateway.helpers import CSRF, client, config, error_of, sign_in

TOKEN = "correct-horse-battery"
TOKENS = (("alice", TOKEN),)


@pytest.mark.parametrize("path", [
    "/api/items/..%2F..%2F..%2Fetc%2Fpasswd/image",
    "/api/items/%2Fetc%2Fpasswd/image",
    "/api/items/..%5C..%5Cwindows%5Cwin.ini/thumbnail",
    "/api/items/a%2F..%2F..%2Fetc%2Fpasswd/image",
    "/api/items/..%252F..%252Fetc%252Fpasswd/image",
    "/api/items/%00/image",
])
async def test_image_route_refuses_path_traversal(trainer: TrainerProcess, feature_addr, path):
    async with client(config(trainer_addr=trainer.addr, feature_addr=feature_addr)) as c:
        r = await c.get(path)
        assert r.status in (400, 404)
        body = await r.read()
        assert b"root:" not in body
        assert (await error_of(r))["code"] in ("invalid_item_id", "not_found")
        # Neither a real file's absolute path (without its leading slash) nor a dataset
        # file path is an item id: images are only ever found by id.
        tile = await c.get("/api/items/etc%2Fpasswd/image")
        assert tile.status == 404 and b"root:" not in await tile.read()
        assert (await c.get("/api/status")).status == 200


async def test_plain_dot_segments_never_reach_a_handler():
    async with client(config()) as c:
        r = await c.get("/api/items/../../etc/passwd")
        assert r.status == 404
        assert b"root:" not in await r.read()


async def test_without_the_token_every_api_call_is_refused():
    async with client(config(annotator_tokens=TOKENS)) as c:
        for method, path in (("GET", "/api/status"), ("GET", "/api/items/next"),
                             ("GET", "/api/export"), ("GET", "/api/events"),
                             ("GET", "/api/items/abc/image"), ("GET", "/api/session"),
                             ("POST", "/api/annotations"), ("DELETE", "/api/annotations/abcdefgh")):
            r = await c.request(method, path, headers=CSRF)
            assert r.status == 401, (method, path)
            assert (await error_of(r))["code"] == "unauthenticated"
        page = await c.get("/", allow_redirects=False)
        assert page.status == 303 and page.headers["Location"] == "/login"
        login_page = await c.get("/login")
        assert login_page.status == 200
        # Probes and the login page's own assets stay reachable.
        for path in ("/healthz", "/readyz", "/static/js/login.js", "/static/app.css"):
            assert (await c.get(path)).status == 200, path


async def test_a_wrong_token_is_refused_and_the_right_one_opens_a_session():
    async with client(config(annotator_tokens=TOKENS)) as c:
        wrong = await c.get("/api/session", headers={"Authorization": "Bearer not-the-token"})
        assert wrong.status == 401
        bad_login = await c.post("/api/login", json={"token": "guess"}, headers=CSRF)
        assert bad_login.status == 401 and (await error_of(bad_login))["code"] == "wrong_token"
        assert SESSION_COOKIE not in {k.key for k in c.session.cookie_jar}
        forged = await c.get("/api/session", cookies={SESSION_COOKIE: "0" * 64})
        assert forged.status == 401

        login = await c.post("/api/login", json={"token": TOKEN}, headers=CSRF)
        assert login.status == 200 and (await login.json())["annotator"] == "alice"
        cookie = login.cookies[SESSION_COOKIE]
        assert cookie["httponly"] and cookie["samesite"] == "Strict"
        assert TOKEN not in cookie.value
        session = await c.get("/api/session")
        assert session.status == 200
        assert await session.json() == {"annotator": "alice", "admin": False,
                                        "auth_required": True}
        assert (await c.get("/", allow_redirects=False)).status == 200


async def test_api_clients_may_send_the_token_as_a_bearer_header():
    async with client(config(annotator_tokens=TOKENS)) as c:
        r = await c.get("/api/session", headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.status == 200 and (await r.json())["annotator"] == "alice"


async def test_a_token_in_the_query_string_is_not_accepted():
    async with client(config(annotator_tokens=TOKENS)) as c:
        for name in ("token", "access_token"):
            r = await c.get(f"/api/session?{name}={TOKEN}")
            assert r.status == 400 and (await error_of(r))["code"] == "token_in_query"


@pytest.mark.parametrize("headers,code", [
    ({"Origin": "https://evil.example", **CSRF}, "cross_site_request"),
    ({"Origin": "null", **CSRF}, "cross_site_request"),
    ({"Sec-Fetch-Site": "cross-site", **CSRF}, "cross_site_request"),
    ({}, "missing_csrf_header"),
])
async def test_cross_site_state_changes_are_refused(headers, code):
    async with client(config()) as c:
        await sign_in(c)
        body = {"id": uuid.uuid4().hex, "item_id": "x", "label": "positive"}
        r = await c.post("/api/annotations", json=body, headers=headers)
        assert r.status == 403
        assert (await error_of(r))["code"] == code
        undo = await c.delete("/api/annotations/abcdefgh", headers=headers)
        assert undo.status == 403
        # A form post from another site, the classic CSRF shape.
        form = await c.post("/api/session", data={"annotator": "mallory"},
                            headers={"Origin": "https://evil.example"})
        assert form.status == 403
        assert (await (await c.get("/api/session")).json())["annotator"] == "tester"
        # And a session cookie cannot be made up: it is signed.
        jar = {SESSION_COOKIE: "eyJuIjoibWFsbG9yeSJ9.forged.sig"}
        assert (await (await c.get("/api/session", cookies=jar)).json())["annotator"] is None


async def test_same_origin_requests_with_the_header_pass_the_csrf_check():
    async with client(config()) as c:
        origin = f"http://{c.host}:{c.port}"
        r = await c.post("/api/session", json={"annotator": "same-origin"},
                         headers={"Origin": origin, **CSRF})
        assert r.status == 200
    async with client(config(allowed_origins=("https://annotate.example.org",))) as c:
        r = await c.post("/api/session", json={"annotator": "proxied"},
                         headers={"Origin": "https://annotate.example.org", **CSRF})
        assert r.status == 200


async def test_oversized_bodies_are_refused():
    async with client(config()) as c:
        await sign_in(c)
        big = {"id": uuid.uuid4().hex, "item_id": "x" * (MAX_BODY_BYTES + 1), "label": "positive"}
        r = await c.post("/api/annotations", json=big, headers=CSRF)
        assert r.status == 413
        assert (await error_of(r))["code"] == "request_entity_too_large"
        assert (await c.get("/healthz")).status == 200


async def test_markup_is_refused_as_a_name_and_never_served_as_html():
    async with client(config()) as c:
        r = await c.post("/api/session", json={"annotator": "<script>alert(1)</script>"},
                         headers=CSRF)
        assert r.status == 400
        error = await r.json()
        assert r.content_type == "application/json"
        assert "<script>" not in error["error"]["message"]


async def test_every_response_carries_a_strict_content_security_policy():
    async with client(config()) as c:
        for path in ("/", "/login", "/api/session", "/static/js/main.js", "/api/nope"):
            r = await c.get(path)
            csp = r.headers["Content-Security-Policy"]
            assert "default-src 'none'" in csp and "script-src 'self'" in csp
            assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
            assert "frame-ancestors 'none'" in csp
            assert r.headers["X-Content-Type-Options"] == "nosniff"
            assert r.headers["X-Frame-Options"] == "DENY"
            assert r.headers["Referrer-Policy"] == "no-referrer"
        page = await (await c.get("/")).text()
        # No inline script or style for the policy to have to allow.
        assert "<script>" not in page and "style=" not in page and "onclick" not in page
