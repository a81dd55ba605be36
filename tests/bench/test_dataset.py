"""Labelled datasets for the simulator: both CSV layouts, clear errors, stratified
subsets, and a manifest the trainer can read."""

import csv

import pytest

from bench.dataset import DatasetError, read_labelled, stratified_subset, write_manifest
from tests.support import TILES, require_data


def test_reads_the_street_view_tiles():
    require_data(TILES)
    examples = read_labelled(TILES)  # a folder means its labels.csv
    assert len(examples) == 7326
    assert sum(e.label for e in examples) == 528
    assert all(e.location.startswith(str(TILES.resolve())) for e in examples[:10])


def test_reads_a_manifest_with_relative_and_url_locations(tmp_path):
    (tmp_path / "m.csv").write_text(
        "id,location,label\na,img/a.jpg,positive\nb,https://x.test/b.jpg,0\nc,img/c.jpg,\n")
    examples = read_labelled(tmp_path / "m.csv")
    assert [(e.id, e.label) for e in examples] == [("a", True), ("b", False)]
    assert examples[0].location == str(tmp_path / "img" / "a.jpg")
    assert examples[1].location == "https://x.test/b.jpg"


@pytest.mark.parametrize("text,message", [
    ("id,location\na,x.jpg\n", "needs columns"),
    ("id,location,label\na,x.jpg,maybe\n", "label 'maybe'"),
    ("id,location,label\na,x.jpg,1\na,y.jpg,0\n", "not unique"),
    ("id,location,label\na,x.jpg,\n", "no labelled rows"),
])
def test_unusable_files_say_why(tmp_path, text, message):
    (tmp_path / "m.csv").write_text(text)
    with pytest.raises(DatasetError, match=message):
        read_labelled(tmp_path / "m.csv")


def test_subset_keeps_the_positive_rate_and_is_repeatable(tmp_path):
    (tmp_path / "m.csv").write_text("id,location,label\n" + "".join(
        f"i{n},i{n}.jpg,{int(n % 10 == 0)}\n" for n in range(1000)))
    examples = read_labelled(tmp_path / "m.csv")
    subset = stratified_subset(examples, 200, seed=3)
    assert len(subset) == 200 and len({e.id for e in subset}) == 200
    assert sum(e.label for e in subset) == 20
    assert subset == stratified_subset(examples, 200, seed=3)
    assert sum(e.label for e in stratified_subset(examples, 5)) >= 1

    path = write_manifest(subset, tmp_path / "out" / "manifest.csv")
    with path.open() as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["id", "location", "label"]
    assert {r[2] for r in rows[1:]} == {"0", "1"}
    assert read_labelled(path) == subset
