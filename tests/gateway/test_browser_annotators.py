"""The annotators' keys in Debian's chromium: space skips, `f` marks unsure with a note,
`h` opens the guidelines from configuration, `z` zooms to the detector's box; each seen in
the export or on the page. Then accessibility: axe-core finds no violation, and on a
390 px wide phone every button is fully on screen."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest

from hitl.v1 import common_pb2, trainer_pb2, trainer_pb2_grpc
from tests.gateway.browser import AXE, axe_violations
from tests.gateway.conftest import Gateway, Manifest, TrainerProcess, artifacts_dir
from tests.support import PHOTOS, require_data

pytestmark = pytest.mark.browser

ANNOTATOR = "keys-tester"
GUIDELINES = ("Answer yes when any part of a bicycle shows, parked or ridden.\n\n"
              "- a motorcycle is not a bicycle\n- a bicycle drawn on the road is not one")


@pytest.fixture(scope="module")
def stack(tmp_path_factory, feature_addr: str, manifest: Manifest
          ) -> Iterator[tuple[Gateway, TrainerProcess]]:
    folder = tmp_path_factory.mktemp("keys")
    example = require_data(PHOTOS) / "giraffe.jpg"  # no bicycle in it (photos/labels.csv)
    trainer = TrainerProcess(folder, feature_addr, manifest).start()
    gateway = Gateway(folder / "gateway.log", trainer.addr, feature_addr, {
        "GATEWAY_GUIDELINES": GUIDELINES,
        "GATEWAY_GUIDELINES_EXAMPLES": f"{example}|Not a bicycle: a {example.stem}"}).start()
    yield gateway, trainer
    gateway.stop()
    trainer.stop()


def exported(trainer: TrainerProcess) -> list[trainer_pb2.Annotation]:
    with grpc.insecure_channel(trainer.addr) as channel:
        stub = trainer_pb2_grpc.TrainerServiceStub(channel)
        return [a for batch in stub.ExportLabels(trainer_pb2.ExportLabelsRequest(
                    include_undone=True, include_skipped=True), timeout=10)
                for a in batch.annotations if a.annotator == ANNOTATOR]


def start(page, url: str) -> None:  # type: ignore[no-untyped-def]
    page.goto(url + "/")
    page.fill("#name-input", ANNOTATOR)
    page.click("#name-form button[type=submit]")
    page.wait_for_selector("#thumbs li.focused")
    page.wait_for_selector("#connection[data-state=up]")


def current(page) -> str:  # type: ignore[no-untyped-def]
    page.wait_for_function("() => document.getElementById('current').dataset.empty === 'false'")
    return str(page.get_attribute("#current", "data-item-id"))


def moved_on(page, item_id: str) -> None:  # type: ignore[no-untyped-def]
    page.wait_for_function("id => document.getElementById('current').dataset.itemId !== id",
                           arg=item_id)


def delivered(page) -> None:  # type: ignore[no-untyped-def]
    page.wait_for_function("() => document.getElementById('pending').dataset.count === '0'",
                           timeout=20000)


def test_space_f_h_and_the_detectors_zoom(browser, stack, manifest: Manifest):
    gateway, trainer = stack
    context = browser.new_context(viewport={"width": 1366, "height": 850})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    start(page, gateway.url)

    # h: the guidelines from configuration, with the example image; h again closes.
    page.keyboard.press("h")
    page.wait_for_selector("#guide:not([hidden])")
    page.wait_for_function("() => document.querySelector('#guide-examples img') !== null"
                           " && document.querySelector('#guide-examples img').naturalWidth > 0")
    assert page.inner_text("#guide-text p") == (
        "Answer yes when any part of a bicycle shows, parked or ridden.")
    assert page.locator("#guide-text li").all_inner_texts() == [
        "a motorcycle is not a bicycle", "a bicycle drawn on the road is not one"]
    assert page.inner_text("#guide-examples figcaption").startswith("Not a bicycle")
    page.screenshot(path=str(artifacts_dir() / "gateway-guidelines.png"))
    before = current(page)
    page.keyboard.press("b")  # nothing is labelled while the guidelines are open
    assert current(page) == before
    page.keyboard.press("h")
    page.wait_for_selector("#guide", state="hidden")
    page.click("#btn-guide")  # also reachable by a button
    page.wait_for_selector("#guide:not([hidden])")
    page.keyboard.press("Escape")
    page.wait_for_selector("#guide", state="hidden")

    # Space skips: no label, and the export lists it only with include_skipped.
    skipped = current(page)
    page.keyboard.press(" ")
    moved_on(page, skipped)
    assert "Skipped" in page.inner_text("#last")

    # f: unsure, with a short note typed into the box that opens.
    unsure = current(page)
    page.keyboard.press("f")
    page.wait_for_selector("#unsure-note:focus")
    page.keyboard.type("a wheel, maybe a pram")
    page.screenshot(path=str(artifacts_dir() / "gateway-unsure.png"))
    page.keyboard.press("Enter")
    moved_on(page, unsure)
    page.wait_for_selector("#unsure-form", state="hidden")
    delivered(page)
    page.wait_for_function("() => document.getElementById('passes').textContent === '1 / 1'")

    records = {a.item_id: a for a in exported(trainer)}
    assert records[skipped].label == common_pb2.LABEL_SKIP
    assert (records[unsure].label, records[unsure].note) == (common_pb2.LABEL_UNSURE,
                                                             "a wheel, maybe a pram")
    with grpc.insecure_channel(trainer.addr) as channel:
        default = [a.item_id for batch in trainer_pb2_grpc.TrainerServiceStub(channel)
                   .ExportLabels(trainer_pb2.ExportLabelsRequest(), timeout=10)
                   for a in batch.annotations]
    assert skipped not in default and unsure not in default

    # z on an image where the detector found a bicycle: the zoom shows its box, filling
    # the view, outlined exactly where the detector's coordinates say.
    for _ in range(40):
        item_id = current(page)
        page.keyboard.press("z")
        page.wait_for_selector("#zoom:not([hidden])")
        page.wait_for_function("() => document.getElementById('zoom-img').naturalWidth > 0")
        if page.get_attribute("#zoom", "data-mode") == "box":
            break
        page.keyboard.press("z")
        page.wait_for_selector("#zoom", state="hidden")
        page.keyboard.press("b" if manifest.labels[item_id] else "n")
        moved_on(page, item_id)
    else:
        pytest.fail("no image with a detector box among the first 40")
    geometry = page.evaluate("""() => {
        const r = (id) => document.getElementById(id).getBoundingClientRect();
        return {img: r('zoom-img').toJSON(), frame: r('zoom-frame').toJSON(),
                box: r('zoom-box').toJSON(),
                caption: document.getElementById('zoom-caption').textContent};
    }""")
    img, frame, outline = geometry["img"], geometry["frame"], geometry["box"]
    assert "detector's box" in geometry["caption"]
    x1, y1, x2, y2 = (float(v) for v in page.get_attribute("#zoom", "data-box").split(","))
    # The outline is the detector's box, mapped onto the enlarged image.
    assert abs(outline["x"] - (img["x"] + x1 * img["width"])) < 2
    assert abs(outline["y"] - (img["y"] + y1 * img["height"])) < 2
    assert abs(outline["width"] - (x2 - x1) * img["width"]) < 2
    assert abs(outline["height"] - (y2 - y1) * img["height"]) < 2
    # The enlarged image is bigger than the frame: we are looking at a part of it.
    assert img["width"] > frame["width"] * 1.2 or img["height"] > frame["height"] * 1.2
    # The outline lies inside the frame and takes a good part of it.
    assert frame["x"] - 1 <= outline["x"]
    assert outline["x"] + outline["width"] <= frame["x"] + frame["width"] + 1
    assert outline["width"] >= 0.3 * frame["width"] or outline["height"] >= 0.3 * frame["height"]
    page.screenshot(path=str(artifacts_dir() / "zoom-detector-box.png"))
    page.click("#zoom-frame")  # the whole image
    page.wait_for_selector("#zoom[data-mode=whole]")
    page.keyboard.press("z")
    page.wait_for_selector("#zoom", state="hidden")

    # u undoes an unsure mark like any other annotation: the image comes back.
    page.keyboard.press("f")
    page.wait_for_selector("#unsure-note:focus")
    again = str(page.get_attribute("#current", "data-item-id"))
    page.keyboard.press("Enter")
    moved_on(page, again)
    page.keyboard.press("u")
    assert current(page) == again
    delivered(page)
    assert not errors
    context.close()


def test_axe_finds_no_violation_and_every_button_fits_a_phone(browser, stack):
    gateway, _ = stack
    assert AXE.exists(), "axe-core is missing: run make install"
    # Only here may the test inject axe's script, which the page's CSP would refuse.
    context = browser.new_context(viewport={"width": 1366, "height": 850}, bypass_csp=True)
    page = context.new_page()
    start(page, gateway.url)
    page.wait_for_function("() => document.getElementById('f1') !== null")
    assert axe_violations(page) == []
    page.keyboard.press("f")  # the note box open
    page.wait_for_selector("#unsure-note:focus")
    assert axe_violations(page) == []
    page.keyboard.press("Escape")
    page.keyboard.press("h")  # the guidelines open
    page.wait_for_selector("#guide:not([hidden])")
    page.wait_for_function("() => document.querySelector('#guide-examples img') !== null")
    assert axe_violations(page) == []
    page.keyboard.press("h")

    page.set_viewport_size({"width": 390, "height": 844})
    page.wait_for_timeout(200)
    outside = page.evaluate("""() => [...document.querySelectorAll('button')]
        .filter((b) => b.offsetParent !== null)
        .map((b) => [b.id || b.textContent.trim(), b.getBoundingClientRect()])
        .filter(([, r]) => r.left < 0 || r.right > window.innerWidth || r.width === 0)
        .map(([name, r]) => `${name}: ${Math.round(r.left)}..${Math.round(r.right)}`)""")
    assert outside == []
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 390
    visible = page.evaluate("""() => [...document.querySelectorAll('.controls button')]
        .map((b) => b.id)""")
    assert set(visible) >= {"btn-yes", "btn-no", "btn-skip", "btn-unsure", "btn-zoom",
                            "btn-undo"}
    assert axe_violations(page) == []
    page.screenshot(path=str(artifacts_dir() / "gateway-phone.png"), full_page=True)
    context.close()


