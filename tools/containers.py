"""The container engine behind `make images`, `make up` and the container tests: podman,
or docker where that is what the machine has, always run with deploy/containers.conf
unless CONTAINERS_CONF names another file."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONTAINERS_CONF = ROOT / "deploy" / "containers.conf"
NO_ENGINE = ("no container engine here: install podman (apt-get install podman buildah runc "
             "fuse-overlayfs slirp4netns uidmap) or start docker")


class EngineError(RuntimeError):
    """A command of the engine failed; the message ends with what it printed."""


def environment() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("CONTAINERS_CONF", str(CONTAINERS_CONF))
    return env


@functools.cache
def engine() -> str | None:
    """podman where it runs, else docker where its daemon answers, else None;
    CONTAINER_ENGINE picks one."""
    chosen = os.environ.get("CONTAINER_ENGINE")
    for name in [chosen] if chosen else ["podman", "docker"]:
        if shutil.which(name) is None:
            continue
        probe = subprocess.run([name, "info"], capture_output=True, env=environment(),
                               timeout=60, check=False)
        if probe.returncode == 0:
            return name
    return None


def require_engine() -> str:
    name = engine()
    if name is None:
        raise EngineError(NO_ENGINE)
    return name


def run(*args: str, check: bool = True, input: str | None = None,
        timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """`<engine> args...`, its output captured; EngineError when it fails and `check`."""
    done = subprocess.run([require_engine(), *args], capture_output=True, text=True,
                          input=input, env=environment(), timeout=timeout, check=False)
    if check and done.returncode != 0:
        raise EngineError(f"{require_engine()} {' '.join(args[:3])} failed "
                          f"({done.returncode}): {(done.stderr or done.stdout).strip()[-2000:]}")
    return done


def exists(kind: str, name: str) -> bool:
    """Whether the engine has the image, volume, secret, network or pod `name`."""
    if engine() == "docker" and kind == "image":
        return run("image", "inspect", name, check=False).returncode == 0
    return run(kind, "exists", name, check=False).returncode == 0


def version() -> str:
    """The project's version (pyproject.toml), which tags the images."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return str(project["version"])
