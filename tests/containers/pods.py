"""A running copy of the local overlay's pods for one test module (tools/local_up.py): its
own project name, network, host ports and state, and a dataset of real street tiles
mounted read-only; what the tests ask of it (probes, metrics, the engine's view)."""

from __future__ import annotations

import contextlib
import csv
import itertools
import json
import os
import re
import shutil
import signal
import socket
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support import TILES, free_port
from tools.containers import ROOT, run
from tools.kube_local import Options, Plan, Pod
from tools.local_up import Stack

CSRF = {"X-Requested-With": "hitl-containers"}
# Each stack's container logs, kept after the run.
LOGS = ROOT / "artifacts" / "containers"
SUBNETS = itertools.count(80)  # 10.89.80.0/24 on: apart from `make up`'s


def tiles_dataset(folder: Path, positives: int, negatives: int) -> dict[str, int]:
    """A copy of the first shared tiles of each class, as the demo lays them out
    (images/ and labels.csv); returns item id -> label."""
    with open(TILES / "labels.csv", newline="") as f:
        rows = sorted(csv.DictReader(f), key=lambda r: r["filename"])
    chosen = ([r for r in rows if r["label"] == "1"][:positives]
              + [r for r in rows if r["label"] == "0"][:negatives])
    (folder / "images").mkdir(parents=True)
    with open(folder / "labels.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["filename", "label"])
        for row in chosen:
            shutil.copyfile(TILES / row["filename"], folder / row["filename"])
            writer.writerow([row["filename"], row["label"]])
    for path in (folder, folder / "images"):
        path.chmod(0o755)  # the pods' user reads it
    return {Path(r["filename"]).stem: int(r["label"]) for r in chosen}


def two_free_ports() -> int:
    """A port whose next one is free too (the second gateway replica's)."""
    while True:
        port = free_port()
        with contextlib.suppress(OSError), socket.socket() as s:
            s.bind(("127.0.0.1", port + 1))
            return port


@dataclass
class Running:
    stack: Stack
    plan: Plan
    values: dict[str, dict[str, str]]

    def pods(self, app: str) -> list[Pod]:
        return [p for p in self.plan.pods if p.app == app]

    def pod(self, app: str, index: int = 0) -> Pod:
        return self.pods(app)[index]

    def container(self, pod: Pod) -> str:
        return f"{pod.name}-{pod.document['spec']['containers'][0]['name']}"

    def url(self, index: int = 0) -> str:
        return f"http://127.0.0.1:{self.pod('gateway', index).host_ports['http']}"

    def secret(self, name: str) -> dict[str, str]:
        return next(v for k, v in self.values.items() if k.rsplit("-", 1)[0] == name)

    def inspect(self, pod: Pod) -> dict[str, Any]:
        return dict(json.loads(run("inspect", self.container(pod)).stdout)[0])

    def metrics(self, pod: Pod) -> str:
        port = next(p["containerPort"] for p in pod.document["spec"]["containers"][0]["ports"]
                    if p["name"] == "metrics")
        with urllib.request.urlopen(f"http://{pod.address}:{port}/metrics", timeout=10) as r:
            return str(r.read().decode())

    def counter(self, pod: Pod, name: str) -> float:
        """The sum of a metric's samples (every label set) in the pod's /metrics."""
        pattern = rf"^{re.escape(name)}(?:\{{[^}}]*\}})? (\S+)$"
        return sum(float(m.group(1)) for m in re.finditer(pattern, self.metrics(pod), re.M))

    def kill(self, pod: Pod) -> int:
        """SIGKILL to the service's process, as a crash would; returns its host pid."""
        pid = int(self.inspect(pod)["State"]["Pid"])
        os.kill(pid, signal.SIGKILL)
        return pid

    def exits(self, pod: Pod) -> list[int]:
        """The exit codes of the container's deaths, from the engine's events."""
        done = run("events", "--stream=false", "--filter", f"container={self.inspect(pod)['Id']}",
                   "--filter", "event=died", "--format", "{{.ContainerExitCode}}")
        return [int(code) for code in done.stdout.split()]

    def logs(self, pod: Pod) -> str:
        done = run("logs", self.container(pod), check=False)
        return str(done.stdout + done.stderr)


@contextlib.contextmanager
def running(tmp: Path, dataset: Path, add: dict[str, dict[str, str]] | None = None,
            edit: Callable[[Plan], None] | None = None) -> Iterator[Running]:
    """The pods, ready; `add` gives Secrets more keys, `edit` changes the plan before it
    runs. Every container's log is kept in artifacts/containers/<project>/ afterwards."""
    options = Options(project=f"hitl-test-{next(SUBNETS)}", gateway_port=two_free_ports(),
                      feature_port=free_port(), dataset=dataset)
    options.subnet = f"10.89.{options.project.rsplit('-', 1)[1]}.0/24"
    stack = Stack(options, state_dir=tmp / "state")
    plan = stack.plan(add)
    if edit is not None:
        edit(plan)
    values = json.loads((stack.state / "secrets.json").read_text())
    for name, keys in (add or {}).items():
        values[next(v for v in values if v.rsplit("-", 1)[0] == name)].update(keys)
    started = Running(stack, plan, values)
    try:
        stack.up(plan)
        yield started
    finally:
        logs = LOGS / options.project
        logs.mkdir(parents=True, exist_ok=True)
        for pod in plan.pods:
            (logs / f"{pod.name}.log").write_text(started.logs(pod))
        stack.down(plan, volumes=True, quiet=True)
