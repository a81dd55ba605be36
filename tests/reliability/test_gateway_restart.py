"""The gateway process is killed under a page in Debian's chromium and started again on
the same port: the page notices, keeps taking labels into its queue, reconnects by
itself (no reload) and delivers every queued label exactly once."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hitl.v1 import trainer_pb2, trainer_pb2_grpc
from tests.reliability import report
from tests.reliability import stack as rs

pytestmark = pytest.mark.browser

ANNOTATOR = "restart-tester"
BEFORE, WHILE_DOWN = 3, 4


@pytest.fixture
def own_trainer(tmp_path, shared_feature, tiles) -> Iterator:  # type: ignore[no-untyped-def]
    """A trainer of its own: the shared one's small pool may be leased out by the tests
    that ran before (fuzzers lease items under many annotator names)."""
    service = rs.trainer_service(tmp_path, shared_feature.address, tiles)
    rs.start(service)
    rs.wait_status(service.address, rs.embedded, what="pool embedded")
    yield service
    service.stop()


def _label(page) -> str:  # type: ignore[no-untyped-def]
    page.wait_for_function(
        "() => document.getElementById('current').dataset.empty === 'false'", timeout=20000)
    item_id = str(page.get_attribute("#current", "data-item-id"))
    page.keyboard.press("n")
    page.wait_for_function(
        "id => document.getElementById('current').dataset.itemId !== id", arg=item_id)
    return item_id


def _pending(page) -> int:  # type: ignore[no-untyped-def]
    return int(page.get_attribute("#pending", "data-count") or 0)


def test_the_page_reconnects_by_itself_after_a_gateway_restart(
        browser, tmp_path, own_trainer, shared_feature):
    gateway = rs.gateway_service(tmp_path, own_trainer.address, shared_feature.address)
    rs.start(gateway)
    base = f"http://127.0.0.1:{gateway.port}"
    context = browser.new_context()
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto(base + "/")
        page.fill("#name-input", ANNOTATOR)
        page.click("#name-form button[type=submit]")
        page.wait_for_selector("#connection[data-state=up]", timeout=30000)
        labelled = [_label(page) for _ in range(BEFORE)]
        page.wait_for_function("() => document.getElementById('pending').dataset.count === '0'",
                               timeout=30000)

        rs.kill(gateway)
        page.wait_for_selector("#connection:not([data-state=up])", timeout=30000)
        labelled += [_label(page) for _ in range(WHILE_DOWN)]
        page.wait_for_function(
            f"() => Number(document.getElementById('pending').dataset.count) >= {WHILE_DOWN}",
            timeout=30000)
        queued = _pending(page)

        rs.start(gateway)  # same port; the page is not reloaded
        page.wait_for_selector("#connection[data-state=up]", timeout=60000)
        page.wait_for_function("() => document.getElementById('pending').dataset.count === '0'",
                               timeout=60000)
        # Still usable after the reconnect.
        labelled.append(_label(page))
        page.wait_for_function("() => document.getElementById('pending').dataset.count === '0'",
                               timeout=30000)
    finally:
        context.close()
        gateway.stop()

    with rs.channel(own_trainer.address) as channel:
        stub = trainer_pb2_grpc.TrainerServiceStub(channel)
        mine = [a for batch in stub.ExportLabels(trainer_pb2.ExportLabelsRequest(
                    include_undone=True), timeout=10)
                for a in batch.annotations if a.annotator == ANNOTATOR]
    items = [a.item_id for a in mine]
    report.fault(report.FaultRun("gateway SIGKILL under a browser page", 1, len(labelled),
                                 len(items), sum(items.count(i) == 1 for i in labelled),
                                 sum(i not in items for i in labelled),
                                 sum(items.count(i) > 1 for i in labelled)))
    assert queued == WHILE_DOWN
    assert sorted(items) == sorted(labelled)
    assert len({a.annotation_id for a in mine}) == len(mine)
    assert errors == []
