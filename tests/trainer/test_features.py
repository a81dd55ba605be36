"""The in-memory feature bank (the extraction worker is exercised against the real
feature service in test_service.py)."""

from __future__ import annotations

import numpy as np

from trainer_service.datasets import Item
from trainer_service.datasets.base import POOL
from trainer_service.features import FeatureBank, image_ref


def test_bank_grows_and_keeps_earlier_views_valid() -> None:
    bank = FeatureBank()
    bank.add(["a", "b"], np.array([[1, 2], [3, 4]], dtype=np.float32))
    view = bank.matrix
    bank.add([f"i{k}" for k in range(2000)], np.ones((2000, 2), dtype=np.float32))
    assert len(bank) == 2002 and "i1999" in bank
    assert view.tolist() == [[1, 2], [3, 4]]  # taken before growing, still intact
    assert bank.rows(["b", "a"]).tolist() == [[3, 4], [1, 2]]
    bank.add(["a"], np.array([[9, 9]], dtype=np.float32))  # re-embedding replaces the row
    assert len(bank) == 2002 and bank.rows(["a"]).tolist() == [[9, 9]]
    bank.add(["c"], np.zeros((1, 3), dtype=np.float32))  # another extractor: start again
    assert bank.ids == ["c"]


def test_local_images_travel_as_bytes_and_remote_ones_as_urls(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "x.jpg"
    path.write_bytes(b"\xff\xd8 not really")
    local = image_ref(Item("x", str(path), POOL))
    remote = image_ref(Item("y", "https://images.example/y.jpg", POOL))
    assert (local.id, local.data, local.WhichOneof("source")) == ("x", path.read_bytes(), "data")
    assert (remote.url, remote.WhichOneof("source")) == ("https://images.example/y.jpg", "url")
