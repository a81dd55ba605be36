"""`make run`: the three services as separate local processes, wired together exactly as in
Kubernetes (gRPC between them, LMDB and SQLite on local disk). Waits until all are healthy,
prints the annotation page's URL, and stops them all cleanly on Ctrl-C."""

from __future__ import annotations

import argparse
import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from hitl.probes import grpc_serving, http_ok

ROOT = Path(__file__).resolve().parents[1]
OFFLINE_EXAMPLE = "make run DATASET=../shared/data/streetview-tiles/labels.csv EXTRACTOR=lite"
OPEN_IMAGES_HOST = ("storage.googleapis.com", 443)
START_TIMEOUT_S = 600.0


@dataclass
class Proc:
    name: str
    module: str
    env: dict[str, str]
    health: str  # "grpc:<port>" or "http:<url>"
    popen: subprocess.Popen | None = field(default=None, repr=False)


def _reachable(host: str, port: int, timeout: float = 3.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _healthy(check: str) -> bool:
    kind, _, target = check.partition(":")
    return grpc_serving(int(target)) if kind == "grpc" else http_ok(target)


def _tail(path: Path, lines: int = 3) -> str:
    text = path.read_text(errors="replace").strip().splitlines() if path.exists() else []
    return "\n".join(text[-lines:])


def plan(args: argparse.Namespace, state: Path) -> list[Proc]:
    env = os.environ
    feature_port = env.get("FEATURE_PORT", "50051")
    trainer_port = env.get("TRAINER_PORT", "50052")
    dataset = args.dataset
    if dataset not in ("openimages",) and not dataset.startswith(("http://", "https://")):
        dataset = str(Path(dataset).resolve())
    # One trainer state per (dataset, extractor): labels and models never mix across tasks.
    slug = hashlib.sha256(f"{dataset}|{args.extractor}".encode()).hexdigest()[:10]
    # The gRPC services listen on loopback only: `make run` configures no caller tokens
    # (each service says so in its log), so they are not offered to the network.
    return [
        Proc("feature", "feature_service", {
            "FEATURE_HOST": env.get("FEATURE_HOST", "127.0.0.1"),
            "FEATURE_PORT": feature_port,
            "FEATURE_METRICS_PORT": env.get("FEATURE_METRICS_PORT", "9101"),
            "FEATURE_EXTRACTOR": args.extractor,
            "FEATURE_CACHE_DIR": env.get("FEATURE_CACHE_DIR", str(state / "feature-cache")),
        }, f"grpc:{feature_port}"),
        Proc("trainer", "trainer_service", {
            "TRAINER_HOST": env.get("TRAINER_HOST", "127.0.0.1"),
            "TRAINER_PORT": trainer_port,
            "TRAINER_METRICS_PORT": env.get("TRAINER_METRICS_PORT", "9102"),
            "TRAINER_FEATURE_ADDR": f"127.0.0.1:{feature_port}",
            "TRAINER_DATASET": dataset,
            "TRAINER_DATA_DIR": env.get("TRAINER_DATA_DIR", str(state / f"trainer-{slug}")),
        }, f"grpc:{trainer_port}"),
        Proc("gateway", "annotation_gateway", {
            "GATEWAY_PORT": str(args.port),
            "GATEWAY_METRICS_PORT": env.get("GATEWAY_METRICS_PORT", "9103"),
            "GATEWAY_TRAINER_ADDR": f"127.0.0.1:{trainer_port}",
            "GATEWAY_FEATURE_ADDR": f"127.0.0.1:{feature_port}",
        }, f"http:http://127.0.0.1:{args.port}/healthz"),
    ]


def preflight(args: argparse.Namespace) -> str | None:
    """One clear line when the chosen defaults cannot run here, else None."""
    remote = args.dataset == "openimages" and not os.environ.get("TRAINER_OPENIMAGES_SOURCE")
    if remote and not _reachable(*OPEN_IMAGES_HOST):
        return ("Open Images cannot be reached from this machine (no network to "
                    f"{OPEN_IMAGES_HOST[0]}); offline, run: {OFFLINE_EXAMPLE}")
    return None


def stop_all(procs: list[Proc]) -> None:
    for proc in reversed(procs):
        if proc.popen is not None and proc.popen.poll() is None:
            proc.popen.send_signal(signal.SIGTERM)
    for proc in reversed(procs):
        if proc.popen is not None:
            try:
                proc.popen.wait(60)
            except subprocess.TimeoutExpired:
                proc.popen.kill()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", default="openimages",
                        help="openimages, a folder of images, or a manifest CSV")
    parser.add_argument("--extractor", default="resnext50-frcnn",
                        help="resnext50-frcnn or lite")
    parser.add_argument("--port", type=int, default=8080, help="annotation page port")
    parser.add_argument("--state", default=str(ROOT / ".run"), help="local state folder")
    args = parser.parse_args(argv)

    problem = preflight(args)
    if problem:
        print(problem, file=sys.stderr)
        return 1

    state = Path(args.state)
    logs = state / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    procs = plan(args, state)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt))
    try:
        for proc in procs:
            log = open(logs / f"{proc.name}.log", "ab")  # noqa: SIM115 - owned by the child
            proc.popen = subprocess.Popen(
                [sys.executable, "-m", proc.module], cwd=ROOT,
                env={**os.environ, **proc.env}, stdout=log, stderr=subprocess.STDOUT)
            log.close()
            print(f"starting {proc.name} (log: {logs / (proc.name + '.log')})", flush=True)
            deadline = time.monotonic() + START_TIMEOUT_S
            while not _healthy(proc.health):
                if proc.popen.poll() is not None:
                    print(f"{proc.name} exited ({proc.popen.returncode}):\n"
                          f"{_tail(logs / (proc.name + '.log'))}", file=sys.stderr)
                    if proc.name == "feature" and args.extractor != "lite":
                        print(f"Offline, run: {OFFLINE_EXAMPLE}", file=sys.stderr)
                    stop_all(procs)
                    return 1
                if time.monotonic() > deadline:
                    print(f"{proc.name} not healthy after {START_TIMEOUT_S:.0f}s",
                          file=sys.stderr)
                    stop_all(procs)
                    return 1
                time.sleep(0.3)
        print(f"\nAnnotation page: http://localhost:{args.port}/   (Ctrl-C stops all)",
              flush=True)
        while all(p.popen is not None and p.popen.poll() is None for p in procs):
            time.sleep(1.0)
        crashed = [p.name for p in procs if p.popen is not None and p.popen.poll() is not None]
        print(f"{', '.join(crashed)} stopped unexpectedly; stopping the rest", file=sys.stderr)
        stop_all(procs)
        return 1
    except KeyboardInterrupt:
        print("\nstopping...", flush=True)
        stop_all(procs)
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
