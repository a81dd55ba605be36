"""The feature-service client (the extraction worker is exercised against the real
feature service in test_service.py)."""

from __future__ import annotations

from trainer_service.datasets import Item
from trainer_service.domain import Split
from trainer_service.features.calls import image_ref


def test_local_images_travel_as_bytes_and_remote_ones_as_urls(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "x.jpg"
    path.write_bytes(b"\xff\xd8 not really")
    local = image_ref(Item("x", str(path), Split.POOL))
    remote = image_ref(Item("y", "https://images.example/y.jpg", Split.POOL))
    assert (local.id, local.data, local.WhichOneof("source")) == ("x", path.read_bytes(), "data")
    assert (remote.url, remote.WhichOneof("source")) == ("https://images.example/y.jpg", "url")
