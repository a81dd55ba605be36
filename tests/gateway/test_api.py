"""The JSON API against real trainer and feature services (lite extractor, street tiles)."""

from __future__ import annotations

import asyncio
import json
import uuid

import grpc
import pytest

from hitl.channels import open_channel
from hitl.v1 import trainer_pb2, trainer_pb2_grpc
from tests.gateway.conftest import MARKUP_ID, Manifest, TrainerProcess, gold_ids
from tests.gateway.helpers import CSRF, client, config, error_of, sign_in
from tests.support import free_port


async def _annotate(c, item_id: str, label: str, annotation_id: str | None = None):
    return await c.post("/api/annotations", headers=CSRF, json={
        "id": annotation_id or uuid.uuid4().hex, "item_id": item_id, "label": label,
        "duration_ms": 850})


async def test_status_names_the_task_and_reports_the_dataset(trainer: TrainerProcess, feature_addr):
    async with client(config(trainer_addr=trainer.addr, feature_addr=feature_addr)) as c:
        r = await c.get("/api/status")
        assert r.status == 200
        body = await r.json()
    assert body["display_name"] == "Bicycle"
    assert body["target_f1"] == pytest.approx(0.85)
    assert body["counts"]["items"] == 300
    assert body["loading"]["state"] in ("loading", "ready")
    assert body["extractor"]["name"] == "lite"
    assert r.headers["Cache-Control"] == "no-store"


async def test_items_are_leased_to_the_named_annotator_with_local_image_urls(
        trainer: TrainerProcess, feature_addr):
    async with client(config(trainer_addr=trainer.addr, feature_addr=feature_addr)) as c:
        r = await c.get("/api/items/next?n=5")
        assert r.status == 409 and (await error_of(r))["code"] == "no_annotator"
        await sign_in(c, "lease-tester")
        first = (await (await c.get("/api/items/next?n=5")).json())["items"]
        assert 1 <= len(first) <= 5
        for item in first:
            assert "strategy" not in item  # checks are blind (test_identity.py)
            assert item["remote"] is False
            assert item["image_url"].startswith("/api/items/")
        held = "&".join(f"held={i['id']}" for i in first)
        more = (await (await c.get(f"/api/items/next?n=5&{held}")).json())["items"]
        assert not {i["id"] for i in first} & {i["id"] for i in more}
        assert (await c.get("/api/items/next?n=0")).status == 400
        assert (await c.get("/api/items/next?n=51")).status == 400


async def test_local_images_are_served_by_id_with_caching_headers(trainer: TrainerProcess,
                                                                  feature_addr):
    async with client(config(trainer_addr=trainer.addr, feature_addr=feature_addr)) as c:
        await sign_in(c)
        item = (await (await c.get("/api/items/next?n=1")).json())["items"][0]
        full = await c.get(item["image_url"])
        assert full.status == 200 and full.content_type == "image/jpeg"
        data = await full.read()
        assert data[:2] == b"\xff\xd8"
        assert "max-age" in full.headers["Cache-Control"]
        again = await c.get(item["image_url"], headers={"If-None-Match": full.headers["ETag"]})
        assert again.status == 304
        thumb = await c.get(item["thumbnail_url"])
        assert thumb.status == 200 and thumb.content_type.startswith("image/")
        missing = await c.get("/api/items/no-such-item/image")
        assert missing.status == 404 and (await error_of(missing))["code"] == "not_found"
        # The markup id travels URL-encoded and comes back as plain JSON text.
        markup = await c.get("/api/items/%3Cimg%20src%3Dx%20onerror%3D%22window.__xss%3D1%22%3Etile"
                             "/thumbnail")
        assert markup.status == 200 and markup.content_type.startswith("image/")


async def test_annotation_is_idempotent_by_client_id_and_can_be_undone(
        trainer: TrainerProcess, feature_addr):
    async with client(config(trainer_addr=trainer.addr, feature_addr=feature_addr)) as c:
        await sign_in(c, "idempotent")
        item = (await (await c.get("/api/items/next?n=1")).json())["items"][0]
        annotation_id = uuid.uuid4().hex
        first = await _annotate(c, item["id"], "positive", annotation_id)
        assert first.status == 201, await first.text()
        body = await first.json()
        assert body["duplicate"] is False
        assert body["annotation"]["annotator"] == "idempotent"
        assert body["annotation"]["label"] == "positive"
        retry = await _annotate(c, item["id"], "positive", annotation_id)
        assert retry.status == 200 and (await retry.json())["duplicate"] is True

        exported = await (await c.get("/api/export?format=jsonl")).text()
        rows = [json.loads(line) for line in exported.splitlines()]
        assert [r["id"] for r in rows].count(annotation_id) == 1

        undo = await c.delete(f"/api/annotations/{annotation_id}", headers=CSRF)
        assert undo.status == 200 and (await undo.json())["annotation"]["undone"] is True
        in_force = await (await c.get("/api/export?format=csv")).text()
        assert annotation_id not in in_force
        everything = await (await c.get("/api/export?format=csv&include_undone=true")).text()
        header, *lines = everything.splitlines()
        assert header.startswith("id,item_id,label,annotator")
        assert any(line.startswith(annotation_id) and ",true," in line for line in lines)
        unknown = await c.delete(f"/api/annotations/{uuid.uuid4().hex}", headers=CSRF)
        assert unknown.status == 404


async def test_openimages_export_has_the_official_columns(trainer: TrainerProcess, feature_addr):
    async with client(config(trainer_addr=trainer.addr, feature_addr=feature_addr)) as c:
        await sign_in(c, "openimages")
        item = (await (await c.get("/api/items/next?n=1")).json())["items"][0]
        assert (await _annotate(c, item["id"], "negative")).status == 201
        r = await c.get("/api/export?format=openimages")
        assert r.status == 200
        lines = (await r.text()).splitlines()
    assert lines[0] == "ImageID,Source,LabelName,Confidence"
    assert f"{item['id']},verification,/m/0199g,0" in lines


@pytest.mark.parametrize("body,code", [
    ({"id": "short", "item_id": "x", "label": "positive"}, "invalid_annotation_id"),
    ({"id": uuid.uuid4().hex, "item_id": "x", "label": "maybe"}, "invalid_label"),
    ({"id": uuid.uuid4().hex, "item_id": "../etc/passwd", "label": "positive"},
     "invalid_item_id"),
    ({"id": uuid.uuid4().hex, "item_id": "x", "label": "positive", "duration_ms": -1},
     "invalid_duration"),
    ([1, 2], "invalid_body"),
])
async def test_malformed_annotations_get_a_clear_error(trainer: TrainerProcess, feature_addr,
                                                       body, code):
    async with client(config(trainer_addr=trainer.addr, feature_addr=feature_addr)) as c:
        await sign_in(c)
        r = await c.post("/api/annotations", json=body, headers=CSRF)
        assert r.status == 400
        assert (await error_of(r))["code"] == code
        broken = await c.post("/api/annotations", data=b"{not json", headers={
            **CSRF, "Content-Type": "application/json"})
        assert broken.status == 400 and (await error_of(broken))["code"] == "invalid_json"
        form = await c.post("/api/annotations", data={"id": "x"}, headers=CSRF)
        assert form.status == 415
        unknown_item = await _annotate(c, "no-such-item", "positive")
        assert unknown_item.status == 403  # never served (test_served.py)
        # Still serving after all of that.
        assert (await c.get("/api/status")).status == 200


async def test_live_channel_pushes_the_status_and_then_changes(trainer: TrainerProcess,
                                                               feature_addr,
                                                               manifest: Manifest):
    async with client(config(trainer_addr=trainer.addr, feature_addr=feature_addr)) as c:
        await sign_in(c, "live")
        r = await c.get("/api/events")
        assert r.status == 200 and r.content_type == "text/event-stream"

        async def next_event() -> dict:
            data = None
            while True:
                line = (await r.content.readline()).decode().rstrip("\n")
                if line.startswith("data: "):
                    data = json.loads(line[6:])
                elif line == "" and data is not None:
                    return data

        first = await asyncio.wait_for(next_event(), 10)
        while first["trainer"] != "up":
            first = await asyncio.wait_for(next_event(), 10)
        before = first["status"]["counts"]["labelled_negative"]
        item = (await (await c.get("/api/items/next?n=1")).json())["items"][0]
        assert (await _annotate(c, item["id"], "negative")).status == 201
        # A check is not a training label: it shows as the annotator's own check instead.
        check = item["id"] in gold_ids(manifest)
        while True:
            status = (await asyncio.wait_for(next_event(), 10))["status"]
            if check and "live" in {a["annotator"] for a in status["annotators"]}:
                break
            if not check and status["counts"]["labelled_negative"] != before:
                break
        r.close()


async def test_readiness_reports_the_services(trainer: TrainerProcess, feature_addr):
    async with client(config(trainer_addr=trainer.addr, feature_addr=feature_addr)) as c:
        r = await c.get("/readyz")
        assert r.status == 200
        assert await r.json() == {"status": "ready", "trainer": "serving", "feature": "serving"}
        assert (await c.get("/healthz")).status == 200


async def test_a_missing_trainer_is_a_503_with_a_json_body_and_the_gateway_keeps_serving():
    dead = f"127.0.0.1:{free_port()}"
    async with client(config(trainer_addr=dead, feature_addr=dead, rpc_deadline_s=1.0)) as c:
        await sign_in(c)
        for r in (await c.get("/api/status"), await c.get("/api/items/next"),
                  await _annotate(c, "x", "positive")):
            assert r.status in (503, 504)
            assert (await error_of(r))["code"] in ("unavailable", "deadline_exceeded")
        ready = await c.get("/readyz")
        assert ready.status == 200 and (await ready.json())["trainer"] == "unavailable"
        assert (await c.get("/")).status == 200


async def test_openapi_document_describes_every_api_route():
    async with client(config()) as c:
        r = await c.get("/api/openapi.json")
        assert r.status == 200
        spec = await r.json()
        routes = {(res.canonical, route.method.lower())
                  for res in c.app.router.resources() for route in res
                  if res.canonical.startswith(("/api/", "/healthz", "/readyz"))
                  and route.method != "HEAD"}
    assert spec["openapi"].startswith("3.")
    documented = {(path, method) for path, ops in spec["paths"].items() for method in ops}
    # The document itself, and the page that renders it, are not API operations.
    assert routes - {("/api/openapi.json", "get"), ("/api/docs", "get")} == documented
    import schemathesis  # the fuzzer the API is meant to be checked with must load it

    schema = schemathesis.openapi.from_dict(spec)
    assert len(list(schema.get_all_operations())) == len(documented)


async def test_the_trainer_export_sees_what_the_gateway_recorded(
        trainer: TrainerProcess, feature_addr, manifest: Manifest):
    async with client(config(trainer_addr=trainer.addr, feature_addr=feature_addr)) as c:
        await sign_in(c, "export-check")
        item = (await (await c.get("/api/items/next?n=1")).json())["items"][0]
        annotation_id = uuid.uuid4().hex
        assert (await _annotate(c, item["id"], "positive", annotation_id)).status == 201
    channel = open_channel(trainer.addr, "hitl.v1.TrainerService")
    try:
        stub = trainer_pb2_grpc.TrainerServiceStub(channel)
        found = [a async for batch in stub.ExportLabels(trainer_pb2.ExportLabelsRequest())
                 for a in batch.annotations if a.annotation_id == annotation_id]
    finally:
        await channel.close()
    assert len(found) == 1 and found[0].annotator == "export-check"
    assert MARKUP_ID in manifest.labels
    assert grpc is not None


async def test_skip_and_unsure_are_recorded_and_exported_only_on_request(
        trainer: TrainerProcess, feature_addr):
    async with client(config(trainer_addr=trainer.addr, feature_addr=feature_addr)) as c:
        await sign_in(c, "passer")
        first, second = (await (await c.get("/api/items/next?n=2")).json())["items"]
        skip_id, unsure_id = uuid.uuid4().hex, uuid.uuid4().hex
        skipped = await _annotate(c, first["id"], "skip", skip_id)
        assert skipped.status == 201
        assert (await skipped.json())["annotation"]["label"] == "skip"
        unsure = await c.post("/api/annotations", headers=CSRF, json={
            "id": unsure_id, "item_id": second["id"], "label": "unsure",
            "note": "half hidden behind a car"})
        assert unsure.status == 201
        assert (await unsure.json())["annotation"]["note"] == "half hidden behind a car"
        # Idempotent by id, like every annotation.
        assert (await (await _annotate(c, first["id"], "skip", skip_id)).json())["duplicate"]

        default = await (await c.get("/api/export?format=jsonl")).text()
        assert skip_id not in default and unsure_id not in default
        rows = [json.loads(line) for line in (await (await c.get(
            "/api/export?format=jsonl&include_skipped=true")).text()).splitlines()]
        by_id = {r["id"]: r for r in rows}
        assert by_id[skip_id]["label"] == "skip" and by_id[skip_id]["annotator"] == "passer"
        assert (by_id[unsure_id]["label"], by_id[unsure_id]["note"]) == (
            "unsure", "half hidden behind a car")
        table = await (await c.get("/api/export?format=csv&include_skipped=1")).text()
        header, *lines = table.splitlines()
        assert header.endswith(",split,note")
        assert any(line.startswith(unsure_id) and line.endswith(",half hidden behind a car")
                   for line in lines)
        openimages = await (await c.get("/api/export?format=openimages&include_skipped=true")
                            ).text()
        assert first["id"] not in openimages  # a pass is no label

        status = await (await c.get("/api/status")).json()
        assert status["counts"]["skipped"] >= 1 and status["counts"]["unsure"] >= 1
        mine = next(a for a in status["annotators"] if a["annotator"] == "passer")
        assert (mine["skipped"], mine["unsure"], mine["self_kappa"]) == (1, 1, None)

        # Undone like any annotation: the skip is withdrawn from the export.
        assert (await c.delete(f"/api/annotations/{skip_id}", headers=CSRF)).status == 200
        after = await (await c.get("/api/export?format=jsonl&include_skipped=true")).text()
        assert skip_id not in after and unsure_id in after


@pytest.mark.parametrize("note", ["x" * 201, "two\nlines", 42])
async def test_a_bad_note_is_refused(trainer: TrainerProcess, feature_addr, note):
    async with client(config(trainer_addr=trainer.addr, feature_addr=feature_addr)) as c:
        await sign_in(c)
        r = await c.post("/api/annotations", headers=CSRF, json={
            "id": uuid.uuid4().hex, "item_id": "x", "label": "unsure", "note": note})
        assert r.status == 400 and (await error_of(r))["code"] == "invalid_note"


async def test_guidelines_come_from_configuration_with_example_images(tmp_path):
    from tests.support import PHOTOS, require_data

    photo = require_data(PHOTOS) / "dog.jpg"  # a dog in front of a bicycle
    text = tmp_path / "guidelines.txt"
    text.write_text("Count a bicycle even when only part of it shows.\n\n- parked: yes\n")
    cfg = config(guidelines_file=str(text), guidelines_examples=(
        f"{photo}|Yes: a bicycle behind a dog", "https://img.example/moto.jpg|No: a motorcycle"))
    async with client(cfg) as c:
        body = await (await c.get("/api/guidelines")).json()
        assert body["text"].startswith("Count a bicycle") and "- parked: yes" in body["text"]
        local, remote = body["examples"]
        assert local == {"url": "/api/guidelines/examples/0",
                         "caption": "Yes: a bicycle behind a dog"}
        assert remote["url"] == "https://img.example/moto.jpg"
        image = await c.get(local["url"])
        assert image.status == 200 and image.content_type == "image/jpeg"
        assert await image.read() == photo.read_bytes()
        for missing in ("1", "7", "-1", "x"):  # remote, out of range, not an index
            assert (await c.get(f"/api/guidelines/examples/{missing}")).status == 404
    async with client(config()) as c:
        assert await (await c.get("/api/guidelines")).json() == {"text": "", "examples": []}


def test_guideline_settings_fail_fast_with_the_variable_named(tmp_path):
    from annotation_gateway.config import Config
    from hitl.config import ConfigError, load

    with pytest.raises(ConfigError, match="GATEWAY_GUIDELINES_FILE"):
        load(Config, {"GATEWAY_GUIDELINES_FILE": str(tmp_path / "absent.txt")})
    with pytest.raises(ConfigError, match="GATEWAY_GUIDELINES_EXAMPLES"):
        load(Config, {"GATEWAY_GUIDELINES_EXAMPLES": str(tmp_path / "absent.jpg")})
    with pytest.raises(ConfigError, match="not both"):
        (tmp_path / "g.txt").write_text("x")
        load(Config, {"GATEWAY_GUIDELINES": "x",
                      "GATEWAY_GUIDELINES_FILE": str(tmp_path / "g.txt")})
