"""The trainer's dataset downloads stay within their policy: configured sources only,
public addresses only unless allowlisted (checked on every redirect hop), no proxies,
size and time caps, and a cache keyed by URL and checked by checksum. Against real local
HTTP servers (tests/trainer/httpserver.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hitl.addresses import Allowlist
from hitl.config import load
from tests.trainer.httpserver import FileServer
from trainer_service.config import Config
from trainer_service.datasets.download import (
    DownloadPolicy,
    DownloadRefused,
    NotFound,
    download,
    policy_from,
)

LOOPBACK = Allowlist.from_entries(("127.0.0.1",))


def fetch(url: str, folder: Path, policy: DownloadPolicy) -> tuple[Path, list[tuple[int, int]]]:
    """Runs a download to the end: (the file, its progress)."""
    progress: list[tuple[int, int]] = []
    steps = download(url, folder, policy)
    while True:
        try:
            progress.append(next(steps))
        except StopIteration as done:
            return Path(done.value), progress


@pytest.fixture
def files(tmp_path: Path) -> Iterator[tuple[FileServer, str]]:
    (tmp_path / "srv" / "openimages").mkdir(parents=True)
    (tmp_path / "srv" / "openimages" / "labels.csv").write_text("ImageID,LabelName\na,b\n")
    (tmp_path / "srv" / "big.bin").write_bytes(b"x" * 100_000)
    server = FileServer(tmp_path / "srv")
    with server.serve() as base:
        yield server, base


def test_files_are_cached_by_url_and_checksum(tmp_path: Path) -> None:
    for name, text in (("one", "first source\n"), ("two", "second source\n")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "labels.csv").write_text(text)
    first, second = FileServer(tmp_path / "one"), FileServer(tmp_path / "two")
    with first.serve() as a, second.serve() as b:
        policy = DownloadPolicy(sources=(a, b), allowlist=LOOPBACK)
        cache = tmp_path / "cache"
        path_a, _ = fetch(f"{a}/labels.csv", cache, policy)
        path_b, _ = fetch(f"{b}/labels.csv", cache, policy)
        # One file name, two sources: two cached files, each with its own content.
        assert path_a != path_b
        assert (path_a.read_text(), path_b.read_text()) == ("first source\n", "second source\n")
        again, progress = fetch(f"{a}/labels.csv", cache, policy)
        assert again == path_a and len(first.requests) == 1 and progress == [(13, 13)]
        path_a.write_text("altered on disk\n")  # a cached file that no longer matches
        fetch(f"{a}/labels.csv", cache, policy)
        assert len(first.requests) == 2 and path_a.read_text() == "first source\n"


def test_only_configured_sources_are_downloaded(files: tuple[FileServer, str],
                                                tmp_path: Path) -> None:
    server, base = files
    policy = DownloadPolicy(sources=(f"{base}/openimages",), allowlist=LOOPBACK)
    path, _ = fetch(f"{base}/openimages/labels.csv", tmp_path, policy)
    assert path.read_text().startswith("ImageID")
    for url in (f"{base}/big.bin", f"{base}/openimages-elsewhere/labels.csv",
                f"{base.replace('http:', 'https:')}/openimages/labels.csv",
                "file:///etc/passwd"):
        with pytest.raises(DownloadRefused, match="not under a configured download source"):
            fetch(url, tmp_path, policy)
    assert [p for p, _ in server.requests] == ["/openimages/labels.csv"]


def test_private_addresses_need_the_allowlist(files: tuple[FileServer, str],
                                              tmp_path: Path) -> None:
    server, base = files
    with pytest.raises(DownloadRefused, match=r"forbidden_url: '127\.0\.0\.1'"):
        fetch(f"{base}/big.bin", tmp_path, DownloadPolicy(sources=(base,)))
    assert server.requests == []  # refused before connecting
    with pytest.raises(DownloadRefused, match=r"forbidden_url: '169\.254\.169\.254'"):
        fetch("http://169.254.169.254/latest/meta-data/",
              tmp_path, DownloadPolicy(sources=("http://169.254.169.254",)))


def test_every_redirect_hop_is_checked(tmp_path: Path) -> None:
    (tmp_path / "srv").mkdir()
    (tmp_path / "srv" / "labels.csv").write_text("moved here\n")
    first, second = FileServer(tmp_path / "srv"), FileServer(tmp_path / "srv", "127.0.0.2")
    with first.serve() as a, second.serve() as b:
        first.redirects["/labels.csv"] = f"{b}/labels.csv"
        first.redirects["/metadata"] = "http://169.254.169.254/latest/meta-data/"
        first.redirects["/loop"] = "/loop"
        policy = DownloadPolicy(sources=(a,), allowlist=LOOPBACK)
        with pytest.raises(DownloadRefused, match=r"forbidden_url: '127\.0\.0\.2'"):
            fetch(f"{a}/labels.csv", tmp_path, policy)
        assert second.requests == []
        with pytest.raises(DownloadRefused, match=r"169\.254\.169\.254"):
            fetch(f"{a}/metadata", tmp_path, policy)
        with pytest.raises(DownloadRefused, match="more than 5 redirects"):
            fetch(f"{a}/loop", tmp_path, policy)
        # Allowlisted, the same redirect is followed: the refusal above was the policy's.
        both = DownloadPolicy(sources=(a,), allowlist=Allowlist.from_entries(
            ("127.0.0.1", "127.0.0.2")))
        path, _ = fetch(f"{a}/labels.csv", tmp_path, both)
        assert path.read_text() == "moved here\n" and len(second.requests) == 1


def test_size_and_time_are_capped(files: tuple[FileServer, str], tmp_path: Path) -> None:
    server, base = files
    small = DownloadPolicy(sources=(base,), allowlist=LOOPBACK, max_bytes=10_000)
    with pytest.raises(DownloadRefused, match="TRAINER_DOWNLOAD_MAX_BYTES"):
        fetch(f"{base}/big.bin", tmp_path / "a", small)
    assert not [p for p in (tmp_path / "a").glob("*") if not p.name.endswith(".part")]
    server.drip_s = 0.05  # 100 KB at 20 KB/s: 5 s
    quick = DownloadPolicy(sources=(base,), allowlist=LOOPBACK, timeout_s=1.0, stall_s=1.0)
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="TRAINER_DOWNLOAD_TIMEOUT_S"):
        fetch(f"{base}/big.bin", tmp_path / "b", quick)
    assert time.monotonic() - started < 3.0


def test_proxy_variables_are_never_used(files: tuple[FileServer, str], tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    server, base = files
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    path, _ = fetch(f"{base}/big.bin", tmp_path, DownloadPolicy(sources=(base,),
                                                                allowlist=LOOPBACK))
    assert path.stat().st_size == 100_000 and len(server.requests) == 1


def test_missing_files_say_so(files: tuple[FileServer, str], tmp_path: Path) -> None:
    _, base = files
    with pytest.raises(NotFound):
        fetch(f"{base}/absent.csv", tmp_path, DownloadPolicy(sources=(base,),
                                                             allowlist=LOOPBACK))


def test_the_policy_comes_from_the_trainers_settings() -> None:
    config = load(Config, {
        "TRAINER_OPENIMAGES_SOURCE": "/data/openimages,https://mirror.example.org/oi/v6",
        "TRAINER_DOWNLOAD_SOURCES": "https://other.example.org/files",
        "TRAINER_DOWNLOAD_ALLOWLIST": "10.1.0.0/16", "TRAINER_DOWNLOAD_MAX_BYTES": "1000"})
    policy = policy_from(config)
    assert policy.sources == ("https://mirror.example.org/oi/v6",
                              "https://other.example.org/files")
    assert policy.max_bytes == 1000
    assert policy.source_refusal("https://mirror.example.org/oi/v6/x.csv") is None
    assert policy.source_refusal("https://mirror.example.org/oi/v5/x.csv")
    # The default policy, before the trainer configures one, downloads nothing.
    assert DownloadPolicy().source_refusal("https://storage.googleapis.com/x.csv")
