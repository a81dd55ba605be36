"""The admins' pages and the review by hand, in Debian's chromium at 1280x800 and at
390 px: the models page pins an older model (the annotation page then says so) and
unpins it, downloads both files; /api/docs renders the gateway's OpenAPI with the
renderer it serves itself, under its security policy, and runs a call; /login signs in
where there are tokens; /review is answered by buttons, a swipe and a focused card; axe-core
finds nothing on any of them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from hitl.v1 import common_pb2, trainer_pb2, trainer_pb2_grpc
from tests.gateway.browser import axe_violations, off_screen
from tests.gateway.conftest import Gateway, Manifest, TrainerProcess, artifacts_dir
from tests.predict.conftest import Feature, train_on_truth

pytestmark = pytest.mark.browser

ADMIN = "model-admin"
TOKEN = "ada-token-0123456789abcdef"
WIDTHS = ((1280, 800), (390, 844))


@pytest.fixture(scope="module")
def admin_stack(tmp_path_factory, predict_feature: Feature, tiles: Manifest
                ) -> Iterator[tuple[Gateway, Gateway, TrainerProcess]]:
    """A trainer with two models (the second on more labels), an open gateway and one
    where annotators sign in (ada, an admin)."""
    folder = tmp_path_factory.mktemp("admin")
    trainer = TrainerProcess(folder, predict_feature.addr, tiles,
                             {"TRAINER_PREFETCH": "300"}).start()
    try:
        for labels in (40, 40):
            assert train_on_truth(trainer, tiles.labels, labels).adopted
        gateway = Gateway(folder / "open.log", trainer.addr, predict_feature.addr).start()
        signed = Gateway(folder / "signed.log", trainer.addr, predict_feature.addr, {
            "GATEWAY_ANNOTATOR_TOKENS": f"ada={TOKEN}", "GATEWAY_ADMINS": "ada",
            "GATEWAY_SESSION_SECRET": "k" * 48}).start()
    except BaseException:
        trainer.stop()
        raise
    yield gateway, signed, trainer
    signed.stop()
    gateway.stop()
    trainer.stop()


def page_of(browser, url: str, width: int = 1280, height: int = 800,  # type: ignore[no-untyped-def]
            name: str | None = ADMIN, **options):
    context = browser.new_context(viewport={"width": width, "height": height},
                                  bypass_csp=True, **options)
    page = context.new_page()
    if name:
        page.goto(url + "/")
        page.fill("#name-input", name)
        page.click("#name-form button[type=submit]")
        page.wait_for_selector("#connection[data-state=up]")
    return context, page


def listed(page) -> dict:  # type: ignore[no-untyped-def]
    return dict(page.evaluate("() => fetch('/api/models').then(r => r.json())"))


def test_the_models_page_pins_an_older_model_and_unpins_it(browser, admin_stack):
    gateway, _, _ = admin_stack
    context, page = page_of(browser, gateway.url, accept_downloads=True)
    page.goto(gateway.url + "/models")
    page.wait_for_selector("#model-list[data-loaded=true]")
    versions = page.locator("#model-list li").evaluate_all("cs => cs.map(c => c.dataset.version)")
    assert len(versions) >= 2 and versions == sorted(versions, reverse=True)
    newest, older = versions[0], versions[-1]
    assert page.get_attribute(f'li[data-version="{newest}"]', "data-active") == "true"
    assert "the newest model, is in use" in page.inner_text("#pin-text")
    # Every card says when and on what the model was trained, and how good it is now.
    card = page.inner_text(f'li[data-version="{older}"]')
    assert "Trained" in card and "Live F-score" in card and "labels" in card.lower()
    assert axe_violations(page) == []

    page.click(f'li[data-version="{older}"] button.use')
    page.wait_for_selector(".pin-state[data-pinned=true]")
    assert f"{older} is pinned in use" in page.inner_text("#pin-text")
    assert page.get_attribute(f'li[data-version="{older}"]', "data-active") == "true"
    assert listed(page)["pinned"] is True
    assert axe_violations(page) == []
    page.screenshot(path=str(artifacts_dir() / "models-pinned.png"), full_page=True)

    # The annotation page says that an older model is pinned in use.
    page.goto(gateway.url + "/")
    page.wait_for_selector("#pinned-note:not([hidden])")
    assert older in page.inner_text("#pinned-note")
    assert page.inner_text("#model-version").startswith(older)

    # Downloads: the .npz and the .json of a kept model.
    page.goto(gateway.url + "/models")
    page.wait_for_selector("#model-list[data-loaded=true]")
    with page.expect_download() as npz:
        page.click(f'li[data-version="{older}"] a:has-text(".npz")')
    assert npz.value.suggested_filename.endswith(f"{older}.npz")
    with page.expect_download() as doc:
        page.click(f'li[data-version="{older}"] a:has-text(".json")')
    assert json.loads(Path(doc.value.path()).read_text())["version"] == older

    # On a phone: everything on screen, and the pin lifted.
    page.set_viewport_size({"width": 390, "height": 844})
    assert off_screen(page) == []
    assert axe_violations(page) == []
    page.click("#unpin")
    page.wait_for_selector(".pin-state[data-pinned=false]")
    assert page.get_attribute(f'li[data-version="{newest}"]', "data-active") == "true"
    assert listed(page)["pinned"] is False
    page.goto(gateway.url + "/")
    page.wait_for_selector("#connection[data-state=up]")
    page.wait_for_function("() => document.getElementById('pinned-note').hidden")
    context.close()


def test_the_api_docs_render_locally_and_run_a_call(browser, admin_stack):
    gateway, _, _ = admin_stack
    # First under the page's own security policy: nothing refused, nothing from elsewhere.
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    problems: list[str] = []
    requested: list[str] = []
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.on("request", lambda r: requested.append(r.url))
    page.goto(gateway.url + "/")
    page.fill("#name-input", ADMIN)
    page.click("#name-form button[type=submit]")
    page.wait_for_selector("#connection[data-state=up]")
    page.click("a[href='/api/docs']")
    page.wait_for_selector("#operations-default-getStatus")
    assert page.locator(".opblock").count() >= 20
    page.click("#operations-default-getStatus .opblock-summary-control")
    page.click("#operations-default-getStatus .try-out__btn")
    page.click("#operations-default-getStatus .execute")
    status = "#operations-default-getStatus .live-responses-table tbody .response-col_status"
    page.wait_for_selector(status)
    assert page.inner_text(status).strip() == "200"
    assert problems == []
    assert all(url.startswith(gateway.url) for url in requested), requested
    context.close()

    for width, height in WIDTHS:
        context, page = page_of(browser, gateway.url, width, height, name=None)
        page.goto(gateway.url + "/api/docs")
        page.wait_for_selector("#operations-default-addAnnotation")
        assert axe_violations(page) == []
        page.click("#operations-default-addAnnotation .opblock-summary-control")
        page.click("#operations-default-addAnnotation .try-out__btn")
        assert axe_violations(page) == []
        page.screenshot(path=str(artifacts_dir() / f"api-docs-{width}.png"))
        context.close()


def test_login_asks_for_a_token_only_where_there_are_tokens(browser, admin_stack):
    gateway, signed, _ = admin_stack
    for width, height in WIDTHS:
        context, page = page_of(browser, signed.url, width, height, name=None)
        page.goto(signed.url + "/")
        page.wait_for_url(signed.url + "/login")
        assert axe_violations(page) == []
        page.fill("#token", "not-the-token-at-all")
        page.click("#login-form button[type=submit]")
        page.wait_for_function("() => document.getElementById('login-error').textContent !== ''")
        assert axe_violations(page) == []
        page.fill("#token", TOKEN)
        page.click("#login-form button[type=submit]")
        page.wait_for_url(signed.url + "/t/default/")  # the default task's own address
        page.wait_for_function("() => document.getElementById('annotator').textContent === 'ada'")
        assert page.is_visible("#nav-models")  # ada is an admin
        context.close()
    # An open gateway has nothing to sign in with: /login is the annotation page.
    context, page = page_of(browser, gateway.url, name=None)
    page.goto(gateway.url + "/login")
    assert page.url == gateway.url + "/t/default/"
    context.close()


def swipe(page, selector: str, dx: int) -> None:  # type: ignore[no-untyped-def]
    """A finger moved sideways across the element, as real touch events."""
    box = page.locator(selector).bounding_box()
    x, y = box["x"] + box["width"] / 2 - dx / 2, box["y"] + box["height"] / 3
    cdp = page.context.new_cdp_session(page)
    for kind, at in (("touchStart", x), ("touchMove", x + dx / 2), ("touchMove", x + dx),
                     ("touchEnd", x + dx)):
        points = [] if kind == "touchEnd" else [{"x": at, "y": y}]
        cdp.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": points})


def reviewed(trainer: TrainerProcess) -> dict[str, int]:
    with grpc.insecure_channel(trainer.addr) as channel:
        stub = trainer_pb2_grpc.TrainerServiceStub(channel)
        return {a.item_id: a.label for batch in stub.ExportLabels(
            trainer_pb2.ExportLabelsRequest(), timeout=10)
            for a in batch.annotations if a.annotator == "phone-reviewer"}


def test_review_is_answered_by_buttons_a_swipe_and_a_focused_card_on_a_phone(
        browser, admin_stack):
    gateway, _, trainer = admin_stack
    context, page = page_of(browser, gateway.url, 390, 844, name="phone-reviewer",
                            has_touch=True, is_mobile=True)
    page.goto(gateway.url + "/review")
    page.wait_for_selector("#cards[data-loaded=true] li.focused")
    cards = page.locator("#cards li").evaluate_all("cs => cs.map(c => c.dataset.itemId)")
    first, second, third = cards[:3]
    assert axe_violations(page) == []
    assert off_screen(page) == []

    page.tap(f'#cards li[data-item-id="{first}"] button.yes')
    page.wait_for_selector(f'#cards li[data-item-id="{first}"][data-answer=positive]')
    swipe(page, f'#cards li[data-item-id="{second}"]', -160)  # left: no
    page.wait_for_selector(f'#cards li[data-item-id="{second}"][data-answer=negative]')
    # A card takes the keyboard focus, and the keys answer the focused card.
    page.focus(f'#cards li[data-item-id="{third}"]')
    assert page.get_attribute(f'#cards li[data-item-id="{third}"]', "class") == "card focused"
    page.keyboard.press("b")
    page.wait_for_selector(f'#cards li[data-item-id="{third}"][data-answer=positive]')
    page.tap("#review-undo")  # withdraws the last answer
    page.wait_for_function("id => !document.querySelector(`#cards li[data-item-id=\"${id}\"]`)"
                           ".dataset.answer", arg=third)
    page.wait_for_function("() => document.getElementById('pending').dataset.count === '0'",
                           timeout=20000)
    assert axe_violations(page) == []
    page.screenshot(path=str(artifacts_dir() / "review-phone.png"))
    context.close()
    assert reviewed(trainer) == {first: common_pb2.LABEL_POSITIVE,
                                 second: common_pb2.LABEL_NEGATIVE}
