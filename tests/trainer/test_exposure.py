"""What the trainer tells and reads, on real trainer processes: a caller without privileges
sees the status without anybody's name or agreement, a manifest's bad row is skipped and
reported with its line rather than failing the dataset, and a manifest names only files
within the dataset's roots."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import grpc
import pytest

from hitl.v1 import common_pb2, trainer_pb2, trainer_pb2_grpc
from tests.reliability import stack as rs
from tests.support import TILES


def _loaded(status: trainer_pb2.Status) -> bool:
    return status.loading.state != trainer_pb2.LOADING_STATE_LOADING


def test_status_for_a_caller_without_privileges_names_no_annotator(
        shared_feature, tiles: Path, tmp_path: Path):
    """Seen failing before: the `team` caller got every annotator's name and agreement."""
    trainer = rs.trainer_service(tmp_path, shared_feature.address, tiles)
    rs.start(trainer)
    try:
        rs.wait_status(trainer.address, lambda s: s.loading.state == 2, what="loaded")
        with rs.channel(trainer.address) as admin:
            stub = trainer_pb2_grpc.TrainerServiceStub(admin)
            (item,) = stub.GetNextItems(trainer_pb2.GetNextItemsRequest(
                annotator="named-person", count=1), timeout=10).items
            stub.AddAnnotation(trainer_pb2.AddAnnotationRequest(
                annotation_id="exposure-0001", item_id=item.id, annotator="named-person",
                label=common_pb2.LABEL_POSITIVE), timeout=10)
            full = stub.GetStatus(trainer_pb2.GetStatusRequest(), timeout=10).status
        with rs.channel(trainer.address, rs.TOKENS["team"]) as team:
            stub = trainer_pb2_grpc.TrainerServiceStub(team)
            seen = stub.GetStatus(trainer_pb2.GetStatusRequest(), timeout=10).status
    finally:
        trainer.stop()
    assert [a.annotator for a in full.annotators] == ["named-person"]
    assert list(seen.annotators) == []
    assert b"named-person" not in seen.SerializeToString()
    # The rest is there: the counts and the task.
    assert seen.counts.items == full.counts.items and seen.display_name


def _rows(n: int) -> list[list[str]]:
    with (TILES / "labels.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))[:n]
    return [[Path(r["filename"]).stem, str(TILES / r["filename"])] for r in rows]


def test_bad_manifest_rows_are_skipped_with_their_line_and_counted(
        shared_feature, tmp_path: Path):
    """Seen failing before: one oversized field (or one bad label) failed the whole
    dataset, with no line number for the oversized field."""
    rs.require_stack()
    good = _rows(12)
    manifest = tmp_path / "bad-rows.csv"
    with manifest.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "location", "label"])
        writer.writerows(good[:4])  # lines 2-5
        writer.writerow(["huge", "x" * 300_000])  # line 6: past the csv module's field limit
        writer.writerows(good[4:8])  # lines 7-10
        writer.writerow(["bad-label", good[0][1], "maybe"])  # line 11
        writer.writerows(good[8:])  # lines 12-15
    trainer = rs.trainer_service(tmp_path, shared_feature.address, manifest,
                                 TRAINER_DATASET_ROOTS=str(TILES))
    rs.start(trainer)
    try:
        status = rs.wait_status(trainer.address, _loaded, what="loading ended")
    finally:
        trainer.stop()
    assert status.loading.state == trainer_pb2.LOADING_STATE_READY, status.loading.message
    assert status.counts.items == len(good)
    message = status.loading.message
    assert "2 bad rows skipped" in message and "line 6" in message, message


def test_a_manifest_names_only_files_within_the_datasets_roots(shared_feature,
                                                                tmp_path: Path):
    """Seen failing before: a manifest could name any readable file of the trainer's disk,
    which was then served to every annotator."""
    rs.require_stack()
    folder = tmp_path / "dataset"
    (folder / "images").mkdir(parents=True)
    inside = folder / "images" / "inside.jpg"
    shutil.copyfile(_rows(1)[0][1], inside)
    secret = tmp_path / "secret.jpg"
    shutil.copyfile(_rows(2)[1][1], secret)
    manifest = folder / "manifest.csv"
    manifest.write_text("id,location\n"
                        "inside,images/inside.jpg\n"
                        "up,../secret.jpg\n"
                        f"absolute,{secret}\n"
                        f"elsewhere,{_rows(3)[2][1]}\n")
    # No roots besides the manifest's own folder (the default).
    trainer = rs.trainer_service(tmp_path, shared_feature.address, manifest,
                                 TRAINER_DATASET_ROOTS="")
    rs.start(trainer)
    try:
        status = rs.wait_status(trainer.address, _loaded, what="loading ended")
        with rs.channel(trainer.address) as channel:
            stub = trainer_pb2_grpc.TrainerServiceStub(channel)
            ok = stub.GetImage(trainer_pb2.GetImageRequest(item_id="inside"), timeout=10)
            codes = {}
            for item_id in ("up", "absolute", "elsewhere"):
                with pytest.raises(grpc.RpcError) as refused:
                    stub.GetImage(trainer_pb2.GetImageRequest(item_id=item_id), timeout=10)
                codes[item_id] = refused.value.code()
    finally:
        trainer.stop()
    assert ok.data == inside.read_bytes()
    assert set(codes.values()) == {grpc.StatusCode.NOT_FOUND}
    assert status.counts.items == 1
    assert "3 bad rows skipped" in status.loading.message, status.loading.message


@pytest.mark.parametrize("host", ["localhost", "[2002:7f00:1::]", "[64:ff9b::a00:1]",
                                  "[::7f00:1]", "[2001:0:4136:e378:8000:63bf:f5ff:fffe]"])
def test_a_download_source_inside_the_network_is_refused_without_saying_where(
        shared_feature, tmp_path: Path, host: str):
    """Seen failing before: the refusal named what `localhost` resolved to (a DNS oracle
    for internal names), and 6to4 carrying 127.0.0.1 was judged public (a connection was
    tried instead)."""
    rs.require_stack()
    source = f"http://{host}:9/openimages"
    trainer = rs.trainer_service(tmp_path, shared_feature.address, tmp_path / "unused.csv",
                                 TRAINER_DATASET="openimages",
                                 TRAINER_OPENIMAGES_SOURCE=source,
                                 TRAINER_DOWNLOAD_STALL_S="5")
    rs.start(trainer)
    try:
        status = rs.wait_status(trainer.address, _loaded, timeout=60, what="loading ended")
    finally:
        trainer.stop()
    message = status.loading.message
    assert status.loading.state == trainer_pb2.LOADING_STATE_FAILED
    assert "forbidden_url" in message, message
    for resolved in ("127.0.0.1", "::1", "10.0.0.1", "resolves"):
        assert resolved not in message, message
