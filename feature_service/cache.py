"""The LMDB feature cache.

Keys are (extractor name, extractor version, image key), so features of one extractor
are never served for another. Values are either the feature vector exactly as sent to
callers (little-endian float32), or a remembered failure (not found, bad image).

LMDB allows one open environment per file per process and must not be carried across a
fork, so environments are opened lazily, shared through a per-process registry, and
checked against the pid. Reads run on the caller's thread (microseconds); writes go
through one writer thread. When the map fills up it is doubled, which LMDB only allows
with no transaction open, hence the gate.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
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


@dataclass(frozen=True)
class Entry:
    """A cached vector, or a remembered failure (kind + message)."""
    vector: bytes | None = None
    kind: Kind | None = None
    message: str = ""

    def encode(self) -> bytes:
        if self.vector is not None:
            return _FEATURES + self.vector
        assert self.kind is not None
        return _FAILURE + self.kind.name.encode() + b"\0" + self.message.encode()

    @classmethod
    def decode(cls, raw: bytes) -> Entry:
        if raw[:1] == _FEATURES:
            return cls(vector=raw[1:])
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


_REGISTRY: dict[tuple[int, str], _Shared] = {}
_REGISTRY_LOCK = threading.Lock()


class CacheUnavailable(OSError):
    """The cache folder cannot be opened (read-only, missing permissions, not LMDB)."""

    def __init__(self, path: Path, error: BaseException) -> None:
        super().__init__(f"the feature cache folder {path} cannot be used: {error} "
                         "(set FEATURE_CACHE_DIR to a writable folder)")


class FeatureCache:
    def __init__(self, path: str | Path, namespace: str, map_size: int = 1 << 30) -> None:
        """`namespace` is "name/version" of the extractor; it prefixes every key."""
        self.path = Path(path).resolve()
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
                    env = lmdb.open(str(self.path), map_size=map_size, max_dbs=0,
                                    readahead=False, max_readers=256)
                except lmdb.Error as exc:
                    raise CacheUnavailable(self.path, exc) from None
                shared = _REGISTRY[(self._pid, str(self.path))] = _Shared(env)
            shared.users += 1
        self._shared = shared
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="feature-cache-writer")
        self._pending: list[tuple[str, Entry]] = []
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

    def get_many(self, image_keys: Sequence[str]) -> list[Entry | None]:
        env = self.env
        with self._shared.gate.shared(), env.begin(buffers=False) as txn:
            raws = [txn.get(self._key(k)) for k in image_keys]
        hits = sum(raw is not None for raw in raws)
        metrics.CACHE_HITS.inc(hits)
        metrics.CACHE_MISSES.inc(len(raws) - hits)
        return [None if raw is None else Entry.decode(raw) for raw in raws]

    def put_many(self, items: Sequence[tuple[str, Entry]]) -> None:
        """Writes in one transaction; grows the map and retries when it is full."""
        if not items:
            return
        records = [(self._key(k), e.encode()) for k, e in items]
        while True:
            try:
                with self._shared.gate.shared(), self.env.begin(write=True) as txn:
                    for key, value in records:
                        txn.put(key, value)
                break
            except lmdb.MapFullError:
                self._grow()
        self._update_gauges()

    async def put(self, items: Sequence[tuple[str, Entry]]) -> None:
        """Stores `items` on the writer thread, so the event loop never waits for a commit.

        Puts queue up while a commit is in progress and the next flush writes them all
        in one transaction; each caller returns once its items are committed.
        """
        with self._pending_lock:
            self._pending.extend(items)
        await asyncio.get_running_loop().run_in_executor(self._writer, self._flush)

    def _flush(self) -> None:
        with self._pending_lock:
            items, self._pending = self._pending, []
        self.put_many(items)

    def _grow(self) -> None:
        with self._shared.gate.exclusive():
            size = self.env.info()["map_size"] * 2
            self.env.set_mapsize(size)
        metrics.CACHE_RESIZES.inc()

    def _update_gauges(self) -> None:
        env = self.env
        info, stat = env.info(), env.stat()
        metrics.CACHE_ENTRIES.set(stat["entries"])
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
