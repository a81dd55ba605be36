"""`make images`: hitl/feature, hitl/trainer and hitl/gateway from deploy/docker/, tagged
with the project's version and `dev`, with podman (or docker).

The feature image comes in two variants: `cpu` (the lite extractor on ONNX Runtime, no
torch, no CUDA: what the local overlay runs) and `cuda` (resnext50-frcnn on PyPI's CUDA
torch: what the gpu overlay runs). Without a GPU `make images` builds `cpu`; `cuda` is
built where its wheels and weights can be had, and otherwise refused in one line.
Builds read the same package indexes as `make install` (tools/build_settings.py) and use
the Debian-made bases of `make base-images` where those exist. Each build's time and the
image's size are printed and kept in artifacts/images.json."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass

from tools import base_images
from tools.build_settings import collect, volume_arguments
from tools.containers import ROOT, EngineError, environment, require_engine, run, version
from tools.locks import CUDA_STACK, blocks
from tools.run_choice import reachable

DOCKER = ROOT / "deploy" / "docker"
REPOSITORIES = {"feature": "hitl/feature", "trainer": "hitl/trainer", "gateway": "hitl/gateway"}
# The feature image's variants: its build arguments.
FEATURE_VARIANTS = {"cpu": {"EXTRACTOR": "lite"}, "cuda": {"EXTRACTOR": "resnext50-frcnn"}}
WEIGHTS_HOST = ("download.pytorch.org", 443)
RECORD = ROOT / "artifacts" / "images.json"


@dataclass
class Built:
    image: str
    seconds: float
    bytes: int
    base: str
    no_cache: bool


def tags(service: str, variant: str = "cpu") -> list[str]:
    """The image's names: version and dev (the feature's with its variant)."""
    repository, suffix = REPOSITORIES[service], f"-{variant}" if service == "feature" else ""
    return [f"{repository}:{version()}{suffix}", f"{repository}:dev{suffix}"]


def has_gpu() -> bool:
    if shutil.which("nvidia-smi") is None:
        return False
    return subprocess.run(["nvidia-smi", "-L"], capture_output=True, timeout=60,
                          check=False).returncode == 0


def cuda_refusal() -> str | None:
    """Why the CUDA feature image cannot be built here (one line), or None."""
    stack = "".join(b for b in blocks((ROOT / "requirements" / "feature.txt").read_text())
                    if CUDA_STACK.match(b))
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as lock:
        lock.write(stack)
        lock.flush()
        # Resolves the pinned, hashed wheels without installing them (seconds).
        done = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--quiet",
                               "--no-deps", "--ignore-installed", "--require-hashes",
                               "--report", os.devnull, "-r", lock.name],
                              capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        return ("torch's CUDA wheels (requirements/feature.txt) cannot be had from this "
                "machine's package index")
    if not reachable(WEIGHTS_HOST):
        return (f"the resnext50-frcnn weights cannot be downloaded ({WEIGHTS_HOST[0]} "
                "is unreachable)")
    return None


def feature_variant(asked: str) -> str:
    if asked == "cpu" or (asked == "auto" and not has_gpu()):
        return "cpu"
    refusal = cuda_refusal()
    if refusal is None:
        return "cuda"
    if asked == "cuda":
        raise EngineError(f"the CUDA feature image cannot be built here: {refusal}")
    print(f"a GPU is here, but {refusal}: building the CPU feature image", flush=True)
    return "cpu"


def base_arguments(asked: str) -> tuple[str, list[str]]:
    local = asked == "local" or (asked == "auto" and base_images.present())
    if not local:
        return "upstream", []
    if not base_images.present():
        raise EngineError("the Debian-made bases are not there: run `make base-images`")
    return "local", [f"--build-arg={base_images.BUILD_ARGS[key]}={base.image}"
                     for key, base in base_images.BASES.items()]


def build(service: str, variant: str, base: tuple[str, list[str]], no_cache: bool) -> Built:
    dockerfile = DOCKER / f"{service}.Dockerfile"
    names = tags(service, variant)
    args = ["build", "-f", str(dockerfile), *base[1]]
    for name in names:
        args += ["-t", name]
    if service == "feature":
        args += [f"--build-arg={k}={v}" for k, v in FEATURE_VARIANTS[variant].items()]
    if require_engine() == "podman":
        args += ["--layers", "--ignorefile", f"{dockerfile}.dockerignore",
                 *volume_arguments(collect(), ROOT / ".run" / "images")]
    args += ["--no-cache"] if no_cache else []
    print(f"building {names[0]} ...", flush=True)
    started = time.monotonic()
    done = subprocess.run([require_engine(), *args, str(ROOT)], env=environment(),
                          check=False)
    if done.returncode != 0:
        raise EngineError(f"building {names[0]} failed (the build's output is above)")
    seconds = time.monotonic() - started
    size = int(run("image", "inspect", "--format", "{{.Size}}", names[0]).stdout.strip())
    return Built(names[0], round(seconds, 1), size, base[0], no_cache)


def record(built: list[Built]) -> None:
    if not built:
        return
    RECORD.parent.mkdir(parents=True, exist_ok=True)
    history = json.loads(RECORD.read_text()) if RECORD.exists() else []
    RECORD.write_text(json.dumps(history + [asdict(b) for b in built], indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.images",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("services", nargs="*",
                        help=f"some of {', '.join(REPOSITORIES)} (default: all three)")
    parser.add_argument("--feature", choices=["auto", "cpu", "cuda"], default="auto",
                        help="the feature image's variant (auto: cuda where a GPU is)")
    parser.add_argument("--base", choices=["auto", "upstream", "local"], default="auto",
                        help="auto: the bases of `make base-images` where they exist")
    parser.add_argument("--no-cache", action="store_true", help="build every layer anew")
    parser.add_argument("--prune", action="store_true",
                        help="only remove the untagged layers that rebuilds left")
    args = parser.parse_args(argv)
    args.services = args.services or list(REPOSITORIES)
    if set(args.services) - set(REPOSITORIES):
        parser.error(f"unknown image: {', '.join(set(args.services) - set(REPOSITORIES))}")
    built: list[Built] = []
    try:
        require_engine()
        if args.prune:
            print(run("image", "prune", "--force").stdout.strip() or "nothing to prune")
            return 0
        variant = feature_variant(args.feature) if "feature" in args.services else "cpu"
        base = base_arguments(args.base)
        for service in args.services:
            built.append(build(service, variant, base, args.no_cache))
    except EngineError as exc:
        print(f"images: {exc}", file=sys.stderr)
        return 1
    finally:
        record(built)
    for b in built:
        print(f"{b.image:<28} {b.bytes / 1e6:8.0f} MB  built in {b.seconds:6.0f} s "
              f"({b.base} base{', no cache' if b.no_cache else ''})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
