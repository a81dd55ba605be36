"""The feature-service client (the extraction worker is exercised against the real
feature service in test_service.py)."""

from __future__ import annotations

import pytest

from hitl.v1 import feature_pb2
from trainer_service.datasets import Item
from trainer_service.domain import Split
from trainer_service.features.calls import add_image


def test_local_images_travel_as_bytes_and_remote_ones_as_urls(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "x.jpg"
    path.write_bytes(b"\xff\xd8 not really")
    images = feature_pb2.EmbedRequest().images
    add_image(images, Item("x", str(path), Split.POOL))
    add_image(images, Item("y", "https://images.example/y.jpg", Split.POOL))
    with pytest.raises(OSError):
        add_image(images, Item("z", str(tmp_path / "missing.jpg"), Split.POOL))
    assert len(images) == 2  # an unreadable file adds nothing
    local, remote = images
    assert (local.id, local.data, local.WhichOneof("source")) == ("x", path.read_bytes(), "data")
    assert (remote.url, remote.WhichOneof("source")) == ("https://images.example/y.jpg", "url")
