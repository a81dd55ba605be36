"""Two tasks in Debian's chromium: two annotators, each on their own task's page
(/t/bicycle/ and /t/hydrant/, one trainer, one set of street tiles), label at once; each
page shows its own task's question and its own live score, and each task's export holds
only its own annotator's labels. Then an admin adds a third task on the tasks page and
annotates it at its address, and axe-core finds nothing on either page."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import grpc
import pytest

from hitl.v1 import trainer_pb2, trainer_pb2_grpc
from tests.gateway.conftest import Gateway, Manifest, TrainerProcess, artifacts_dir
from tests.gateway.test_browser_annotators import axe_violations, current, moved_on
from tests.support import tiles_by_class

pytestmark = pytest.mark.browser

PER_CLASS = {"Bicycle": 40, "Hydrant": 40, "Car": 40, "Crosswalk": 30, "Bus": 20}
TASKS_FILE = """
default = "bicycle"

[[task]]
name = "bicycle"
display_name = "Bicycle"

[[task]]
name = "hydrant"
display_name = "Fire hydrant"
question = "Is there a fire hydrant in this image?"
positive_class = "source_class=Hydrant"
guidelines = "Answer yes for any fire hydrant, whatever its colour."
"""
POSITIVE = {"bicycle": "Bicycle", "hydrant": "Hydrant", "crosswalk": "Crosswalk"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory, feature_addr: str
          ) -> Iterator[tuple[Gateway, TrainerProcess, dict[str, str]]]:
    folder = tmp_path_factory.mktemp("tasks")
    classes = tiles_by_class(folder / "tiles.csv", PER_CLASS)
    (folder / "tasks.toml").write_text(TASKS_FILE)
    trainer = TrainerProcess(folder, feature_addr, Manifest(folder / "tiles.csv"), {
        "TRAINER_TASKS_FILE": str(folder / "tasks.toml"), "TRAINER_MIN_PER_CLASS": "3"}).start()
    wait_serving(trainer, "hydrant")
    gateway = Gateway(folder / "gateway.log", trainer.addr, feature_addr).start()
    yield gateway, trainer, classes
    gateway.stop()
    trainer.stop()


def wait_serving(trainer: TrainerProcess, task: str, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(trainer.addr) as channel:
        stub = trainer_pb2_grpc.TrainerServiceStub(channel)
        while time.monotonic() < deadline:
            tasks = stub.ListTasks(trainer_pb2.ListTasksRequest(), timeout=5).tasks
            if any(t.name == task and t.state == "serving" for t in tasks):
                status = stub.GetStatus(trainer_pb2.GetStatusRequest(task=task), timeout=5)
                if status.status.extraction.pending == 0:
                    return
            time.sleep(0.3)
    raise TimeoutError(f"task {task} not serving after {timeout}s")


def open_task(browser, url: str, task: str, annotator: str):  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport={"width": 1366, "height": 850}, bypass_csp=True)
    page = context.new_page()
    page.goto(f"{url}/t/{task}/")
    page.fill("#name-input", annotator)
    page.click("#name-form button[type=submit]")
    page.wait_for_selector("#thumbs li.focused")
    page.wait_for_selector("#connection[data-state=up]")
    return context, page


def answer(page, task: str, classes: dict[str, str]) -> str:  # type: ignore[no-untyped-def]
    """The true answer to the image on screen, by key; returns the key."""
    item_id = current(page)
    key = "b" if classes[item_id] == POSITIVE[task] else "n"
    page.keyboard.press(key)
    moved_on(page, item_id)
    return key


def own_status(page) -> dict:  # type: ignore[no-untyped-def]
    """The status the page's own task gives (the page's relative call)."""
    return json.loads(page.evaluate(
        "async () => JSON.stringify(await (await fetch('api/status')).json())"))


def shown_score_is_own(page) -> bool:  # type: ignore[no-untyped-def]
    status = own_status(page)
    estimate = (status.get("model") or {}).get("estimate")
    return estimate is not None and page.inner_text("#f1") == f"{estimate['f1']:.2f}"


def exported_annotators(trainer: TrainerProcess, task: str) -> set[str]:
    with grpc.insecure_channel(trainer.addr) as channel:
        stub = trainer_pb2_grpc.TrainerServiceStub(channel)
        return {a.annotator for batch in stub.ExportLabels(trainer_pb2.ExportLabelsRequest(
            task=task, include_skipped=True), timeout=10) for a in batch.annotations}


def test_two_annotators_on_two_tasks_each_see_their_own_tasks_score(browser, stack):
    gateway, trainer, classes = stack
    bicycle_ctx, bicycle = open_task(browser, gateway.url, "bicycle", "ann-bicycle")
    hydrant_ctx, hydrant = open_task(browser, gateway.url, "hydrant", "ann-hydrant")
    pages = {"bicycle": bicycle, "hydrant": hydrant}
    assert bicycle.inner_text("#question") == "Does this image show a bicycle?"
    assert hydrant.inner_text("#question") == "Is there a fire hydrant in this image?"
    assert bicycle.input_value("#task-picker") == "bicycle"
    assert hydrant.input_value("#task-picker") == "hydrant"

    # Both label at once, each answering their own question, until each has given enough
    # of both answers for a model; then each page shows a live score.
    given: dict[str, list[str]] = {task: [] for task in pages}

    def short_of_both(task: str) -> bool:
        yes = sum(1 for key in given[task] if key == "b")
        return min(yes, len(given[task]) - yes) < 6  # some may be checks, which never train

    while any(short_of_both(task) for task in pages):
        for task in [t for t in pages if short_of_both(t)]:
            given[task].append(answer(pages[task], task, classes))
            assert len(given[task]) < 150, f"{task}: too few of one answer among 150"
    for page in pages.values():
        page.wait_for_function("() => document.getElementById('f1').textContent !== '–'",
                               timeout=120000)
    for page in pages.values():
        page.wait_for_function("() => document.getElementById('pending').dataset.count === '0'",
                               timeout=30000)
    # Each page's score is its own task's (once the stream has caught up with the last
    # model), and the two tasks' models are different ones.
    deadline = time.monotonic() + 60
    while not all(shown_score_is_own(page) for page in pages.values()):
        assert time.monotonic() < deadline, "a page's score is not its task's"
        time.sleep(0.5)
    assert {task: own_status(page)["task"] for task, page in pages.items()} == {
        "bicycle": "bicycle", "hydrant": "hydrant"}
    assert exported_annotators(trainer, "bicycle") == {"ann-bicycle"}
    assert exported_annotators(trainer, "hydrant") == {"ann-hydrant"}
    # The hydrant page's guidelines are its task's own.
    hydrant.keyboard.press("h")
    hydrant.wait_for_selector("#guide:not([hidden])")
    hydrant.wait_for_function("() => document.getElementById('guide-text').textContent"
                              ".includes('whatever its colour')")
    assert axe_violations(hydrant) == []
    hydrant.keyboard.press("h")
    hydrant.screenshot(path=str(artifacts_dir() / "gateway-task-hydrant.png"))
    bicycle_ctx.close()
    hydrant_ctx.close()


def test_an_admin_adds_a_task_on_the_tasks_page_and_annotates_it_at_its_address(
        browser, stack):
    gateway, _, classes = stack
    context, page = open_task(browser, gateway.url, "bicycle", "admin-on-tasks")
    page.goto(f"{gateway.url}/tasks")
    page.wait_for_selector("li.task[data-task=hydrant]")
    page.wait_for_selector("#add:not([hidden])")
    assert axe_violations(page) == []
    page.fill("#f-name", "crosswalk")
    page.fill("#f-display", "Crosswalk")
    page.fill("#f-positive", "source_class=Crosswalk")
    page.click("#add-form button[type=submit]")
    page.wait_for_selector("li.task[data-task=crosswalk] a.task-name", timeout=120000)
    assert "/t/crosswalk/" in page.inner_text("#add-status")
    assert axe_violations(page) == []
    page.screenshot(path=str(artifacts_dir() / "gateway-tasks.png"), full_page=True)

    page.click("li.task[data-task=crosswalk] a.task-name")
    page.wait_for_url(f"{gateway.url}/t/crosswalk/")
    page.wait_for_function("() => document.getElementById('question').textContent"
                           " === 'Does this image show a crosswalk?'")
    page.wait_for_selector("#thumbs li.focused")
    answer(page, "crosswalk", classes)
    assert page.input_value("#task-picker") == "crosswalk"
    assert axe_violations(page) == []

    # Archived, it leaves the list everyone sees; its label stays with it.
    page.goto(f"{gateway.url}/tasks")
    page.click("li.task[data-task=crosswalk] button")
    page.wait_for_selector("li.task[data-task=crosswalk][data-archived=true]")
    listed = page.evaluate("async () => (await (await fetch('/api/tasks')).json()).tasks"
                           ".map((t) => [t.name, t.archived])")
    assert ["crosswalk", True] in listed
    context.close()
