"""Dataset loaders: CSV manifests, folders and Open Images (small files in the official
formats, and the real validation label file, served by a local HTTP server)."""

from __future__ import annotations

import contextlib
import csv
import gzip
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from hitl.addresses import Allowlist
from tests.support import OPENIMAGES, TILES, require_data
from tests.trainer.httpserver import FileServer
from trainer_service.datasets import Catalog, Item
from trainer_service.datasets import download as downloads
from trainer_service.datasets.download import DownloadPolicy, download
from trainer_service.datasets.local import DatasetError, load_folder, load_manifest
from trainer_service.datasets.openimages import OpenImages
from trainer_service.domain import Label, Split

MIRROR = "https://mirror.example"


def collect(batches) -> list[Item]:  # type: ignore[no-untyped-def]
    return [item for items, _ in batches for item in items]


def tiles_manifest(path: Path, n: int = 300) -> dict[str, int]:
    """A manifest of the first `n` tiles (relative locations) and their labels."""
    with open(TILES / "labels.csv") as f:
        rows = list(csv.DictReader(f))[:n]
    with open(path, "w") as f:
        f.write("id,location,label\n")
        for r in rows:
            f.write(f"{Path(r['filename']).stem},{r['filename']},{r['label']}\n")
    return {Path(r["filename"]).stem: int(r["label"]) for r in rows}


def test_manifest_split_is_stratified_deterministic_and_hides_pool_labels(tmp_path: Path) -> None:
    require_data(TILES)
    manifest = tmp_path / "tiles.csv"
    truth = tiles_manifest(manifest)
    # Relative locations resolve against the manifest's folder: point them at the tiles.
    (tmp_path / "images").symlink_to(TILES / "images")
    items = collect(load_manifest(manifest, 0.2, 0.3, seed=0))
    assert len(items) == len(truth)
    by_split = {s: [i for i in items if i.split == s]
                for s in (Split.POOL, Split.VALIDATION, Split.EVALUATION)}
    positives = sum(truth.values())
    val_pos = sum(i.known_label == Label.POSITIVE for i in by_split[Split.VALIDATION])
    eval_pos = sum(i.known_label == Label.POSITIVE for i in by_split[Split.EVALUATION])
    assert val_pos == round(positives * 0.2) and eval_pos == round(positives * 0.3)
    assert len(by_split[Split.VALIDATION]) == round(positives * 0.2) + round(
        (len(truth) - positives) * 0.2)
    assert all(i.known_label == 0 for i in by_split[Split.POOL])
    assert all(i.known_label == (Label.POSITIVE if truth[i.id] else Label.NEGATIVE)
               for i in by_split[Split.VALIDATION] + by_split[Split.EVALUATION])
    assert all(Path(i.location).is_file() for i in items)
    again = collect(load_manifest(manifest, 0.2, 0.3, seed=0))
    assert sorted((i.id, i.split) for i in again) == sorted((i.id, i.split) for i in items)


def test_manifest_paths_urls_and_errors(tmp_path: Path) -> None:
    (tmp_path / "imgs").mkdir()
    manifest = tmp_path / "m.csv"
    manifest.write_text("a,imgs/a.jpg\nb,https://example.org/b.jpg,\n")
    items = {i.id: i for i in collect(load_manifest(manifest, 0.2, 0.2, 0))}
    assert items["a"].location == str(tmp_path / "imgs" / "a.jpg")
    assert items["b"].location == "https://example.org/b.jpg" and items["b"].is_remote
    assert {i.split for i in items.values()} == {Split.POOL}
    # A bad row is skipped and reported with its line; the others load.
    manifest.write_text("id,location,label\nx,x.jpg,maybe\nonly-an-id\ny,y.jpg,\n"
                        "z,../outside.jpg\n")
    batches = list(load_manifest(manifest, 0.2, 0.2, 0))
    assert [i.id for items, _ in batches for i in items] == ["y"]
    note = batches[-1][1].note
    assert note.startswith("3 bad rows skipped in m.csv (first at line 2: label 'maybe'"), note
    with pytest.raises(DatasetError, match="not found"):
        collect(load_manifest(tmp_path / "missing.csv", 0.2, 0.2, 0))


def test_folder_loads_images_recursively(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    for name in ("one.jpg", "sub/two.png"):
        Image.new("RGB", (8, 8)).save(tmp_path / name)
    (tmp_path / "notes.txt").write_text("not an image")
    items = collect(load_folder(tmp_path))
    assert sorted(i.id for i in items) == ["one.jpg", "sub/two.png"]
    assert all(i.split == Split.POOL and Path(i.location).is_file() for i in items)


def test_catalog_ignores_repeated_ids() -> None:
    catalog = Catalog()
    assert catalog.add([Item("a", "/a", Split.POOL),
                        Item("b", "/b", Split.VALIDATION, Label.POSITIVE)]) == 2
    assert catalog.add([Item("a", "/other", Split.POOL)]) == 0
    assert catalog.pool == ["a"] and catalog.validation == ["b"]


# -- Open Images ------------------------------------------------------------------------

LABEL_HEADER = "ImageID,Source,LabelName,Confidence\n"
IMAGE_HEADER = ("ImageID,Subset,OriginalURL,OriginalLandingURL,License,AuthorProfileURL,"
                "Author,Title,OriginalSize,OriginalMD5,Thumbnail300KURL,Rotation\n")


def write_open_images(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    validation = (LABEL_HEADER
                  + "v1,verification,/m/0199g,1\nv1,verification,/m/01g317,1\n"
                  + "v2,verification,/m/0199g,0\nv3,crowdsource-verification,/m/0199g,1\n"
                  + "v4,verification,/m/01g317,1\n")
    with gzip.open(folder / "validation-annotations-human-imagelabels.csv.gz", "wt") as f:
        f.write(validation)
    (folder / "validation-images-with-rotation.csv").write_text(
        IMAGE_HEADER
        + "v1,validation,https://farm.example/v1_o.jpg,https://landing,cc,a,b,t,100,md5,"
          "https://thumb.example/v1_z.jpg,0.0\n"
        + "v4,validation,https://farm.example/v4_o.jpg,,,,,,,,,\n")
    (folder / "test-annotations-human-imagelabels.csv").write_text(
        LABEL_HEADER + "t1,verification,/m/0199g,0\nt2,verification,/m/0199g,1\n")
    # Train rows are grouped by image, as in the official files.
    (folder / "oidv6-train-annotations-human-imagelabels.csv").write_text(
        LABEL_HEADER + "".join(f"p{k},verification,/m/0199g,{k % 2}\np{k},verification,"
                               f"/m/01g317,1\n" for k in range(50)))


def check_open_images(items: list[Item]) -> None:
    by_id = {i.id: i for i in items}
    assert {i.id for i in items if i.split == Split.VALIDATION} == {"v1", "v2", "v3"}
    assert by_id["v1"].known_label == Label.POSITIVE and by_id["v2"].known_label == Label.NEGATIVE
    assert by_id["v1"].location == "https://farm.example/v1_o.jpg"
    assert by_id["v1"].thumbnail_url == "https://thumb.example/v1_z.jpg"
    assert by_id["v2"].location == f"{MIRROR}/validation/v2.jpg"
    assert {(i.id, i.known_label) for i in items if i.split == Split.EVALUATION} == {
        ("t1", Label.NEGATIVE), ("t2", Label.POSITIVE)}
    pool = [i for i in items if i.split == Split.POOL]
    assert len(pool) == 50 and all(i.known_label == 0 for i in pool)
    assert by_id["p7"].location == f"{MIRROR}/train/p7.jpg"


def test_open_images_from_a_folder_and_from_its_cache(tmp_path: Path) -> None:
    write_open_images(tmp_path / "oi")
    dataset = OpenImages(str(tmp_path / "oi"), "/m/0199g", MIRROR, tmp_path / "cache")
    check_open_images(collect(dataset.load()))
    for path in (tmp_path / "oi").iterdir():
        path.unlink()  # the cache alone must now suffice
    check_open_images(collect(OpenImages(str(tmp_path / "oi"), "/m/0199g", MIRROR,
                                         tmp_path / "cache").load()))


@contextlib.contextmanager
def allowed(base: str) -> Iterator[None]:
    """The trainer's download policy, for a local server: its base URL is a configured
    source and loopback is allowlisted (as an in-cluster mirror would be)."""
    downloads.configure(DownloadPolicy(sources=(base,),
                                       allowlist=Allowlist.from_entries(("127.0.0.1",))))
    try:
        yield
    finally:
        downloads.configure(DownloadPolicy())


def test_open_images_downloaded_over_http(tmp_path: Path) -> None:
    write_open_images(tmp_path / "oi")
    files = FileServer(tmp_path / "oi")
    with files.serve() as base, allowed(base):
        dataset = OpenImages(base, "/m/0199g", MIRROR, tmp_path / "cache")
        batches = list(dataset.load())
        check_open_images([i for items, _ in batches for i in items])
        assert any("downloading" in p.message for _, p in batches)
        fetched = {path for path, _ in files.requests}
        assert "/validation-annotations-human-imagelabels.csv.gz" in fetched
        files.requests.clear()
        check_open_images(collect(OpenImages(base, "/m/0199g", MIRROR,
                                             tmp_path / "cache").load()))
        assert files.requests == []  # the parsed manifest was cached


def test_download_resumes_after_a_cut(tmp_path: Path) -> None:
    payload = bytes(range(256)) * 4000
    (tmp_path / "srv").mkdir()
    (tmp_path / "srv" / "big.bin").write_bytes(payload)
    files = FileServer(tmp_path / "srv")
    folder = tmp_path / "dl"
    with files.serve() as base, allowed(base):
        files.cut_after = 300_000
        with pytest.raises(OSError, match="connection closed"):
            list(download(f"{base}/big.bin", folder))
        assert not [p for p in folder.iterdir() if not p.name.endswith(".part")]
        files.cut_after = None
        progress = list(download(f"{base}/big.bin", folder))
    (dest,) = folder.glob("*-big.bin")
    assert dest.read_bytes() == payload
    assert files.requests[-1] == ("/big.bin", "bytes=300000-")
    assert progress[-1] == (len(payload), len(payload))


def test_the_real_validation_label_file_over_http(tmp_path: Path) -> None:
    require_data(OPENIMAGES)
    files = FileServer(OPENIMAGES)
    with files.serve() as base, allowed(base):
        items = collect(OpenImages(base, "/m/0199g", MIRROR, tmp_path / "cache").load())
    validation = [i for i in items if i.split == Split.VALIDATION]
    assert sum(i.known_label == Label.POSITIVE for i in validation) == 252
    assert sum(i.known_label == Label.NEGATIVE for i in validation) == 129
    assert all(i.location.startswith(f"{MIRROR}/validation/") for i in validation)


def test_a_gzip_manifest_cut_off_mid_way_raises(tmp_path: Path) -> None:
    whole = gzip.compress(("id,location\n" + "".join(
        f"i{k},/x/{k}.jpg\n" for k in range(20000))).encode())
    path = tmp_path / "cut.csv.gz"
    path.write_bytes(whole[:len(whole) // 2])
    with pytest.raises(EOFError):
        collect(load_manifest(path, 0.2, 0.2, 0))


def test_open_images_files_spread_over_several_sources(tmp_path: Path) -> None:
    write_open_images(tmp_path / "all")
    (tmp_path / "v5").mkdir()
    for path in (tmp_path / "all").glob("validation-*"):
        path.rename(tmp_path / "v5" / path.name)
    sources = f"{tmp_path / 'all'},{tmp_path / 'v5'}"
    check_open_images(collect(OpenImages(sources, "/m/0199g", MIRROR, tmp_path / "c").load()))


def test_manifest_columns_named_by_header_any_order(tmp_path: Path) -> None:
    """A labels file such as the street tiles' `filename,label,source_class` is a manifest."""
    (tmp_path / "images").mkdir()
    manifest = tmp_path / "labels.csv"
    rows = [f"images/p{i}.jpg,1,Bicycle" for i in range(10)]
    rows += [f"images/n{i}.jpg,0,Car" for i in range(30)]
    manifest.write_text("filename,label,source_class\n" + "\n".join(rows) + "\n")
    items = collect(load_manifest(manifest, 0.2, 0.2, seed=0))
    assert len(items) == 40
    by_id = {i.id: i for i in items}
    assert by_id["p0"].location == str((tmp_path / "images" / "p0.jpg").resolve())
    labelled = [i for i in items if i.known_label]
    assert {i.known_label for i in labelled} == {Label.POSITIVE, Label.NEGATIVE}
    assert len(labelled) == 16  # 20% + 20% of each class

    reordered = tmp_path / "reordered.csv"
    reordered.write_text("label,url,id\n1,https://img.example/a.jpg,a\n,https://img.example/b.jpg,b\n")
    items = {i.id: i for i in collect(load_manifest(reordered, 1.0, 0.0, seed=0))}
    assert items["a"].location == "https://img.example/a.jpg" and items["a"].known_label
    assert items["b"].location == "https://img.example/b.jpg" and not items["b"].known_label
