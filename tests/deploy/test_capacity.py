"""The measurements behind docs/scaling.md still run against the real code, and the
figures the document quotes still hold where they are exact (LMDB page arithmetic)."""

from __future__ import annotations

from bench import capacity


def test_lmdb_stores_a_vector_in_whole_overflow_pages() -> None:
    figures = capacity.lmdb_cost(quick=True)
    page = figures["resnext50-frcnn"]["page_bytes"]
    for name, pages in (("resnext50-frcnn", 3), ("lite-1290", 2)):
        per_item = figures[name]["used_bytes_per_item"]
        assert figures[name]["vector_bytes"] < per_item
        # docs/scaling.md: 3 pages (12,344 B) and 2 pages (8,242 B) plus tree overhead.
        assert pages * page <= per_item < pages * page + 200, (name, per_item)


def test_trainer_figures_come_from_the_real_ranking_code() -> None:
    figures = capacity.trainer_cost(quick=True)
    assert figures["feature_bytes_per_item"] == 2058 * 4
    assert 100 < figures["catalog_bytes_per_item"] < 2000
    timings = figures["rank_seconds"]
    assert set(timings) == {5_000, 20_000}
    assert all(t > 0 for t in timings.values())
