"""`python -m tools.predict` (what `make predict` runs) against a real trainer: it scores
the whole dataset with progress bars and writes one row per item; a dataset given on the
command line is imported first; a trainer it cannot reach is one clear line."""

from __future__ import annotations

import csv
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.gateway.conftest import Manifest, TrainerProcess
from tests.predict.conftest import Feature, labelled_tiles, train_on_truth
from tests.support import ROOT, TILES, free_port


@pytest.fixture(scope="module")
def cli_trainer(tmp_path_factory: pytest.TempPathFactory,
                predict_feature: Feature) -> Iterator[tuple[TrainerProcess, Manifest]]:
    tiles = labelled_tiles(tmp_path_factory.mktemp("cli-tiles") / "tiles.csv", 40, 110)
    trainer = TrainerProcess(tmp_path_factory.mktemp("cli-trainer"), predict_feature.addr,
                             tiles, {"TRAINER_PREFETCH": "20"}).start()
    try:
        assert train_on_truth(trainer, tiles.labels, 20).adopted
        yield trainer, tiles
    finally:
        trainer.stop()


def predict(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tools.predict", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def test_predict_scores_every_item_and_writes_the_file(
        cli_trainer: tuple[TrainerProcess, Manifest], tmp_path: Path):
    trainer, tiles = cli_trainer
    out = tmp_path / "predictions.csv"
    result = predict("--trainer", trainer.addr, "--out", str(out))
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(out.open()))
    assert sorted(r["item_id"] for r in rows) == sorted(tiles.labels)
    assert list(rows[0]) == ["item_id", "probability", "decision", "model_version",
                             "labelled", "label", "known_label", "split"]
    # tqdm's bars: the scoring job (the pool items not embedded yet) and the rows written.
    assert "embedding: 100%" in result.stderr and "writing: 100%" in result.stderr
    assert f"{len(tiles.labels)} items scored" in result.stderr
    # (the labels' features may still arrive after the first model: the model is whichever
    # is in use when the export starts, and the file names it on every row)
    versions = {r["model_version"] for r in rows}
    assert len(versions) == 1
    assert f"{len(tiles.labels)} predictions of model {versions.pop()} written" in result.stderr
    assert not list(tmp_path.glob("*.part"))

    # A dataset given on the command line joins first: 10 more tiles, then every row.
    extra = tmp_path / "extra.csv"
    with open(TILES / "labels.csv") as f:
        names = [r["filename"] for r in csv.DictReader(f)][-10:]
    extra.write_text("id,location\n" + "".join(f"extra-{Path(n).stem},{TILES / n}\n"
                                               for n in names))
    jsonl = tmp_path / "predictions.jsonl"
    more = predict("--trainer", trainer.addr, "--out", str(jsonl), "--dataset", str(extra))
    assert more.returncode == 0, more.stderr
    lines = jsonl.read_text().splitlines()
    assert len(lines) == len(tiles.labels) + 10 and '"item_id":"extra-' in jsonl.read_text()


def test_an_unreachable_trainer_is_one_clear_line(tmp_path: Path):
    out = tmp_path / "p.csv"
    result = predict("--trainer", f"127.0.0.1:{free_port()}", "--out", str(out), timeout=120)
    assert result.returncode == 1 and not out.exists()
    assert "predict: the trainer at 127.0.0.1:" in result.stderr
    assert "UNAVAILABLE" in result.stderr and "Traceback" not in result.stderr
