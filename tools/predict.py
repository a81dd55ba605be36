"""`make predict` / `python -m tools.predict`: the running trainer's prediction for every
item of its dataset, written to a CSV or JSON-lines file, with progress bars.

    python -m tools.predict --out predictions.csv [--trainer localhost:50052]
                           [--dataset PATH] [--format csv|jsonl] [--no-score]

It asks the trainer to score the whole dataset (the job that embeds every item still
without features, in bulk), follows the job, then streams the export. `--dataset` imports
a folder or manifest into the trainer's dataset first (items it already has are left as
they are), so that new images are scored too; they also become candidates for annotation.
The file has the columns of `GET /api/predictions` (hitl/prediction_rows.py).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import grpc
from tqdm import tqdm

from hitl import prediction_rows
from hitl.v1 import trainer_pb2, trainer_pb2_grpc

POLL_S = 0.5
EXPORT_DEADLINE_S = 3600.0


def dataset_kind(location: str) -> trainer_pb2.DatasetKind.ValueType:
    if location.lower() == "openimages":
        return trainer_pb2.DATASET_KIND_OPEN_IMAGES
    if Path(location).is_dir():
        return trainer_pb2.DATASET_KIND_FOLDER
    return trainer_pb2.DATASET_KIND_MANIFEST


def import_dataset(stub: trainer_pb2_grpc.TrainerServiceStub, location: str) -> None:
    bar = tqdm(total=1.0, desc="importing", unit="", bar_format="{desc}: {percentage:3.0f}%|"
               "{bar}| {postfix}", file=sys.stderr)
    request = trainer_pb2.ImportDatasetRequest(kind=dataset_kind(location), location=location)
    for response in stub.ImportDataset(request, timeout=EXPORT_DEADLINE_S):
        progress = response.progress
        if progress.fraction >= 0:
            bar.n = progress.fraction
        bar.set_postfix_str(f"{progress.items_loaded:,} items: {progress.message}")
        if progress.state == trainer_pb2.LOADING_STATE_FAILED:
            bar.close()
            raise SystemExit(f"importing {location} failed: {progress.message}")
    bar.close()


def score(stub: trainer_pb2_grpc.TrainerServiceStub) -> None:
    """Starts the scoring job (or joins the one running) and follows it to its end."""
    scoring = stub.ScoreDataset(trainer_pb2.ScoreDatasetRequest(), timeout=10).scoring
    bar = tqdm(total=max(scoring.total, 0), desc="embedding", unit="img", file=sys.stderr)
    while scoring.state == trainer_pb2.SCORING_STATE_RUNNING:
        time.sleep(POLL_S)
        scoring = stub.GetStatus(trainer_pb2.GetStatusRequest(), timeout=10).status.scoring
        bar.total = scoring.total
        bar.n = scoring.embedded + scoring.failed
        bar.set_postfix_str(scoring.message[:60])
    bar.close()
    if scoring.state == trainer_pb2.SCORING_STATE_FAILED:
        raise SystemExit(f"scoring the dataset failed: {scoring.message}")
    print(f"scoring: {scoring.message}", file=sys.stderr)


def export(stub: trainer_pb2_grpc.TrainerServiceStub, out: Path, fmt: str) -> tuple[int, str]:
    """Writes the predictions to `out` (complete or not at all); returns (rows, model)."""
    tmp = out.with_name(out.name + ".part")
    rows, version = 0, ""
    bar = tqdm(desc="writing", unit="row", unit_scale=True, file=sys.stderr)
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write(prediction_rows.header(fmt))
            call = stub.ExportPredictions(trainer_pb2.ExportPredictionsRequest(),
                                          timeout=EXPORT_DEADLINE_S)
            for batch in call:
                bar.total, version = batch.total, batch.model_version
                f.write(prediction_rows.rows(fmt, batch))
                rows += len(batch.item_ids)
                bar.update(len(batch.item_ids))
        os.replace(tmp, out)
    finally:
        bar.close()
        tmp.unlink(missing_ok=True)
    return rows, version


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.predict",
                                     description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, required=True, help="file to write")
    parser.add_argument("--trainer", default=os.environ.get("TRAINER_ADDR", "localhost:50052"),
                        help="trainer address (default: $TRAINER_ADDR or localhost:50052)")
    parser.add_argument("--dataset", default="",
                        help="a folder or manifest to import into the trainer's dataset first")
    parser.add_argument("--format", choices=sorted(prediction_rows.FORMATS),
                        help="csv or jsonl (default: from the file name, else csv)")
    parser.add_argument("--no-score", action="store_true",
                        help="export the items embedded now, without the scoring job")
    args = parser.parse_args(argv)
    fmt = args.format or ("jsonl" if args.out.suffix in (".jsonl", ".ndjson") else "csv")
    try:
        with grpc.insecure_channel(args.trainer, options=[
                ("grpc.max_receive_message_length", 64 << 20)]) as channel:
            stub = trainer_pb2_grpc.TrainerServiceStub(channel)
            if args.dataset:
                import_dataset(stub, args.dataset)
            if not args.no_score:
                score(stub)
            rows, version = export(stub, args.out, fmt)
    except grpc.RpcError as exc:
        code = exc.code().name if hasattr(exc, "code") else "UNKNOWN"
        details = exc.details() if hasattr(exc, "details") else str(exc)
        print(f"predict: the trainer at {args.trainer} answered {code}: {details}",
              file=sys.stderr)
        return 1
    print(f"{rows:,} predictions of model {version} written to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
