"""The in-memory feature bank."""

from __future__ import annotations

import numpy as np

from trainer_service.features.bank import FeatureBank


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
