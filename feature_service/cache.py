"""The LMDB feature cache.

Keys are (extractor name, extractor version, key), so features of one extractor are never
served for another. Values are the feature vector exactly as sent to callers
(little-endian float32), a remembered failure (not found, bad image), or a reference to
another key (a caller's name for an image points at the image's content: see
feature_service/content.py).

LMDB allows one open environment per file per process and must not be carried across a
fork, so environments are opened lazily, shared through a per-process registry, and
checked against the pid. Reads run on the caller's thread (microseconds); writes go
through one writer thread. When the map fills up it is doubled, which LMDB only allows
with no transaction open, hence the gate.

With a size cap (`max_bytes`), the map grows up to the cap, and once the live data passes
EVICT_ABOVE of it the oldest entries are deleted until it is under EVICT_TO: first in,
first out, by the order of a second table (sequence number -> key). LMDB reuses the
freed pages, so the file stops growing. Evicting early, not at the cap, matters: a
delete needs free pages too.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import lmdb

from feature_service import metrics
from feature_service.outcomes import Kind

_FEATURES = b"F"
_FAILURE = b"E"
_REFERENCE = b"R"
_ORDER_DB = b"insertion-order"  # 8-byte big-endian sequence number -> full key
EVICT_ABOVE, EVICT_TO = 0.9, 0.75  # fractions of max_bytes


@dataclass(frozen=True)
class Entry:
    """A cached vector, a remembered failure (kind + message) or a reference."""
    vector: bytes | None = None
    kind: Kind | None = None
    message: str = ""
    ref: str | None = None

    def encode(self) -> bytes:
        if self.vector is not None:
            return _FEATURES + self.vector
        if self.ref is not None:
            return _REFERENCE + self.ref.encode()
        assert self.kind is not None
        return _FAILURE + self.kind.name.encode() + b"\0" + self.message.encode()

    @classmethod
    def decode(cls, raw: bytes) -> Entry:
        if raw[:1] == _FEATURES:
            return cls(vector=raw[1:])
        if raw[:1] == _REFERENCE:
            return cls(ref=raw[1:].decode())
        kind, _, message = raw[1:].partition(b"\0")
        return cls(kind=Kind[kind.decode()], message=message.decode(errors="replace"))


class _ResizeGate:
    """Transactions share the gate; a map resize takes it alone."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._open = 0
        self._resizing = False

    @contextlib.contextmanager
    def shared(self) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: not self._resizing)
            self._open += 1
        try:
            yield
        finally:
            with self._cond:
                self._open -= 1
                self._cond.notify_all()

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: not self._resizing)
            self._resizing = True
            self._cond.wait_for(lambda: self._open == 0)
        try:
            yield
        finally:
            with self._cond:
                self._resizing = False
                self._cond.notify_all()


class _Shared:
    def __init__(self, env: lmdb.Environment) -> None:
        self.env, self.gate, self.users = env, _ResizeGate(), 0
        self.order = env.open_db(_ORDER_DB)


def _live_bytes(txn: lmdb.Transaction, *dbs: lmdb._Database | None) -> int:
    """Bytes of pages holding data (the file's high-water mark counts freed pages too)."""
    total = 0
    for db in dbs:
        stat = txn.stat(db)
        total += (stat["branch_pages"] + stat["leaf_pages"] + stat["overflow_pages"]) \
            * stat["psize"]
    return total


_REGISTRY: dict[tuple[int, str], _Shared] = {}
_REGISTRY_LOCK = threading.Lock()


class CacheUnavailable(OSError):
    """The cache folder cannot be opened (read-only, missing permissions, not LMDB)."""

    def __init__(self, path: Path, error: BaseException) -> None:
        super().__init__(f"the feature cache folder {path} cannot be used: {error} "
                         "(set FEATURE_CACHE_DIR to a writable folder)")


def check_writable(path: str | Path) -> None:
    """CacheUnavailable at once where the cache folder cannot be written: the cache itself
    opens only after the warm-up has chosen the settings (its namespace carries them), too
    late for the clear one-line refusal at start."""
    folder = Path(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise CacheUnavailable(folder, exc) from None


class FeatureCache:
    def __init__(self, path: str | Path, namespace: str, map_size: int = 1 << 30,
                 max_bytes: int = 0) -> None:
        """`namespace` is "name/version" of the extractor; it prefixes every key.
        `max_bytes` caps the file (0: no cap), evicting the oldest entries."""
        self.path = Path(path).resolve()
        self.max_bytes = max_bytes
        if max_bytes:
            map_size = min(map_size, max_bytes)
        self.prefix = namespace.encode() + b"\0"
        self._pid = os.getpid()
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CacheUnavailable(self.path, exc) from None
        with _REGISTRY_LOCK:
            shared = _REGISTRY.get((self._pid, str(self.path)))
            if shared is None:
                try:
                    env = lmdb.open(str(self.path), map_size=map_size, max_dbs=1,
                                    readahead=False, max_readers=256)
                except lmdb.Error as exc:
                    raise CacheUnavailable(self.path, exc) from None
                shared = _REGISTRY[(self._pid, str(self.path))] = _Shared(env)
            shared.users += 1
        self._shared = shared
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="feature-cache-writer")
        self._pending: list[tuple[bytes, bytes, bool]] = []
        self._pending_lock = threading.Lock()
        self._closed = False
        self._update_gauges()

    @property
    def env(self) -> lmdb.Environment:
        if os.getpid() != self._pid:
            raise RuntimeError("an LMDB environment cannot be used after fork; open it anew")
        return self._shared.env

    def _key(self, image_key: str) -> bytes:
        return self.prefix + image_key.encode()

    def get_many(self, image_keys: Sequence[str], count: bool = True) -> list[Entry | None]:
        """Entries by key; `count` adds them to the hit and miss metrics (reads of
        callers' names for images, rather than of features, are left out)."""
        env = self.env
        with self._shared.gate.shared(), env.begin(buffers=False) as txn:
            raws = [txn.get(self._key(k)) for k in image_keys]
        if count:
            hits = sum(raw is not None for raw in raws)
            metrics.CACHE_HITS.inc(hits)
            metrics.CACHE_MISSES.inc(len(raws) - hits)
        return [None if raw is None else Entry.decode(raw) for raw in raws]

    def put_many(self, items: Sequence[tuple[str, Entry]], replace: bool = True) -> None:
        """Writes in one transaction (keeping existing values unless `replace`); when the
        map is full, grows it (up to the cap) or evicts, and retries."""
        self._put_records([(self._key(k), e.encode(), replace) for k, e in items])

    def _put_records(self, records: list[tuple[bytes, bytes, bool]]) -> None:
        if not records:
            return
        while True:
            try:
                with self._shared.gate.shared(), self.env.begin(write=True) as txn:
                    self._write(txn, records)
                break
            except lmdb.MapFullError:
                if not self._grow() and not self._evict(EVICT_TO * self.max_bytes):
                    raise  # full of entries from before the cap: nothing to evict
        if self.max_bytes:
            self._evict_if_above(EVICT_ABOVE * self.max_bytes)
        self._update_gauges()

    def _write(self, txn: lmdb.Transaction, records: list[tuple[bytes, bytes, bool]]) -> None:
        order = self._shared.order
        with txn.cursor(order) as cursor:
            last = cursor.key() if cursor.last() else b""
        sequence = int.from_bytes(last, "big") if last else 0
        for key, value, replace in records:
            if txn.put(key, value, overwrite=False):  # new: remember when it came
                sequence += 1
                txn.put(sequence.to_bytes(8, "big"), key, db=order)
            elif replace:
                txn.put(key, value)

    def _evict_if_above(self, limit: float) -> None:
        with self._shared.gate.shared(), self.env.begin() as txn:
            live = _live_bytes(txn, None, self._shared.order)
        if live > limit:
            self._evict(EVICT_TO * self.max_bytes)

    def _evict(self, target: float) -> int:
        """Deletes the oldest entries until the live data is about `target` bytes;
        returns how many (0 without a cap)."""
        if not self.max_bytes:
            return 0
        order, evicted = self._shared.order, 0
        with self._shared.gate.shared(), self.env.begin(write=True) as txn:
            live, entries = _live_bytes(txn, None, order), txn.stat(order)["entries"]
            # Entries are about the same size (one extractor's vectors), so the bytes
            # to free say how many entries to delete.
            excess = max(1, round(entries * (1 - target / max(live, 1))))
            with txn.cursor(order) as cursor:
                while evicted < excess and cursor.first():
                    txn.delete(cursor.value())
                    cursor.delete()
                    evicted += 1
        metrics.CACHE_EVICTIONS.inc(evicted)
        return evicted

    async def put(self, items: Sequence[tuple[str, Entry]], replace: bool = True) -> None:
        """Stores `items` on the writer thread, so the event loop never waits for a commit.

        Puts queue up while a commit is in progress and the next flush writes them all
        in one transaction; each caller returns once its items are committed.
        """
        with self._pending_lock:
            self._pending.extend((self._key(k), e.encode(), replace) for k, e in items)
        await asyncio.get_running_loop().run_in_executor(self._writer, self._flush)

    def _flush(self) -> None:
        with self._pending_lock:
            records, self._pending = self._pending, []
        self._put_records(records)

    def _grow(self) -> bool:
        """Doubles the map, up to the cap; False when it is at the cap already."""
        with self._shared.gate.exclusive():
            size = self.env.info()["map_size"]
            grown = min(size * 2, self.max_bytes) if self.max_bytes else size * 2
            if grown <= size:
                return False
            self.env.set_mapsize(grown)
        metrics.CACHE_RESIZES.inc()
        return True

    def _update_gauges(self) -> None:
        env = self.env
        info, stat = env.info(), env.stat()
        metrics.CACHE_ENTRIES.set(stat["entries"] - 1)  # the order table is an entry too
        metrics.CACHE_USED_BYTES.set((info["last_pgno"] + 1) * stat["psize"])
        metrics.CACHE_MAP_BYTES.set(info["map_size"])

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._writer.shutdown(wait=True)
        with _REGISTRY_LOCK:
            self._shared.users -= 1
            if self._shared.users == 0:
                _REGISTRY.pop((self._pid, str(self.path)), None)
                self._shared.env.close()
