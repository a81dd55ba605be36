"""What `make run` runs: told nothing, the full setup where it can be had and otherwise
the offline demo, said in one line; told explicitly, exactly that or a one-line refusal."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.probes import free_port
from tools.run_choice import CannotRun, Checks, choose, reachable


def checks(tmp_path: Path, open_images: bool, weights: bool, tiles: bool = True) -> Checks:
    labels = tmp_path / "tiles" / "labels.csv"
    if tiles:
        labels.parent.mkdir(exist_ok=True)
        labels.write_text("filename,label\n")
    return Checks(open_images=lambda: open_images, weights=lambda: weights, tiles=labels)


def test_an_unused_port_is_unreachable() -> None:
    assert not reachable(("127.0.0.1", free_port()), timeout=1.0)


def test_an_unreachable_host_and_no_weights_fall_back_to_the_offline_demo(
        tmp_path: Path) -> None:
    no_network = Checks(open_images=lambda: reachable(("127.0.0.1", free_port()), 1.0),
                        weights=lambda: False, tiles=checks(tmp_path, False, False).tiles)
    choice = choose(None, None, no_network)
    assert (choice.dataset, choice.extractor) == (str(no_network.tiles), "lite")
    assert choice.note is not None and "\n" not in choice.note
    assert "Open Images cannot be reached" in choice.note and "offline demo" in choice.note


def test_reachable_open_images_without_weights_is_still_the_demo(tmp_path: Path) -> None:
    choice = choose(None, None, checks(tmp_path, open_images=True, weights=False))
    assert choice.extractor == "lite" and choice.dataset.endswith("labels.csv")
    assert choice.note and "make weights" in choice.note


def test_the_full_setup_where_both_can_be_had(tmp_path: Path) -> None:
    choice = choose(None, None, checks(tmp_path, open_images=True, weights=True))
    assert (choice.dataset, choice.extractor) == ("openimages", "resnext50-frcnn")


def test_without_the_tiles_either_it_says_in_one_line_what_to_pass(tmp_path: Path) -> None:
    with pytest.raises(CannotRun) as refused:
        choose(None, None, checks(tmp_path, False, False, tiles=False))
    message = str(refused.value)
    assert "\n" not in message
    assert "make run DATASET=" in message and "EXTRACTOR=lite" in message


def test_explicit_choices_run_as_given(tmp_path: Path) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    everything = checks(tmp_path, open_images=True, weights=True)
    assert choose(str(folder), "lite", everything) == choose(str(folder), "lite",
                                                             checks(tmp_path, False, False))
    choice = choose(str(folder), "lite", everything)
    assert (choice.dataset, choice.extractor, choice.note) == (str(folder), "lite", None)
    assert choose("openimages", "resnext50-frcnn", everything).note is None


@pytest.mark.parametrize("dataset,extractor,expected", [
    ("openimages", "lite", "Open Images cannot be reached"),
    ("ok", "resnext50-frcnn", "resnext50-frcnn weights are not here"),
    ("missing.csv", "lite", "missing.csv not found"),
])
def test_explicit_choices_that_cannot_run_fail_clearly(tmp_path: Path, dataset: str,
                                                       extractor: str, expected: str) -> None:
    (tmp_path / "ok").mkdir()
    dataset = str(tmp_path / dataset) if dataset != "openimages" else dataset
    with pytest.raises(CannotRun) as refused:
        choose(dataset, extractor, checks(tmp_path, open_images=False, weights=False))
    assert expected in str(refused.value) and "\n" not in str(refused.value)


def test_one_choice_given_the_other_is_picked_and_said(tmp_path: Path) -> None:
    offline = checks(tmp_path, open_images=False, weights=False)
    only_extractor = choose(None, "lite", offline)
    assert only_extractor.dataset == str(offline.tiles) and only_extractor.note
    only_dataset = choose(str(offline.tiles), None, offline)
    assert only_dataset.extractor == "lite" and only_dataset.note
    online = checks(tmp_path, open_images=True, weights=True)
    assert choose(None, "lite", online).dataset == "openimages"
    assert choose(str(online.tiles), None, online).extractor == "resnext50-frcnn"
