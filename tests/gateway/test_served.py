"""Answers bound to what was served, against a real trainer: an annotator answers only the
items served to them, a known answer is told only for a check that annotator was served,
evaluation items are never labelled, a refusal says nothing about the item, an annotation
id belongs to its annotator, and an admin's bulk labels come through their own audited
route and count like any other."""

from __future__ import annotations

import uuid
from typing import Any

import grpc

from hitl.v1 import trainer_pb2, trainer_pb2_grpc
from tests.gateway.conftest import Manifest, TrainerProcess, split_ids
from tests.gateway.helpers import CSRF, client, config, error_of

# Names of their own, so that what other tests leased to alice or bob does not count here.
TOKENS = {"dora": "dora-token-0123456789ab", "eve": "eve-token-0123456789abc",
          "fay": "fay-token-0123456789abc"}


def _config(trainer: TrainerProcess, feature_addr: str):  # type: ignore[no-untyped-def]
    return config(trainer_addr=trainer.addr, feature_addr=feature_addr,
                  annotator_tokens=tuple(TOKENS.items()), admins=("fay",),
                  session_secret="s" * 40)


def bearer(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[name]}", **CSRF}


async def lease(c, name: str, n: int) -> list[dict]:  # type: ignore[no-untyped-def]
    r = await c.get(f"/api/items/next?n={n}", headers=bearer(name))
    assert r.status == 200, await r.text()
    return list((await r.json())["items"])


async def annotate(c, name: str, item_id: str, label: str = "positive",  # type: ignore[no-untyped-def]
                   annotation_id: str | None = None):
    return await c.post("/api/annotations", headers=bearer(name), json={
        "id": annotation_id or uuid.uuid4().hex, "item_id": item_id, "label": label})


def exported(trainer: TrainerProcess) -> list[trainer_pb2.Annotation]:
    with grpc.insecure_channel(trainer.addr) as channel:
        stub = trainer_pb2_grpc.TrainerServiceStub(channel)
        return [a for batch in stub.ExportLabels(trainer_pb2.ExportLabelsRequest(
            include_undone=True, include_skipped=True), timeout=10) for a in batch.annotations]


async def test_an_annotator_answers_only_what_was_served_to_them(
        trainer: TrainerProcess, feature_addr, manifest: Manifest):
    """Seen failing before answers were bound to leases: every one of these was accepted,
    and the unserved check came back with its known label."""
    gold, evaluation = split_ids(manifest, "VALIDATION"), split_ids(manifest, "EVALUATION")
    async with client(_config(trainer, feature_addr)) as c:
        dora = await lease(c, "dora", 3)
        served_to_eve = {i["id"] for i in await lease(c, "eve", 5)}
        unserved_check = sorted(gold - served_to_eve)[0]
        attempts = {"another's leased item": dora[0]["id"],
                    "a check never served": unserved_check,
                    "an evaluation item": sorted(evaluation)[0],
                    "an unknown item": "no-such-item"}
        refusals: dict[str, dict[str, Any]] = {}
        for what, item_id in attempts.items():
            r = await annotate(c, "eve", item_id, "positive")
            assert r.status == 403, (what, r.status, await r.text())
            refusals[what] = await error_of(r)
            text = (await r.text()).lower()
            assert item_id.lower() not in text and "known" not in text, (what, text)
        # One answer for all of them: nothing tells a check, an evaluation item, another's
        # item or a missing one apart.
        assert len({(e["code"], e["message"]) for e in refusals.values()}) == 1, refusals
        assert not [a for a in exported(trainer) if a.annotator == "eve"]

        # The annotator it was served to answers it as usual.
        mine = await annotate(c, "dora", dora[0]["id"], "negative")
        assert mine.status == 201, await mine.text()


async def test_an_annotation_id_belongs_to_its_annotator(trainer: TrainerProcess,
                                                          feature_addr):
    """Seen failing before: the second annotator got 200 `duplicate` and the first one's
    record (name, label, time) while their own label was dropped."""
    async with client(_config(trainer, feature_addr)) as c:
        (dora_item,) = await lease(c, "dora", 1)
        (eve_item,) = await lease(c, "eve", 1)
        shared_id = uuid.uuid4().hex
        first = await annotate(c, "dora", dora_item["id"], "positive", shared_id)
        assert first.status == 201
        reuse = await annotate(c, "eve", eve_item["id"], "negative", shared_id)
        assert reuse.status == 409, await reuse.text()
        text = await reuse.text()
        assert "dora" not in text and dora_item["id"] not in text and "positive" not in text
        # The owner's retry is still the idempotent duplicate it always was.
        again = await annotate(c, "dora", dora_item["id"], "positive", shared_id)
        assert again.status == 200 and (await again.json())["duplicate"] is True
        # And the other annotator's label goes through under an id of their own.
        assert (await annotate(c, "eve", eve_item["id"], "negative")).status == 201


async def test_an_admin_imports_labels_through_an_audited_route(trainer: TrainerProcess,
                                                                 feature_addr,
                                                                 manifest: Manifest):
    """Bulk labels for items nobody was served: admins only, each recorded under the
    admin's name with the strategy `imported`, trained on and counted like any other."""
    closed = split_ids(manifest, "VALIDATION") | split_ids(manifest, "EVALUATION")
    answered = {a.item_id for a in exported(trainer)}
    pool = sorted(set(manifest.labels) - closed - answered)[-3:]
    rows = [{"id": f"import-{uuid.uuid4().hex[:12]}", "item_id": item_id,
             "label": "positive" if manifest.labels[item_id] else "negative"}
            for item_id in pool]
    refused_rows = [{"item_id": sorted(split_ids(manifest, "EVALUATION"))[0],
                     "label": "positive"},
                    {"item_id": "no-such-item", "label": "negative"}]
    async with client(_config(trainer, feature_addr)) as c:
        before = (await (await c.get("/api/status", headers=bearer("fay"))).json())["counts"]
        denied = await c.post("/api/labels/import", headers=bearer("dora"),
                              json={"labels": rows})
        assert denied.status == 403 and (await error_of(denied))["code"] == "admin_only"
        r = await c.post("/api/labels/import", headers=bearer("fay"),
                         json={"labels": rows + refused_rows})
        assert r.status == 200, await r.text()
        body = await r.json()
        assert body["recorded"] == 3 and body["duplicates"] == 0
        assert [row["index"] for row in body["refused"]] == [3, 4]
        again = await (await c.post("/api/labels/import", headers=bearer("fay"),
                                    json={"labels": rows})).json()
        assert again["recorded"] == 0 and again["duplicates"] == 3
        after = (await (await c.get("/api/status", headers=bearer("fay"))).json())["counts"]
    recorded = {a.item_id: a for a in exported(trainer) if a.annotation_id.startswith("import-")}
    assert set(pool) <= set(recorded)
    assert {(a.annotator, a.strategy) for i, a in recorded.items() if i in pool} == {
        ("fay", trainer_pb2.STRATEGY_IMPORTED)}
    given = sum(after[k] - before[k] for k in ("labelled_positive", "labelled_negative"))
    assert given == 3
