"""`make run` (`python -m tools.run_local`, or `hitl-run`): the three services as separate
local processes, wired together exactly as in Kubernetes (gRPC between them, LMDB and
SQLite on local disk). Without --dataset and --extractor it runs what this machine can
(tools/run_choice.py); with --tasks (`make run TASKS=file`) the trainer answers the
tasks that file names (docs/tasks.md) instead of the one task of its settings. Waits
until all are healthy, prints the annotation page's URL, and stops them all cleanly on
Ctrl-C or SIGTERM. Run it from a checkout: the services find the UI, the models and the
state folder there."""

from __future__ import annotations

import argparse
import hashlib
import os
import signal
import sys
import time
from pathlib import Path

from hitl.config import program_name
from tools.run_choice import FULL_EXTRACTOR, OFFLINE, OPEN_IMAGES, CannotRun, Choice, choose
from tools.supervisor import ServiceProcess, StartError, stop_all

START_TIMEOUT_S = 600.0


def plan(choice: Choice, port: int, state: Path, tasks: str = "") -> list[ServiceProcess]:
    """The three services; ports and the state folder can be moved by the usual
    variables (FEATURE_PORT, TRAINER_PORT, *_METRICS_PORT, FEATURE_CACHE_DIR,
    TRAINER_DATA_DIR)."""
    env = os.environ
    feature_port = int(env.get("FEATURE_PORT", "50051"))
    trainer_port = int(env.get("TRAINER_PORT", "50052"))
    dataset = choice.dataset
    if dataset != OPEN_IMAGES and not dataset.startswith(("http://", "https://")):
        dataset = str(Path(dataset).resolve())
    # One trainer state per (dataset, extractor): features never mix across datasets,
    # and labels and models never across tasks (each task's are its own).
    slug = hashlib.sha256(f"{dataset}|{choice.extractor}".encode()).hexdigest()[:10]
    logs, cwd = state / "logs", Path.cwd()
    # The gRPC services listen on loopback only: `make run` configures no caller tokens
    # (each service says so in its log), so they are not offered to the network.
    return [
        ServiceProcess("feature_service", {
            "FEATURE_HOST": env.get("FEATURE_HOST", "127.0.0.1"),
            "FEATURE_PORT": str(feature_port),
            "FEATURE_METRICS_PORT": env.get("FEATURE_METRICS_PORT", "9101"),
            "FEATURE_EXTRACTOR": choice.extractor,
            "FEATURE_CACHE_DIR": env.get("FEATURE_CACHE_DIR", str(state / "feature-cache")),
        }, logs / "feature.log", port=feature_port, name="feature", cwd=cwd),
        ServiceProcess("trainer_service", {
            "TRAINER_HOST": env.get("TRAINER_HOST", "127.0.0.1"),
            "TRAINER_PORT": str(trainer_port),
            "TRAINER_METRICS_PORT": env.get("TRAINER_METRICS_PORT", "9102"),
            "TRAINER_FEATURE_ADDR": f"127.0.0.1:{feature_port}",
            "TRAINER_DATASET": dataset,
            "TRAINER_DATA_DIR": env.get("TRAINER_DATA_DIR", str(state / f"trainer-{slug}")),
            # Tasks share the dataset's state (its features); each keeps its own labels.
            **({"TRAINER_TASKS_FILE": str(Path(tasks).resolve())} if tasks else {}),
        }, logs / "trainer.log", port=trainer_port, name="trainer", cwd=cwd),
        ServiceProcess("annotation_gateway", {
            # Loopback: no sign-in, each annotator chooses a name (the local demo).
            "GATEWAY_HOST": env.get("GATEWAY_HOST", "127.0.0.1"),
            "GATEWAY_PORT": str(port),
            "GATEWAY_METRICS_PORT": env.get("GATEWAY_METRICS_PORT", "9103"),
            "GATEWAY_TRAINER_ADDR": f"127.0.0.1:{trainer_port}",
            "GATEWAY_FEATURE_ADDR": f"127.0.0.1:{feature_port}",
        }, logs / "gateway.log", name="gateway", cwd=cwd,
            http_health=f"http://127.0.0.1:{port}/healthz"),
    ]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=program_name("tools.run_local"), description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default=None,
                        help="openimages, a folder of images, or a manifest CSV (default: "
                             "openimages where it and the resnext50-frcnn weights can be "
                             "had, else the offline demo's street tiles)")
    parser.add_argument("--extractor", default=None, choices=["resnext50-frcnn", "lite"],
                        help="default: resnext50-frcnn where its weights are present, "
                             "else lite")
    parser.add_argument("--port", type=int, default=8080, help="annotation page port")
    parser.add_argument("--tasks", default="",
                        help="a TOML tasks file: the questions the trainer answers over the "
                             "dataset, each with its own labels, model and page (default: one "
                             "task from the trainer's settings)")
    parser.add_argument("--state", default=".run", help="local state folder")
    return parser.parse_args(argv)


def start(services: list[ServiceProcess], choice: Choice) -> bool:
    """Starts each service once the one before is healthy; False (all stopped, the
    reason printed) when one does not come up."""
    for service in services:
        service.start()
        print(f"starting {service.name} (log: {service.log_path})", flush=True)
        try:
            service.wait_healthy(START_TIMEOUT_S)
        except StartError as exc:
            print(exc, file=sys.stderr)
            if service.name == "feature" and choice.extractor == FULL_EXTRACTOR:
                print(f"{FULL_EXTRACTOR} did not start; {OFFLINE}", file=sys.stderr)
            stop_all(services)
            return False
    return True


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        choice = choose(args.dataset, args.extractor)
    except CannotRun as exc:
        print(f"make run: {exc}", file=sys.stderr)
        return 1
    if choice.note:
        print(choice.note, flush=True)
    if args.tasks and not Path(args.tasks).is_file():
        print(f"make run: no tasks file {args.tasks}", file=sys.stderr)
        return 1
    services = plan(choice, args.port, Path(args.state).resolve(), args.tasks)

    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    try:
        if not start(services, choice):
            return 1
        print(f"\nAnnotation page: http://localhost:{args.port}/   (Ctrl-C stops all)",
              flush=True)
        if args.tasks:
            print(f"Tasks: http://localhost:{args.port}/tasks", flush=True)
        while all(s.running() for s in services):
            time.sleep(1.0)
        crashed = [s.name for s in services if not s.running()]
        print(f"{', '.join(crashed)} stopped unexpectedly; stopping the rest", file=sys.stderr)
        stop_all(services)
        return 1
    except KeyboardInterrupt:
        print("\nstopping...", flush=True)
        stop_all(services)
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
