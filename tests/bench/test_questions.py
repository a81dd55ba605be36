"""The tiles' other questions in the simulator: "is it a hydrant?" read from the
`source_class` column, the halves split by the file name's first digit, and the task
the trainer is started with the one the benches resolve its detector class from."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from bench import questions, simulate
from bench.dataset import DatasetError, read_labelled
from hitl.config import load
from hitl.evidence import DetectorClass
from tests.support import TILES, require_data
from trainer_service.config import Config
from trainer_service.features.task_evidence import choose_row


def test_a_question_is_a_source_class() -> None:
    require_data(TILES)
    hydrants = read_labelled(TILES, "Hydrant")
    assert len(hydrants) == 7326 and sum(e.label for e in hydrants) == 616
    bicycles = read_labelled(TILES, "Bicycle")
    assert [e.label for e in bicycles] == [e.label for e in read_labelled(TILES)]
    with pytest.raises(DatasetError, match="no item's source_class is 'Unicorn'"):
        read_labelled(TILES, "Unicorn")


def test_the_halves_are_the_file_names_first_digits() -> None:
    require_data(TILES)
    examples = read_labelled(TILES, "Traffic Light")
    tune, confirm = (simulate.half_of(examples, h) for h in ("tune", "confirm"))
    assert {Path(e.location).name[0] for e in tune} == set("01234")
    assert {Path(e.location).name[0] for e in confirm} == set("56789")
    assert len(tune) + len(confirm) == len(examples)  # every tile's name starts with a digit
    assert Counter(e.label for e in tune)[True] + Counter(e.label for e in confirm)[True] == 488


@pytest.mark.parametrize("question,wanted,expected", [
    (None, "auto", "Bicycle"), ("Bicycle", "auto", "Bicycle"), ("Hydrant", "auto", None),
    ("Hydrant", "fire hydrant", "fire hydrant"), ("Bus", "Vehicle", "Vehicle"),
    ("Bicycle", "none", None)])
def test_the_trainer_gets_the_task_the_benches_resolve(question: str | None, wanted: str,
                                                       expected: str | None) -> None:
    """The simulator's settings, read as the trainer reads them (an empty setting would
    be the default, the bicycle's label), choose the same detector class as the Task the
    offline benches build."""
    classes = [DetectorClass("Bicycle", "/m/0199g", "Bicycle"), DetectorClass("Vehicle"),
               DetectorClass("fire hydrant", "/m/01pns0", "Fire hydrant")]
    config = load(Config, questions.task_env(question, wanted))
    task = questions.task_of(question, wanted)
    row = choose_row(classes, config.detector_class, config.label_id, config.display_name)
    assert row == choose_row(classes, task.detector_class, task.label_id, task.display_name)
    assert (classes[row].name if row is not None else None) == expected
