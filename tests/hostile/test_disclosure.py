"""What the gateway's answers give away, through real trainer and gateway processes: no
memory addresses in an error (a file of the dataset that is not an image), no software
versions in a header, and no resolved address when a URL to classify is refused."""

from __future__ import annotations

import re
import shutil
import urllib.parse
from pathlib import Path

import requests

from tests.reliability import stack as rs
from tests.reliability.stack import CSRF
from tests.support import TILES

ADDRESS = re.compile(r"0x[0-9a-f]{6,}|object at", re.IGNORECASE)
VERSION = re.compile(r"\d+\.\d+")


def test_answers_carry_no_memory_address_or_version(shared_feature, tmp_path: Path):
    """Seen failing before: the image route answered `cannot identify image file
    <_io.BytesIO object at 0x...>`, and `Server: Python/3.11 aiohttp/3...`."""
    rs.require_stack()
    folder = tmp_path / "dataset"
    folder.mkdir()
    (folder / "page.jpg").write_text("<html>not an image</html>")
    shutil.copyfile(next(iter(sorted(TILES.rglob("*.jpg")))), folder / "tile.jpg")
    (folder / "manifest.csv").write_text("id,location\nnot-an-image,page.jpg\ntile,tile.jpg\n")
    trainer = rs.trainer_service(tmp_path, shared_feature.address, folder / "manifest.csv")
    rs.start(trainer)
    gateway = rs.gateway_service(tmp_path, trainer.address, shared_feature.address)
    rs.start(gateway)
    base = f"http://127.0.0.1:{gateway.port}"
    try:
        rs.wait_status(trainer.address, lambda s: s.loading.state == 2, what="loaded")
        session = requests.Session()
        session.post(base + "/api/session", json={"annotator": "looker"}, headers=CSRF,
                     timeout=10)
        answers = [session.get(f"{base}/api/items/{urllib.parse.quote(i)}/{route}",
                               timeout=30)
                   for i in ("not-an-image", "tile") for route in ("image", "thumbnail")]
        answers += [session.get(base + path, timeout=10)
                    for path in ("/", "/api/status", "/api/no-such-route", "/healthz")]
        answers.append(session.post(base + "/api/annotations", json={}, headers=CSRF,
                                    timeout=10))
        refused = session.post(base + "/api/classify", headers=CSRF, timeout=60,
                               json={"urls": ["http://localhost:9/x.jpg"]})
    finally:
        gateway.stop()
        trainer.stop()
    assert answers[0].status_code == 409  # the page that is not an image
    for answer in answers:
        assert not ADDRESS.search(answer.text if answer.status_code >= 400 else ""), (
            answer.url, answer.text)
        server = answer.headers.get("Server", "")
        assert not VERSION.search(server) and "python" not in server.lower(), server
    # No model yet: refused whole, or the URL refused on its own; either way the message
    # never says what localhost resolved to.
    for resolved in ("127.0.0.1", "::1", "resolves"):
        assert resolved not in refused.text, refused.text
