"""The feature service's bad-image and hostile-URL corpora, as a dataset: a manifest
whose items are broken files and URLs aimed at internal addresses. They go through the
trainer to the real feature service (extraction) and through the gateway (image and
thumbnail routes): each gets its own clear outcome, nothing else is disturbed, and no
request reaches an internal address."""

from __future__ import annotations

import csv
import sqlite3
import time
import urllib.parse
from pathlib import Path

import pytest
import requests
from PIL import Image

from hitl.v1 import feature_pb2, feature_pb2_grpc
from tests.feature.helpers import (
    HTML,
    SVG,
    animated_gif,
    cmyk_jpeg,
    encode,
    exif_rotated_jpeg,
    gradient,
    png_declaring,
    sixteen_bit_png,
)
from tests.reliability import report
from tests.reliability import stack as rs
from tests.reliability.stack import CSRF
from tests.support import TILES

# name -> (bytes, what extraction must give: "features" or the start of the reason)
IMAGES = {
    "zero-bytes.jpg": (b"", "ERROR_KIND_BAD_IMAGE"),
    "truncated.jpg": (encode(gradient((300, 300)), "JPEG")[:700], "ERROR_KIND_BAD_IMAGE"),
    "html.jpg": (HTML, "ERROR_KIND_BAD_IMAGE"),
    "svg.png": (SVG, "ERROR_KIND_BAD_IMAGE"),
    "bomb.png": (png_declaring(50_000, 50_000), "ERROR_KIND_TOO_LARGE"),
    "cmyk.jpg": (cmyk_jpeg(), "features"),
    "16-bit.png": (sixteen_bit_png(), "features"),
    "animated.gif": (animated_gif(), "features"),
    "exif-rotated.jpg": (exif_rotated_jpeg((200, 100)), "features"),
}
URLS = {
    "metadata": ("http://169.254.169.254/latest/meta-data/", "ERROR_KIND_FORBIDDEN_URL"),
    "loopback": ("http://127.0.0.1:{port}/api/status", "ERROR_KIND_FORBIDDEN_URL"),
    "ipv6-loopback": ("http://[::1]/x.jpg", "ERROR_KIND_FORBIDDEN_URL"),
    "private": ("http://10.0.0.1/x.jpg", "ERROR_KIND_FORBIDDEN_URL"),
    "mapped": ("http://[::ffff:127.0.0.1]/x.jpg", "ERROR_KIND_FORBIDDEN_URL"),
    "zero": ("http://0.0.0.0/x.jpg", "ERROR_KIND_FORBIDDEN_URL"),
    "credentials": ("http://user:pw@127.0.0.1/x.jpg", "ERROR_KIND_FORBIDDEN_URL"),
}


def _manifest(folder: Path, gateway_port: int) -> tuple[Path, dict[str, str]]:
    folder.mkdir(parents=True, exist_ok=True)
    expected: dict[str, str] = {}
    rows = []
    good = next(iter(sorted(TILES.rglob("*.jpg"))))
    rows.append(("good-tile", str(good)))
    expected["good-tile"] = "features"
    for name, (data, outcome) in IMAGES.items():
        (folder / name).write_bytes(data)
        rows.append((f"file-{name}", str(folder / name)))
        expected[f"file-{name}"] = outcome
    rows.append(("missing-file", str(folder / "no-such.jpg")))
    expected["missing-file"] = "unreadable"
    for name, (url, outcome) in URLS.items():
        rows.append((f"url-{name}", url.format(port=gateway_port)))
        expected[f"url-{name}"] = outcome
    path = folder / "corpus.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "location"])
        writer.writerows(rows)
    return path, expected


def _outcomes(db: Path) -> tuple[set[str], dict[str, str]]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        embedded = {r[0] for r in conn.execute("SELECT item_id FROM features")}
        failed = dict(conn.execute("SELECT item_id, reason FROM failed").fetchall())
    return embedded, failed


@pytest.fixture(scope="module")
def corpus_run(tmp_path_factory, shared_feature, shared_gateway):  # type: ignore[no-untyped-def]
    """The corpus as a dataset through a trainer and a gateway of its own: (expected
    outcome, outcome, gateway statuses) per item, and the gateway status afterwards."""
    tmp_path = tmp_path_factory.mktemp("corpus")
    # The loopback URL points at a real gateway: it must never be fetched.
    manifest, expected = _manifest(tmp_path / "corpus", shared_gateway.port)
    trainer = rs.trainer_service(tmp_path, shared_feature.address, manifest)
    rs.start(trainer)
    gateway = rs.gateway_service(tmp_path, trainer.address, shared_feature.address)
    rs.start(gateway)
    base = f"http://127.0.0.1:{gateway.port}"
    routes: dict[str, dict[str, int]] = {}
    try:
        rs.wait_status(trainer.address, lambda s: s.loading.state in (2, 3),  # READY, FAILED
                       timeout=120, what="the corpus loaded")
        # Settled: every item embedded or failed for good, as the trainer's own tables say
        # (its status counts only pool items as embedded, and queues the pool's a moment
        # after loading).
        db = Path(trainer.env["TRAINER_DATA_DIR"]) / "labels.sqlite3"
        deadline = time.monotonic() + 120
        while True:
            embedded, failed = _outcomes(db)
            if len(embedded) + len(failed) >= len(expected) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        session = requests.Session()
        assert session.post(base + "/api/session", json={"annotator": "corpus"},
                            headers=CSRF, timeout=10).status_code == 200
        for item_id in expected:
            quoted = urllib.parse.quote(item_id, safe="")
            routes[item_id] = {
                route: session.get(f"{base}/api/items/{quoted}/{route}", timeout=30).status_code
                for route in ("image", "thumbnail")}
        still = session.get(base + "/api/status", timeout=10)
    finally:
        gateway.stop()
        trainer.stop()

    outcomes = {i: "features" if i in embedded else failed.get(i, "pending")
                for i in expected}
    return expected, outcomes, routes, still.status_code


def test_corpora_through_trainer_and_gateway(corpus_run):  # type: ignore[no-untyped-def]
    expected, outcomes, routes, still = corpus_run
    for item_id, outcome in outcomes.items():
        kind = "bad image" if item_id.startswith(("file-", "missing")) else (
            "hostile URL" if item_id.startswith("url-") else "good image")
        report.inputs(f"corpus via trainer ({kind}): {item_id}", outcome.split(":")[0])
        report.inputs(f"corpus via gateway ({kind}): {item_id}",
                      "image {image} / thumbnail {thumbnail}".format(**routes[item_id]))
    mismatched = {i: (outcomes[i], want) for i, want in expected.items()
                  if not outcomes[i].startswith(want)}
    assert mismatched == {}
    server_errors = {i: r for i, r in routes.items() if max(r.values()) >= 500}
    assert server_errors == {}
    assert routes["good-tile"] == {"image": 200, "thumbnail": 200}
    assert still == 200


def test_a_decompression_bomb_image_is_refused_through_the_gateway(corpus_run):  # type: ignore[no-untyped-def]
    _, _, routes, _ = corpus_run
    assert routes["file-bomb.png"] == {"image": 409, "thumbnail": 409}


def test_corpora_straight_to_the_feature_service(shared_feature):
    refs = [feature_pb2.ImageRef(id=f"corpus-{name}", data=data)
            for name, (data, _) in IMAGES.items()]
    refs += [feature_pb2.ImageRef(id=f"corpus-{name}", url=url.format(port=1))
             for name, (url, _) in URLS.items()]
    with rs.channel(shared_feature.address) as channel:
        reply = feature_pb2_grpc.FeatureServiceStub(channel).Embed(
            feature_pb2.EmbedRequest(images=refs), timeout=120)
    got = {r.id: ("features" if r.WhichOneof("outcome") == "features"
                  else feature_pb2.ErrorKind.Name(r.error.kind)) for r in reply.results}
    want = {f"corpus-{n}": o for n, (_, o) in {**IMAGES, **URLS}.items()}
    for item_id, outcome in got.items():
        report.inputs(f"corpus via feature gRPC: {item_id[7:]}", outcome)
    assert got == want
    assert Image is not None
