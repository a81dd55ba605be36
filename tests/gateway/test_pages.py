"""The pages the gateway serves besides the annotation page: /login only where there are
tokens to sign in with, /models, and /api/docs with its renderer from npm, served here."""

from __future__ import annotations

from tests.gateway.helpers import CSRF, client, config, error_of
from tests.support import ROOT

TOKENS = (("alice", "alice-token-0123456789"), ("carol", "carol-token-0123456789"))


def signed_in_config():  # type: ignore[no-untyped-def]
    return config(annotator_tokens=TOKENS, admins=("carol",), session_secret="s" * 40)


async def test_login_sends_an_open_gateway_to_the_page_and_asks_where_there_are_tokens():
    async with client(config()) as c:
        r = await c.get("/login", allow_redirects=False)
        assert r.status == 303 and r.headers["Location"] == "/"
    async with client(signed_in_config()) as c:
        r = await c.get("/login", allow_redirects=False)
        assert r.status == 200 and 'id="token"' in await r.text()


async def test_the_models_page_and_the_api_docs_are_served_with_their_renderer():
    assert (ROOT / "node_modules" / "swagger-ui-dist" / "swagger-ui-bundle.js").exists(), \
        "swagger-ui-dist is missing: run make install"
    async with client(signed_in_config()) as c:
        # The docs are public, like the document they render.
        docs = await c.get("/api/docs")
        assert docs.status == 200 and "/vendor/swagger-ui/swagger-ui-bundle.js" in await docs.text()
        bundle = await c.get("/vendor/swagger-ui/swagger-ui-bundle.js")
        assert bundle.status == 200 and bundle.content_type == "application/javascript"
        assert (await c.get("/vendor/swagger-ui/swagger-ui.css")).content_type == "text/css"
        # The models page needs a sign-in; its data needs the admin role.
        page = await c.get("/models", allow_redirects=False)
        assert page.status == 303 and page.headers["Location"] == "/login?next=/models"
        alice = {"Authorization": "Bearer alice-token-0123456789", **CSRF}
        assert (await c.get("/models", headers=alice)).status == 200
        for method, path in (("GET", "/api/models"), ("DELETE", "/api/models/pin"),
                             ("POST", "/api/models/v0001/activate")):
            refused = await c.request(method, path, headers=alice)
            assert refused.status == 403, (method, path)
            assert (await error_of(refused))["code"] == "admin_only"
