"""The page in Debian's chromium, driven by Playwright: keyboard annotation, undo, zoom,
the live panel, and labels queued while the trainer is away then delivered once."""

from __future__ import annotations

import csv
import time
from collections.abc import Iterator

import grpc
import pytest

from hitl.v1 import trainer_pb2, trainer_pb2_grpc
from tests.gateway.conftest import (
    MARKUP_ID,
    Gateway,
    Manifest,
    TrainerProcess,
    artifacts_dir,
    gold_ids,
)

pytestmark = pytest.mark.browser

ANNOTATOR = "browser-tester"
FIRST_ROUND = 30
WHILE_DOWN = 5


@pytest.fixture(scope="module")
def browser_trainer(tmp_path_factory, feature_addr: str,
                    manifest: Manifest) -> Iterator[TrainerProcess]:
    service = TrainerProcess(tmp_path_factory.mktemp("browser-trainer"), feature_addr,
                             manifest).start()
    yield service
    service.stop()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, browser_trainer: TrainerProcess,
            feature_addr: str) -> Iterator[Gateway]:
    service = Gateway(tmp_path_factory.mktemp("gateway") / "gateway.log", browser_trainer.addr,
                      feature_addr).start()
    yield service
    service.stop()


def exported(trainer: TrainerProcess) -> list[trainer_pb2.Annotation]:
    with grpc.insecure_channel(trainer.addr) as channel:
        stub = trainer_pb2_grpc.TrainerServiceStub(channel)
        return [a for batch in stub.ExportLabels(
                    trainer_pb2.ExportLabelsRequest(include_undone=True), timeout=10)
                for a in batch.annotations if a.annotator == ANNOTATOR]


class Annotator:
    """Presses the right key for the image on screen, as a careful person would. Which
    images are checks it knows from the data (`checks`): the page never says."""

    def __init__(self, page, labels: dict[str, int], checks: set[str] | None = None) -> None:
        self.page, self.labels, self.checks = page, labels, checks or set()
        self.done: list[tuple[str, str]] = []  # (item id, key), in order
        self.gold: set[str] = set()

    def current(self) -> str:
        self.page.wait_for_function(
            "() => document.getElementById('current').dataset.empty === 'false'", timeout=20000)
        return str(self.page.get_attribute("#current", "data-item-id"))

    def is_check(self) -> bool:
        return self.current() in self.checks

    def label(self, wrong: bool = False) -> str:
        item_id, check = self.current(), self.is_check()
        right = "b" if self.labels[item_id] else "n"
        key = {"b": "n", "n": "b"}[right] if wrong else right
        self.page.keyboard.press(key)
        self.page.wait_for_function(
            "id => document.getElementById('current').dataset.itemId !== id", arg=item_id)
        self.done.append((item_id, key))
        if check:
            self.gold.add(item_id)
        return item_id

    def count(self, key: str) -> int:
        """Answers that train the model (gold items only check the annotator)."""
        return sum(1 for i, k in self.done if k == key and i not in self.gold)


def pending(page) -> int:
    return int(page.get_attribute("#pending", "data-count") or 0)


def test_keyboard_annotation_with_undo_zoom_live_panel_and_outage(
        browser, gateway: Gateway, browser_trainer: TrainerProcess, manifest: Manifest):
    context = browser.new_context(viewport={"width": 1366, "height": 850})
    page = context.new_page()
    problems: list[str] = []
    served: list[dict] = []  # every item the page was given

    def collect(response) -> None:  # type: ignore[no-untyped-def]
        if "/api/items/next" in response.url and response.status == 200:
            served.extend(response.json()["items"])

    page.on("response", collect)
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on("console", lambda msg: problems.append(msg.text)
            if msg.type == "error" and "Content Security Policy" in msg.text else None)

    page.goto(gateway.url + "/")
    page.fill("#name-input", ANNOTATOR)
    page.click("#name-form button[type=submit]")
    page.wait_for_selector("#thumbs li.focused")
    assert page.locator("#thumbs li").count() <= 20
    assert page.inner_text("#question") == "Does this image show a bicycle?"
    page.wait_for_selector("#connection[data-state=up]")
    assert page.is_visible("#export")  # an open (local) gateway: everyone may export

    annotator = Annotator(page, manifest.labels, gold_ids(manifest))
    for _ in range(FIRST_ROUND):
        annotator.label()

    # Undo brings the last image back to the front; answer it again.
    last_id = annotator.done[-1][0]
    page.keyboard.press("u")
    assert annotator.current() == last_id
    annotator.done.pop()
    annotator.label()

    # Zoom shows the full image and goes back.
    page.keyboard.press("z")
    page.wait_for_selector("#zoom:not([hidden])")
    page.wait_for_function("() => document.getElementById('zoom-img').naturalWidth > 0")
    page.keyboard.press("z")
    page.wait_for_selector("#zoom", state="hidden")

    # A burst of keys, faster than any refill: each lands on the image that was next in
    # the column when the burst began. The column refills in the background after the
    # answers above; on a loaded machine that can take a moment, so the burst waits for it.
    page.wait_for_function("() => document.querySelectorAll('#thumbs li').length > 10")
    column = page.eval_on_selector_all("#thumbs li", "els => els.map(e => e.dataset.itemId)")
    assert len(column) > 10
    for item_id in column[:10]:
        page.keyboard.press("b" if manifest.labels[item_id] else "n")
    for item_id in column[:10]:
        annotator.done.append((item_id, "b" if manifest.labels[item_id] else "n"))
        if item_id in annotator.checks:
            annotator.gold.add(item_id)
    assert annotator.current() == column[10]

    # A wrong answer on a check image: a notice (not a dialog) offers the fix.
    while not annotator.is_check():
        annotator.label()
        assert len(annotator.done) < 120, "no check was served"
    gold_id = annotator.label(wrong=True)
    page.wait_for_selector("#notice:not([hidden])", timeout=20000)
    assert "Check image" in page.inner_text("#notice-text")
    annotator.label()  # the notice does not block the next image
    page.click("#notice-fix")
    page.wait_for_selector("#notice", state="hidden")
    annotator.done = [(i, k) if i != gold_id else (i, "b" if manifest.labels[i] else "n")
                      for i, k in annotator.done]

    # Enough of both answers for a model: the F-score and the learning curve appear.
    while annotator.count("b") < 5 or annotator.count("n") < 5:
        annotator.label()
    page.wait_for_function("() => document.getElementById('f1').textContent !== '–'", timeout=60000)
    page.wait_for_selector("#chart canvas", timeout=30000)
    assert float(page.inner_text("#f1")) >= 0
    assert page.inner_text("#model-version") != "none yet"
    page.wait_for_function("() => document.getElementById('pending').dataset.count === '0'")
    delivered_before_outage = len(annotator.done)

    # The trainer goes away; annotating goes on from the preloaded column.
    browser_trainer.stop()
    page.wait_for_selector("#connection[data-state=down]", timeout=20000)
    while_down = {annotator.label() for _ in range(WHILE_DOWN)}
    page.wait_for_function(f"() => Number(document.getElementById('pending').dataset.count) >= "
                           f"{WHILE_DOWN}")
    assert pending(page) == WHILE_DOWN

    page.screenshot(path=str(artifacts_dir() / "gateway-outage.png"))

    # Back again: every queued label arrives, once, with the time it was given.
    restarted_at = time.time()
    browser_trainer.start()
    page.wait_for_function("() => document.getElementById('pending').dataset.count === '0'",
                           timeout=60000)
    page.wait_for_selector("#connection[data-state=up]", timeout=20000)
    page.screenshot(path=str(artifacts_dir() / "gateway-annotate.png"))

    # Own checks, after the trainer's restart: each decided by the first answer, so the
    # fixed one still counts as a disagreement.
    checks = len(annotator.gold)
    page.wait_for_function(
        "want => document.getElementById('gold').textContent === want",
        arg=f"{checks - 1} of {checks} agree", timeout=20000)
    # Nothing the page was given told a check from another image.
    assert served and {i["id"] for i in served} & annotator.checks
    assert all(set(i) == {"id", "image_url", "thumbnail_url", "remote", "lease_expire_time",
                          "detector"} for i in served)
    assert page.locator(".badge").count() == 0

    records = exported(browser_trainer)
    in_force = [a for a in records if not a.undone]
    labelled = [item_id for item_id, _ in annotator.done]
    assert len(labelled) == delivered_before_outage + WHILE_DOWN
    assert sorted(a.item_id for a in in_force) == sorted(labelled)
    assert len({a.annotation_id for a in records}) == len(records)
    expected = {item_id: (1 if key == "b" else 2) for item_id, key in annotator.done}
    assert {a.item_id: a.label for a in in_force} == expected
    assert all(a.create_time.ToNanoseconds() / 1e9 < restarted_at
               for a in in_force if a.item_id in while_down)
    # The fixed gold answer was recorded, then withdrawn. The undone one was withdrawn
    # too, unless the undo came before it left the browser: then it never left at all.
    undone = sorted(a.item_id for a in records if a.undone)
    assert undone in (sorted([last_id, gold_id]), [gold_id]), (undone, last_id, gold_id)

    # Tablet-sized screen: the same page, stacked.
    page.set_viewport_size({"width": 820, "height": 1180})
    page.screenshot(path=str(artifacts_dir() / "gateway-tablet.png"))

    assert not page.evaluate("() => window.__xss"), "markup in data was run as HTML"
    assert page.locator("img[src='x']").count() == 0
    assert problems == []
    context.close()


MARKUP_NAME = 'Bicycle <b id="injected">bold</b>'


@pytest.fixture(scope="module")
def markup_stack(tmp_path_factory, feature_addr: str, manifest: Manifest):
    """A small unlabelled dataset with a markup item id, under a markup display name."""
    folder = tmp_path_factory.mktemp("markup")
    small = Manifest(folder / "small.csv")
    with open(manifest.path, newline="") as f:
        rows = [r for r in csv.reader(f)][1:]
    chosen = [r for r in rows if r[0] == MARKUP_ID] + [r for r in rows if r[0] != MARKUP_ID][:7]
    with open(small.path, "w", newline="") as out:
        writer = csv.writer(out)
        for item_id, location, label in chosen:
            writer.writerow([item_id, location])
            small.labels[item_id] = int(label)
    # No audit reserve: every one of the eight items is to be served at once.
    trainer = TrainerProcess(folder, feature_addr, small,
                             {"TRAINER_DISPLAY_NAME": MARKUP_NAME,
                              "TRAINER_AUDIT_RESERVE": "0"}).start()
    gateway = Gateway(folder / "gateway.log", trainer.addr, feature_addr).start()
    yield gateway, trainer, small
    gateway.stop()
    trainer.stop()


def test_markup_in_data_is_shown_as_text(browser, markup_stack):
    gateway, trainer, small = markup_stack
    page = browser.new_page()
    page.goto(gateway.url + "/")
    page.fill("#name-input", ANNOTATOR)
    page.click("#name-form button[type=submit]")
    page.wait_for_selector("#thumbs li.focused")
    ids = page.eval_on_selector_all("#thumbs li", "els => els.map(e => e.dataset.itemId)")
    assert MARKUP_ID in ids
    page.wait_for_function("() => document.getElementById('question').textContent.includes('<b')")
    assert page.inner_text("#question") == f"Does this image show a {MARKUP_NAME.lower()}?"
    assert page.locator("#injected").count() == 0

    annotator = Annotator(page, small.labels)
    while annotator.current() != MARKUP_ID:
        annotator.label()
    annotator.label()
    page.wait_for_function("() => document.getElementById('pending').dataset.count === '0'")
    assert MARKUP_ID in {a.item_id for a in exported(trainer)}
    assert not page.evaluate("() => window.__xss")
    assert page.locator("img[src='x']").count() == 0
    page.close()


def test_annotators_sign_in_with_their_own_token_and_work_under_its_name(
        browser, tmp_path, feature_addr):
    tokens = {"alice": "alice-token-0123456789", "carol": "carol-token-0123456789"}
    gateway = Gateway(tmp_path / "gateway.log", "127.0.0.1:1", feature_addr, {
        "GATEWAY_ANNOTATOR_TOKENS": ",".join(f"{k}={v}" for k, v in tokens.items()),
        "GATEWAY_ADMINS": "carol"}).start()
    try:
        page = browser.new_page()
        page.goto(gateway.url + "/")
        assert page.url.endswith("/login")
        page.fill("#token", "wrong-token-here")
        page.click("#login-form button[type=submit]")
        page.wait_for_function("() => document.getElementById('login-error').textContent !== ''")
        assert "not right" in page.inner_text("#login-error")
        page.fill("#token", tokens["alice"])
        page.click("#login-form button[type=submit]")
        page.wait_for_url(gateway.url + "/")
        # The name is the token's: no name to choose, and no export for an annotator.
        page.wait_for_function("() => document.getElementById('annotator').textContent === 'alice'")
        assert not page.is_visible("#name-dialog")
        assert not page.is_visible("#export")
        page.goto(gateway.url + "/")  # the session cookie keeps it signed in
        assert not page.url.endswith("/login")
        cookies = {c["name"]: c for c in page.context.cookies()}
        session = cookies["hitl_session"]
        assert session["httpOnly"] and session["sameSite"] == "Strict"
        assert tokens["alice"] not in session["value"]

        # The name button signs out; carol, an admin, signs in and may export.
        page.wait_for_function("() => document.getElementById('annotator').textContent === 'alice'")
        page.click("#annotator")
        page.wait_for_url(gateway.url + "/login")
        page.fill("#token", tokens["carol"])
        page.click("#login-form button[type=submit]")
        page.wait_for_function("() => document.getElementById('annotator').textContent === 'carol'")
        page.wait_for_selector("#export:not([hidden])")
        page.close()
    finally:
        gateway.stop()
