"""`make up` / `make down`: the `local` overlay, rendered by kustomize, run as pods by
`podman kube play`, with the changes that runtime needs (tools/kube_local.py). `up` waits
until every pod answers its readiness probe as written and prints the page's URL and the
sign-in tokens; `down` removes the pods, secrets and network (the volumes, which hold the
labels and the feature caches, stay unless asked).

The Secrets' values are generated on the first `up` and kept in .run/up/<project>/
secrets.json (git-ignored; delete it to rotate them): the overlay's development values
never run here."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tools.containers import ROOT, EngineError, exists, require_engine, run
from tools.kube_local import Obj, Options, Plan, Pod, adapt, generated_secrets
from tools.probes import grpc_serving, http_ok
from tools.run_choice import DEMO_TILES

START_TIMEOUT_S = 600.0


def kubectl() -> str:
    local = Path(sys.executable).parent / "kubectl"
    return str(local) if local.exists() else "kubectl"


def render(overlay: str = "local") -> list[Obj]:
    done = subprocess.run([kubectl(), "kustomize", str(ROOT / "deploy" / "k8s" / "overlays" /
                                                       overlay)],
                          capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise EngineError(f"kubectl kustomize failed: {done.stderr.strip()}")
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def probe(pod: Pod, kind: str = "readinessProbe", timeout: float = 2.0) -> bool:
    """Runs each container's probe of `kind` as written, against the pod's address."""
    for container in pod.document["spec"]["containers"]:
        spec = container.get(kind)
        if spec is None:
            continue
        ports = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
        if "grpc" in spec:
            ok = grpc_serving(spec["grpc"]["port"], spec["grpc"].get("service", ""),
                              host=pod.address)
        else:
            port = spec["httpGet"]["port"]
            ok = http_ok(f"http://{pod.address}:{ports.get(port, port)}"
                         f"{spec['httpGet']['path']}", timeout)
        if not ok:
            return False
    return True


@dataclass
class Stack:
    options: Options
    overlay: str = "local"
    state_dir: Path | None = None  # default: .run/up/<project>

    @property
    def state(self) -> Path:
        return self.state_dir or ROOT / ".run" / "up" / self.options.project

    def secret_values(self, rendered: list[Obj]) -> dict[str, dict[str, str]]:
        """Generated once, then reused (sign-in tokens stay valid across up and down)."""
        path = self.state / "secrets.json"
        fresh = generated_secrets(rendered)
        kept = json.loads(path.read_text()) if path.exists() else {}
        values = {name: {**keys, **kept.get(name, {})} for name, keys in fresh.items()}
        self.state.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(json.dumps(values, indent=2) + "\n")
        return values

    def plan(self, add: dict[str, dict[str, str]] | None = None) -> Plan:
        """The plan; `add` gives Secrets (by name, without kustomize's hash) more keys,
        e.g. another team's token in grpc-callers."""
        rendered = render(self.overlay)
        values = self.secret_values(rendered)
        for name, keys in (add or {}).items():
            values[next(v for v in values if v.rsplit("-", 1)[0] == name)].update(keys)
        return adapt(rendered, values, self.options)

    def up(self, plan: Plan, timeout: float = START_TIMEOUT_S) -> None:
        """Starts `plan` and waits until every pod is ready."""
        missing = sorted({c["image"] for p in plan.pods for c in p.document["spec"]["containers"]
                          if not exists("image", c["image"])})
        if missing:
            raise EngineError(f"images missing: {', '.join(missing)}: run `make images`")
        self.down(plan, quiet=True)
        if not exists("network", self.options.project):
            run("network", "create", "--subnet", self.options.subnet, self.options.project)
        for name, content in plan.secrets.items():
            run("secret", "create", name, "-", input=content)
        self.state.mkdir(parents=True, exist_ok=True)
        pods_file = self.state / "pods.yaml"
        pods_file.write_text(yaml.safe_dump_all(plan.documents, sort_keys=False))
        ips = [arg for address in plan.addresses for arg in ("--ip", address)]
        try:
            run("kube", "play", "--network", self.options.project, *ips, str(pods_file))
        except EngineError:
            self.down(plan, quiet=True)  # nothing half-started stays behind
            raise
        self.wait_ready(plan, timeout)

    def wait_ready(self, plan: Plan, timeout: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        waiting = list(plan.pods)
        while waiting:
            waiting = [p for p in waiting if not probe(p)]
            if waiting and time.monotonic() > deadline:
                logs = run("logs", "--tail", "20", f"{waiting[0].name}-{waiting[0].app}",
                           check=False)
                raise EngineError(f"not ready after {timeout:.0f}s (left running for a "
                                  f"look; `make down` removes them): "
                                  f"{', '.join(p.name for p in waiting)}\n{logs.stdout}"
                                  f"{logs.stderr}")
            time.sleep(1.0)

    def down(self, plan: Plan | None = None, volumes: bool = False, quiet: bool = False) -> None:
        """Removes the plan's pods, secrets, per-pod volumes and network; `volumes` also
        removes the claims (labels, models, feature caches)."""
        plan = plan or self.plan()
        for pod in plan.pods:
            if exists("pod", pod.name):
                run("pod", "rm", "--force", "--time", "30", pod.name, timeout=120)
                quiet or print(f"removed pod {pod.name}")
        for name in plan.secrets:
            run("secret", "rm", name, check=False)
        per_pod = [v.get("secret", {}).get("secretName") or v["name"]
                   for p in plan.pods for v in p.document["spec"].get("volumes", [])
                   if "secret" in v or "emptyDir" in v]
        for name in per_pod + (plan.claims if volumes else []):
            run("volume", "rm", "--force", name, check=False)
        if exists("network", self.options.project):
            run("network", "rm", self.options.project, check=False)


def summary(plan: Plan, values: dict[str, Any]) -> str:
    pages = [f"http://localhost:{p.host_ports['http']}/" for p in plan.pods
             if "http" in p.host_ports]
    annotators = next(v for k, v in values.items() if k.startswith("gateway-annotators"))
    lines = [f"Annotation page: {pages[0]}" + (f"  (other replicas: {', '.join(pages[1:])})"
                                                if pages[1:] else "")]
    lines += [f"  sign in as {name} with the token {token}" for name, token in annotators.items()]
    lines += [f"Feature service (gRPC, for other teams' clients): {p.address} and "
              f"127.0.0.1:{p.host_ports['grpc']}" for p in plan.pods if "grpc" in p.host_ports]
    lines += ["Only a cluster runs: " + ", ".join(plan.not_run) + " (Services as /etc/hosts "
              "entries here)", "Stop with `make down`."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.local_up",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["up", "down"])
    parser.add_argument("--dataset", default=os.environ.get("DATASET") or None,
                        help=f"a CSV manifest or a folder of images (default: {DEMO_TILES} "
                             "where it exists, else the overlay's own, openimages)")
    parser.add_argument("--port", type=int, default=8080, help="the first gateway's host port")
    parser.add_argument("--volumes", action="store_true", help="down: remove the volumes too")
    args = parser.parse_args(argv)
    dataset = Path(args.dataset) if args.dataset else (DEMO_TILES if DEMO_TILES.is_file()
                                                       else None)
    stack = Stack(Options(gateway_port=args.port, dataset=dataset))
    try:
        if require_engine() != "podman":
            raise EngineError("the pods run with podman kube play, and this machine has "
                              f"{require_engine()}: use a cluster (deploy/README.md)")
        if args.action == "down":
            stack.down(volumes=args.volumes)
            return 0
        plan = stack.plan()
        print(f"starting {len(plan.pods)} pods ({', '.join(p.name for p in plan.pods)}) with "
              f"{'the dataset ' + str(dataset) if dataset else 'the overlay dataset'} ...",
              flush=True)
        stack.up(plan)
        print(summary(plan, json.loads((stack.state / "secrets.json").read_text())))
    except EngineError as exc:
        print(f"{args.action}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
