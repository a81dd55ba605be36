"""The LMDB feature cache, on real files on disk."""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

import lmdb
import numpy as np
import pytest

from feature_service import metrics
from feature_service.cache import Entry, FeatureCache
from feature_service.outcomes import Kind


def vector(seed: int, dim: int = 29) -> bytes:
    return np.random.default_rng(seed).standard_normal(dim).astype("<f4").tobytes()


def test_features_and_failures_round_trip_across_reopen(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path, "tiny/1")
    cache.put_many([("a", Entry(vector=vector(1))),
                    ("gone", Entry(kind=Kind.NOT_FOUND, message="HTTP 404"))])
    cache.close()
    cache = FeatureCache(tmp_path, "tiny/1")
    a, gone, missing = cache.get_many(["a", "gone", "missing"])
    assert a == Entry(vector=vector(1))
    assert gone == Entry(kind=Kind.NOT_FOUND, message="HTTP 404")
    assert missing is None
    cache.close()


def test_extractor_name_and_version_separate_entries(tmp_path: Path) -> None:
    v1, v2 = FeatureCache(tmp_path, "tiny/1"), FeatureCache(tmp_path, "tiny/2")
    other = FeatureCache(tmp_path, "lite/1")
    v1.put_many([("a", Entry(vector=vector(1)))])
    assert v2.get_many(["a"]) == [None] and other.get_many(["a"]) == [None]
    assert v1.get_many(["a"]) == [Entry(vector=vector(1))]
    assert v1.env is v2.env  # one environment per file per process
    for c in (v1, v2, other):
        c.close()


def test_the_map_grows_when_full(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path, "tiny/1", map_size=64 << 10)
    resizes = metrics.CACHE_RESIZES._value.get()
    big = [(f"k{i}", Entry(vector=vector(i, dim=2048))) for i in range(200)]  # ~1.6 MB
    for start in range(0, 200, 50):
        cache.put_many(big[start:start + 50])
    assert cache.env.info()["map_size"] > 64 << 10
    assert metrics.CACHE_RESIZES._value.get() > resizes
    assert cache.get_many(["k0", "k199"]) == [big[0][1], big[199][1]]
    assert metrics.CACHE_ENTRIES._value.get() == 200
    cache.close()


async def test_concurrent_puts_are_all_committed_and_reads_continue(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path, "tiny/1", map_size=64 << 10)
    items = [(f"k{i}", Entry(vector=vector(i, dim=512))) for i in range(300)]
    await asyncio.gather(*(cache.put([item]) for item in items))
    assert cache.get_many([k for k, _ in items]) == [e for _, e in items]
    cache.close()


def test_hits_and_misses_are_counted(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path, "tiny/1")
    hits, misses = metrics.CACHE_HITS._value.get(), metrics.CACHE_MISSES._value.get()
    cache.put_many([("a", Entry(vector=vector(1)))])
    cache.get_many(["a", "b", "c"])
    assert metrics.CACHE_HITS._value.get() - hits == 1
    assert metrics.CACHE_MISSES._value.get() - misses == 2
    cache.close()


def test_an_environment_is_not_used_after_fork(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path, "tiny/1")
    pid = os.fork()
    if pid == 0:  # the child must refuse the parent's environment
        try:
            cache.get_many(["a"])
        except RuntimeError:
            os._exit(0)
        os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    cache.close()


@pytest.mark.parametrize("kind", [Kind.NOT_FOUND, Kind.BAD_IMAGE])
def test_failure_entries_keep_kind_and_message(tmp_path: Path, kind: Kind) -> None:
    entry = Entry(kind=kind, message="détail\0with nul")
    assert Entry.decode(entry.encode()) == entry


def test_a_capped_cache_evicts_the_oldest_entries_and_stops_growing(tmp_path: Path) -> None:
    cap = 1 << 20
    cache = FeatureCache(tmp_path, "tiny/1", map_size=128 << 10, max_bytes=cap)
    evictions = metrics.CACHE_EVICTIONS._value.get()
    items = [(f"k{i}", Entry(vector=vector(i, dim=1024))) for i in range(600)]  # ~2.5 MB
    for start in range(0, 600, 20):
        cache.put_many(items[start:start + 20])
        assert cache.env.info()["map_size"] <= cap
    assert metrics.CACHE_EVICTIONS._value.get() > evictions
    found = cache.get_many([k for k, _ in items])
    kept = [i for i, entry in enumerate(found) if entry is not None]
    # First in, first out: what is left is one run of the newest, read back intact.
    assert kept == list(range(kept[0], 600)) and kept[0] > 0
    assert found[-1] == items[-1][1]
    assert 80 < len(kept) < 260  # 8 KB per entry: between EVICT_TO and the cap
    cache.close()

    # Reopened, the order carries on: new entries are the last to go.
    cache = FeatureCache(tmp_path, "tiny/1", map_size=128 << 10, max_bytes=cap)
    more = [(f"n{i}", Entry(vector=vector(1000 + i, dim=1024))) for i in range(300)]
    for start in range(0, 300, 20):
        cache.put_many(more[start:start + 20])
    assert cache.get_many(["k599"]) == [None]
    assert cache.get_many(["n299"]) == [more[-1][1]]
    assert os.path.getsize(tmp_path / "data.mdb") <= cap
    cache.close()


def test_rewriting_a_key_does_not_queue_it_twice(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path, "tiny/1", max_bytes=1 << 20)
    cache.put_many([("a", Entry(vector=vector(1)))])
    cache.put_many([("a", Entry(vector=vector(2)))])
    assert cache.get_many(["a"]) == [Entry(vector=vector(2))]
    with cache.env.begin() as txn:
        assert txn.stat(cache._shared.order)["entries"] == 1
    cache.close()


@pytest.mark.timeout(60)
def test_a_cap_full_of_entries_from_before_the_cap_fails_the_write_not_the_service(
        tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path, "tiny/1", map_size=256 << 10, max_bytes=1 << 20)
    value = Entry(vector=vector(1, dim=1024)).encode()
    with contextlib.suppress(lmdb.MapFullError):  # written as an uncapped cache did
        for i in range(1000):
            with cache.env.begin(write=True) as txn:
                txn.put(cache._key(f"old{i}"), value)
            if cache.env.info()["map_size"] < 1 << 20:
                cache.env.set_mapsize(1 << 20)
    with pytest.raises(lmdb.MapFullError):
        cache.put_many([("new", Entry(vector=vector(2, dim=1024)))])
    assert cache.get_many(["old0"]) != [None]  # nothing was lost
    cache.close()


async def test_references_round_trip_and_a_write_may_keep_what_is_stored(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path, "tiny/1")
    cache.put_many([("name", Entry(ref="ab" * 32)), ("content", Entry(vector=vector(1)))])
    await cache.put([("content", Entry(vector=vector(2)))], replace=False)
    assert cache.get_many(["name", "content"]) == [Entry(ref="ab" * 32),
                                                   Entry(vector=vector(1))]
    await cache.put([("content", Entry(vector=vector(2)))])
    assert cache.get_many(["content"]) == [Entry(vector=vector(2))]
    cache.close()
