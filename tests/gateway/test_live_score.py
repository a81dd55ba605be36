"""The live score on a dataset with no labels at all: a folder of real street tiles. After
enough answers the page shows F with its 90% interval, what it rests on, and the
forecast; `/api/status` gives the same estimate."""

from __future__ import annotations

import csv
import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.gateway.conftest import Gateway, Manifest, TrainerProcess
from tests.support import TILES, require_data

pytestmark = pytest.mark.browser

POSITIVES, NEGATIVES = 60, 240
MAX_LABELS = 160


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Manifest:
    """A folder of tiles (links to the real files) with no label anywhere: the trainer
    sees only images. The truth stays here, for the simulated person."""
    require_data(TILES)
    with open(TILES / "labels.csv", newline="") as f:
        rows = sorted(csv.DictReader(f), key=lambda r: r["filename"])
    chosen = ([r for r in rows if r["label"] == "1"][:POSITIVES]
              + [r for r in rows if r["label"] == "0"][:NEGATIVES])
    root = tmp_path_factory.mktemp("folder-dataset")
    truth = {}
    for row in chosen:
        name = Path(row["filename"]).name
        (root / name).symlink_to(TILES / row["filename"])
        truth[name] = int(row["label"])
    return Manifest(root, truth)


@pytest.fixture(scope="module")
def folder_gateway(tmp_path_factory, feature_addr: str,
                   folder: Manifest) -> Iterator[Gateway]:
    state = tmp_path_factory.mktemp("live-score")
    trainer = TrainerProcess(state, feature_addr, folder).start()
    gateway = Gateway(state / "gateway.log", trainer.addr, feature_addr).start()
    yield gateway
    gateway.stop()
    trainer.stop()


def status(gateway: Gateway) -> dict:
    with urllib.request.urlopen(gateway.url + "/api/status", timeout=10) as reply:
        return json.loads(reply.read())


def test_a_folder_with_no_labels_shows_f_with_its_interval_and_the_forecast(
        browser, folder_gateway: Gateway, folder: Manifest) -> None:
    page = browser.new_context(viewport={"width": 1280, "height": 850}).new_page()
    page.goto(folder_gateway.url + "/")
    page.fill("#name-input", "live-score-tester")
    page.click("#name-form button[type=submit]")
    page.wait_for_selector("#connection[data-state=up]")

    given = 0
    while page.inner_text("#f1") == "–" or not page.inner_text("#forecast"):
        assert given < MAX_LABELS, "no live score after that many answers"
        page.wait_for_function(
            "() => document.getElementById('current').dataset.empty === 'false'",
            timeout=30000)
        item_id = str(page.get_attribute("#current", "data-item-id"))
        page.keyboard.press("b" if folder.labels[item_id] else "n")
        page.wait_for_function(
            "id => document.getElementById('current').dataset.itemId !== id", arg=item_id)
        given += 1
        if given % 10 == 0:  # let the model and the estimate catch up now and then
            page.wait_for_timeout(1500)

    now = status(folder_gateway)
    assert now["counts"]["validation"] == 0 and now["counts"]["evaluation"] == 0
    estimate = now["model"]["estimate"]
    assert estimate["source"] == "audit" and estimate["labels"] >= 1
    assert 0 <= estimate["f1_low"] <= estimate["f1"] <= estimate["f1_high"] <= 1
    assert estimate["labels"] == now["counts"]["audit_labels"]
    # The page shows the same figure, with its interval, and what it rests on.
    page.wait_for_function("() => document.getElementById('f1-interval').textContent !== ''")
    assert page.inner_text("#f1-interval").startswith("90% interval ")
    assert "check answer" in page.inner_text("#rests-on")
    forecast = page.inner_text("#forecast")
    assert forecast.startswith(("About", "The target is reached", "The estimate is at the target",
                                "The learning curve cannot tell")), forecast
    assert "more than the curve can tell more" not in forecast
    assert now["forecast"] is not None and now["forecast"]["points"] >= 1
