"""The gateway's plain modules: id checks, conversions and export formats."""

from __future__ import annotations

import csv
import io

import pytest

from annotation_gateway import convert, export, validation
from annotation_gateway.errors import ApiError
from hitl.v1 import common_pb2, trainer_pb2


@pytest.mark.parametrize("item_id", ["a1b2", "street/0001.jpg", "<b>x</b>", "ok..name", ".hidden"])
def test_item_ids_that_are_accepted(item_id):
    assert validation.item_id(item_id) == item_id


@pytest.mark.parametrize("item_id", ["", "..", "../etc/passwd", "a/../../b", "/etc/passwd",
                                     "a\\b", "a/./b", "nul\x00", "x" * 257])
def test_item_ids_that_look_like_paths_are_refused(item_id):
    with pytest.raises(ApiError) as err:
        validation.item_id(item_id)
    assert err.value.status == 400


def test_a_gold_item_reads_exactly_like_any_other():
    gold = convert.item(trainer_pb2.Item(id="g1", strategy=trainer_pb2.STRATEGY_GOLD,
                                         known_label=common_pb2.LABEL_POSITIVE))
    uncertain = convert.item(trainer_pb2.Item(id="g1", strategy=trainer_pb2.STRATEGY_UNCERTAIN,
                                              score=0.51, model_version="m7"))
    assert gold == uncertain
    assert set(gold) == {"id", "image_url", "thumbnail_url", "remote", "lease_expire_time",
                         "detector"}
    assert gold["image_url"] == "/api/items/g1/image"
    assert gold["thumbnail_url"] == "/api/items/g1/thumbnail"


def test_an_annotator_sees_their_annotation_without_why_the_item_was_served():
    recorded = trainer_pb2.Annotation(annotation_id="a1", item_id="g1",
                                      label=common_pb2.LABEL_NEGATIVE, annotator="ann",
                                      strategy=trainer_pb2.STRATEGY_AUDIT,
                                      split=trainer_pb2.SPLIT_VALIDATION, model_version="m7")
    own = convert.own_annotation(recorded)
    assert own["label"] == "negative" and own["annotator"] == "ann"
    assert not {"strategy", "split", "model_version"} & set(own)
    assert convert.annotation(recorded)["split"] == "validation"  # the export keeps it


def test_remote_items_keep_their_urls_and_local_ids_are_url_encoded():
    remote = convert.item(trainer_pb2.Item(id="r", image_url="https://img.example/r.jpg"))
    assert remote["remote"] and remote["thumbnail_url"] == "https://img.example/r.jpg"
    local = convert.item(trainer_pb2.Item(id="dir/a b?.jpg"))
    assert local["image_url"] == "/api/items/dir%2Fa%20b%3F.jpg/image"


def _annotation(aid, item, label, undone=False):
    return {"id": aid, "item_id": item, "label": label, "annotator": "a", "strategy": "random",
            "model_version": "", "duration_ms": 5, "create_time": None, "undone": undone,
            "split": "pool", "note": ""}


def test_openimages_export_keeps_the_latest_annotation_in_force_per_item():
    rows = [_annotation("1", "img1", "positive"), _annotation("2", "img2", "negative"),
            _annotation("3", "img1", "negative"), _annotation("4", "img3", "positive", True)]
    table = list(csv.reader(io.StringIO(export.openimages_rows(rows, "/m/0199g"))))
    assert table == [["ImageID", "Source", "LabelName", "Confidence"],
                     ["img2", "verification", "/m/0199g", "0"],
                     ["img1", "verification", "/m/0199g", "0"]]


def test_csv_export_defuses_spreadsheet_formulas():
    row = _annotation("1", "=HYPERLINK(\"http://evil\")", "positive")
    row["annotator"] = "@SUM(A1)"
    parsed = next(csv.reader(io.StringIO(export.csv_row(row))))
    assert parsed[1] == "'=HYPERLINK(\"http://evil\")" and parsed[3] == "'@SUM(A1)"
    table = list(csv.reader(io.StringIO(export.openimages_rows([row], "/m/0199g"))))
    assert table[1][0].startswith("'=")


def test_csv_export_quotes_awkward_values():
    line = export.csv_row(_annotation("1", 'has,comma "and quotes"', "positive"))
    parsed = next(csv.reader(io.StringIO(line)))
    assert parsed[1] == 'has,comma "and quotes"' and parsed[8] == "false"


def test_a_recheck_reads_like_any_item_and_items_carry_the_detectors_box():
    item = trainer_pb2.Item(id="r1", strategy=trainer_pb2.STRATEGY_RECHECK)
    assert "strategy" not in convert.item(item) and convert.item(item)["detector"] is None
    review = trainer_pb2.Item(id="v1", strategy=trainer_pb2.STRATEGY_REVIEW)
    review.evidence.score = 0.83
    review.evidence.box.x1, review.evidence.box.y1 = 0.1, 0.2
    review.evidence.box.x2, review.evidence.box.y2 = 0.5, 0.9
    body = convert.item(review)
    assert "strategy" not in body
    assert body["detector"] == {"score": 0.83, "box": [0.1, 0.2, 0.5, 0.9]}
    # The export says what it was, though.
    record = trainer_pb2.Annotation(annotation_id="a", strategy=trainer_pb2.STRATEGY_RECHECK,
                                    label=common_pb2.LABEL_UNSURE, note="dark")
    assert (convert.annotation(record)["strategy"], convert.annotation(record)["label"],
            convert.annotation(record)["note"]) == ("recheck", "unsure", "dark")


def test_status_annotators_have_null_kappas_until_defined():
    status = trainer_pb2.Status()
    status.counts.corrected = 3
    status.annotators.add(annotator="ann", rechecks=4, recheck_agreements=3, self_kappa=0.5)
    status.annotators.add(annotator="bob")
    body = convert.status(status)
    assert body["counts"]["corrected"] == 3
    ann, bob = body["annotators"]
    assert (ann["self_kappa"], ann["gold_kappa"], ann["recheck_agreements"]) == (0.5, None, 3)
    assert bob["self_kappa"] is None


def test_openimages_export_follows_the_majority_and_leaves_ties_out():
    def by(aid, item, label, annotator, strategy="random"):
        return {**_annotation(aid, item, label), "annotator": annotator, "strategy": strategy}

    rows = [by("1", "a", "positive", "ann"), by("2", "a", "negative", "bob", "review"),
            by("3", "b", "positive", "ann"), by("4", "b", "negative", "bob", "review"),
            by("5", "b", "negative", "cat", "review"),
            by("6", "c", "negative", "ann"), by("7", "c", "positive", "ann", "recheck"),
            by("8", "d", "skip", "ann")]
    table = list(csv.reader(io.StringIO(export.openimages_rows(rows, "/m/0199g"))))
    assert table[1:] == [["b", "verification", "/m/0199g", "0"],
                         ["c", "verification", "/m/0199g", "0"]]


@pytest.mark.parametrize("note,ok", [(None, ""), ("  half hidden ", "half hidden"),
                                     ("é" * 200, "é" * 200)])
def test_notes_that_are_accepted(note, ok):
    assert validation.note(note) == ok


def test_metrics_a_split_cannot_measure_are_null_not_zero():
    measured = convert.metrics(common_pb2.Metrics(f1=0.8, precision=0.7, recall=0.9,
                                                  roc_auc=0.95, average_precision=0.85,
                                                  threshold=0.5, positives=3, negatives=7))
    assert (measured["f1"], measured["roc_auc"]) == (pytest.approx(0.8), pytest.approx(0.95))
    no_positive = convert.metrics(common_pb2.Metrics(threshold=0.5, negatives=7))
    assert [no_positive[k] for k in ("f1", "precision", "recall", "roc_auc",
                                     "average_precision")] == [None] * 5
    one_class = convert.metrics(common_pb2.Metrics(f1=1.0, recall=1.0, positives=4))
    assert one_class["f1"] == 1.0 and one_class["roc_auc"] is None
    # The trainer sends no metrics at all for an empty split: the status says null.
    status = convert.status(trainer_pb2.Status(model=trainer_pb2.ModelSummary(version="v1")))
    assert status["model"]["evaluation"] is None and status["model"]["pinned"] is False


def test_the_status_carries_what_the_finish_line_needs():
    status = convert.status(trainer_pb2.Status(
        min_per_class=5, model=trainer_pb2.ModelSummary(version="v3", pinned=True),
        forecast=trainer_pb2.Forecast(reached=False, labels=0.0, low=0.0, high=40.0,
                                      more_answers=18)))
    assert status["min_per_class"] == 5 and status["model"]["pinned"] is True
    assert status["forecast"]["more_answers"] == 18 and status["forecast"]["reached"] is False


@pytest.mark.parametrize(("item_id", "image_id"), [
    ("0a1b2c3d4e5f6a7b", "0a1b2c3d4e5f6a7b"), ("street/0001.jpg", "street/0001"),
    ("tile.JPEG", "tile"), ("scan.tif", "scan"), ("name.with.dots", "name.with.dots"),
    (".jpg", ".jpg")])
def test_openimages_image_ids_have_no_file_extension(item_id, image_id):
    rows = export.openimages_rows([{"id": "a", "item_id": item_id, "label": "positive",
                                    "annotator": "x", "strategy": "random", "undone": False}],
                                  "/m/0199g")
    assert next(csv.DictReader(io.StringIO(rows)))["ImageID"] == image_id


@pytest.mark.parametrize(("raw", "seconds"), [
    (None, None), ("2025-05-01T09:30:00Z", 1746091800.0),
    ("2025-05-01T11:30:00.500+02:00", 1746091800.5)])
def test_the_time_an_answer_was_given_is_read_with_its_zone(raw, seconds):
    assert validation.given_at(raw) == seconds


@pytest.mark.parametrize("raw", ["2025-05-01T09:30:00", "yesterday", 1746091800, "9" * 50,
                                 "9999-99-99T00:00:00Z", "0001-01-01T00:00:00+01:00",
                                 "1969-12-31T23:59:59Z", "9999-12-31T23:59:59-01:00"])
def test_a_given_time_without_zone_or_not_a_time_is_refused(raw):
    with pytest.raises(ApiError) as err:
        validation.given_at(raw)
    assert err.value.code == "invalid_given_at"


def test_the_moving_window_counts_per_key_slides_and_forgets_old_keys() -> None:
    from annotation_gateway.ratelimit import MovingWindow, RateLimit

    window = MovingWindow(3, 60.0)
    assert [window.hit("a", t) for t in (0.0, 10.0, 20.0)] == [0.0, 0.0, 0.0]
    assert window.hit("a", 30.0) == pytest.approx(30.0)  # room again when 0.0 leaves
    assert window.hit("a", 59.0) == pytest.approx(1.0)  # a refusal is not counted
    assert window.hit("b", 59.0) == 0.0  # another key has its own window
    assert window.hit("a", 60.5) == 0.0  # 0.0 has left the window
    assert window.hit("a", 61.0) == pytest.approx(9.0)
    for k in range(100):  # a flood of distinct keys ...
        window.hit(f"x{k}", 70.0)
    assert len(window) == 102
    window.hit("c", 135.0)  # ... gone a window after their last hit
    assert len(window) == 1
    limit = RateLimit("2/minute", "item requests")
    limit.hit("k")
    limit.hit("k")
    with pytest.raises(ApiError) as refused:
        limit.hit("k")
    assert refused.value.status == 429 and 1 <= int(refused.value.headers["Retry-After"]) <= 60
    RateLimit("off", "item requests").hit("k")
