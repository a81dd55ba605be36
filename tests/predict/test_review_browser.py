"""The review view in Debian's chromium: images by prediction, answered with b and n;
confirmations and corrections arrive at the trainer as ordinary annotations, undo
withdraws one, and the page notices the newer model they train."""

from __future__ import annotations

import grpc
import pytest

from hitl.v1 import trainer_pb2, trainer_pb2_grpc
from tests.gateway.conftest import Gateway, Manifest, TrainerProcess, artifacts_dir

pytestmark = pytest.mark.browser

REVIEWER = "reviewer"
ANSWERS = 6


def reviewer_annotations(trainer: TrainerProcess) -> list[trainer_pb2.Annotation]:
    with grpc.insecure_channel(trainer.addr) as channel:
        stub = trainer_pb2_grpc.TrainerServiceStub(channel)
        return [a for batch in stub.ExportLabels(
                    trainer_pb2.ExportLabelsRequest(include_undone=True), timeout=10)
                for a in batch.annotations if a.annotator == REVIEWER]


def probabilities(page) -> list[float]:  # type: ignore[no-untyped-def]
    """As the API gave them (the cards show three decimals)."""
    return [float(p) for p in page.locator("#cards li").evaluate_all(
        "cards => cards.map(c => c.dataset.probability)")]


def test_review_keys_confirm_and_correct_predictions_as_annotations(
        browser, predict_gateway: Gateway, predict_trainer: TrainerProcess, tiles: Manifest):
    page = browser.new_context(viewport={"width": 1366, "height": 900}).new_page()
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    page.goto(predict_gateway.url + "/review")
    page.fill("#name-input", REVIEWER)
    page.click("#name-form button[type=submit]")
    page.wait_for_selector("#cards[data-loaded=true] li.focused")
    page.wait_for_selector("#connection[data-state=up]")
    shown = probabilities(page)
    assert len(shown) >= 20 and shown == sorted(shown, reverse=True)
    assert page.inner_text("#question") == "Review predictions: bicycle"

    expected: dict[str, str] = {}
    verdicts: dict[str, str] = {}
    for k in range(ANSWERS):
        focused = page.locator("#cards li.focused")
        item_id = focused.get_attribute("data-item-id")
        predicted = focused.locator(".predicted").get_attribute("data-decision")
        truth = "positive" if tiles.labels[item_id] else "negative"
        # A careful person, except on the third image, where the prediction is contradicted.
        answer = truth if k != 2 else ("negative" if predicted == "positive" else "positive")
        page.keyboard.press("b" if answer == "positive" else "n")
        page.wait_for_function("id => document.querySelector('#cards li.focused')"
                               ".dataset.itemId !== id", arg=item_id)
        expected[item_id] = answer
        verdicts[item_id] = "confirmed" if answer == predicted else "corrected"
    for item_id, verdict in verdicts.items():
        card = page.locator(f'#cards li[data-item-id="{item_id}"]')
        assert card.get_attribute("data-verdict") == verdict
    assert "corrected" in verdicts.values()

    # Undo withdraws the last answer; the same card is answered again, the other way.
    last = list(expected)[-1]
    page.keyboard.press("u")
    assert page.locator("#cards li.focused").get_attribute("data-item-id") == last
    assert page.locator(f'#cards li[data-item-id="{last}"]').get_attribute("data-verdict") \
        is None
    flipped = "negative" if expected[last] == "positive" else "positive"
    page.keyboard.press("b" if flipped == "positive" else "n")
    expected[last] = flipped

    page.wait_for_function("() => document.getElementById('pending').dataset.count === '0'",
                           timeout=20000)
    confirmed = sum(1 for i in expected
                    if page.locator(f'#cards li[data-item-id="{i}"]').get_attribute(
                        "data-verdict") == "confirmed")
    assert page.inner_text("#tally").startswith(
        f"Reviewed {ANSWERS}: {confirmed} confirmed, {ANSWERS - confirmed} corrected.")

    recorded = reviewer_annotations(predict_trainer)
    in_force = {a.item_id: {1: "positive", 2: "negative"}[a.label]
                for a in recorded if not a.undone}
    assert in_force == expected
    assert all(a.split == trainer_pb2.SPLIT_POOL for a in recorded)
    # Ordinary annotations: the answer on screen, then retrained on (a newer model).
    page.wait_for_selector("#newer:not([hidden])", timeout=60000)
    page.screenshot(path=str(artifacts_dir() / "review.png"))

    page.click("#tab-borderline")
    page.wait_for_function("() => document.getElementById('tab-borderline')"
                           ".getAttribute('aria-pressed') === 'true'")
    page.wait_for_selector("#cards[data-loaded=true] li.focused")
    margins = [abs(p - 0.5) for p in probabilities(page)]
    assert margins == sorted(margins)
    assert not set(page.locator("#cards li").evaluate_all(
        "cards => cards.map(c => c.dataset.itemId)")) & set(expected)

    # An earlier job of this trainer may still be shown as done: wait for this one's answer
    # before waiting for its end.
    with page.expect_response(lambda r: r.url.endswith("/api/predictions/job")) as started:
        page.click("#score-all")
    assert started.value.status == 202
    page.wait_for_function("() => document.querySelector('#scoring[data-state=done]') && "
                           "document.getElementById('scoring-text').textContent"
                           ".includes('scored')", timeout=300000)
    assert problems == []
