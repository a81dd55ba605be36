"""The Dockerfiles are linted (hadolint, from its PyPI wheel) and checked for the
properties deploy/README.md promises. No Docker engine runs here, so nothing is built."""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy.dockerfiles import DOCKER, IMAGES, Stage, global_args, instructions, stages
from tests.deploy.manifests import pod_spec, render, tool
from tests.support import ROOT

TORCH_SCRIPT = DOCKER / "feature-torch.sh"
PINNED = re.compile(r"^[\w./-]+(:[\w.-]*\d+\.\d+[\w.-]*)?(@sha256:[0-9a-f]{64})?$")
BUILD_TOOLS = re.compile(r"\b(apt-get|apt|apk|gcc|g\+\+|make|pip install|npm)\b")


def dockerfile(name: str) -> Path:
    return DOCKER / f"{name}.Dockerfile"


@pytest.fixture(params=sorted(IMAGES))
def image(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def hadolint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tool("hadolint"), "--no-color", str(path)], capture_output=True,
                          text=True, timeout=60)


def test_hadolint_finds_nothing(image: str) -> None:
    done = hadolint(dockerfile(image))
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_does_flag_a_careless_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get update && apt-get install -y gcc\n"
                   "RUN pip install numpy\n")
    done = hadolint(bad)
    assert done.returncode != 0
    for rule in ("DL3007", "DL3008", "DL3013"):
        assert rule in done.stdout


def test_base_images_are_pinned_and_the_build_is_multi_stage(image: str) -> None:
    all_stages = stages(dockerfile(image))
    names = {s.name for s in all_stages}
    assert len(all_stages) >= 2
    for stage in all_stages:
        if stage.base in names:
            continue
        assert PINNED.match(stage.base) and (":" in stage.base or "@" in stage.base), (
            f"{image}: base image {stage.base} is not pinned to an exact version or digest")
        assert not stage.base.endswith(":latest")


def final(image: str) -> Stage:
    return stages(dockerfile(image))[-1]


def test_final_stage_runs_as_the_pods_non_root_user(image: str) -> None:
    users = final(image).args("USER")
    assert users, f"{image}: the final stage sets no USER"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) != 0 and gid.isdigit() and int(gid) != 0
    # Kubernetes can only prove runAsNonRoot for a numeric user; it must be the same one.
    for overlay in ("local", "gpu"):
        pods = [pod_spec(o) for o in render(overlay) if o["kind"] in ("Deployment",
                                                                       "StatefulSet")]
        assert {p["securityContext"]["runAsUser"] for p in pods} == {int(uid)}


def test_final_stage_has_no_build_tools(image: str) -> None:
    stage = final(image)
    for command in stage.args("RUN"):
        assert not BUILD_TOOLS.search(command), f"{image}: final stage runs {command!r}"
    # The base image's own pip goes too.
    assert any("rm -rf /usr/local/lib/python3.11/site-packages/pip" in c
               for c in stage.args("RUN"))
    copied = " ".join(stage.args("COPY"))
    assert "/opt/tools" not in copied, "protoc's venv must stay in the build stage"
    # The venv copied into the final stage had pip removed in the stage it comes from.
    sources = {m.group(1) for m in re.finditer(r"--from=(\S+) /opt/venv/", copied)}
    assert sources
    for source in sources:
        build = next(s for s in stages(dockerfile(image)) if s.name == source)
        assert any("pip uninstall --yes pip setuptools" in r for r in build.args("RUN"))


def test_stubs_are_generated_with_the_makefiles_protoc_command(image: str) -> None:
    make = (ROOT / "Makefile").read_text()
    protoc = re.search(r"-m grpc_tools\.protoc (.+?) \$\(PROTOS\)", make)
    assert protoc, "the Makefile's protoc command moved: update this test"
    args = protoc.group(1).replace("$(PROTO_OUT)", ".")
    runs = " ".join(r for s in stages(dockerfile(image)) for r in s.args("RUN"))
    assert f"-m grpc_tools.protoc {args} protos/hitl/v1/*.proto" in runs
    assert "touch hitl/v1/__init__.py" in runs


def test_entrypoint_and_ports_are_the_services_defaults(image: str) -> None:
    module = IMAGES[image]
    stage = final(image)
    assert stage.args("ENTRYPOINT") == [f'["python", "-m", "{module}"]']
    config_module = importlib.import_module(f"{module}.config")
    config = config_module.Config()
    assert stage.args("EXPOSE") == [f"{config.port} {config.metrics_port}"]
    copied = " ".join(stage.args("COPY"))
    for other in set(IMAGES.values()) - {module}:
        assert other not in copied, f"{image} image carries {other}"


def test_only_the_feature_image_gets_cuda_torch() -> None:
    for image in IMAGES:
        build = next(s for s in stages(dockerfile(image)) if s.name == "build")
        index = global_args(dockerfile(image)).get("TORCH_INDEX")
        runs = " ".join(build.args("RUN"))
        if image == "feature":
            # By default PyPI's torch, whose Linux wheels bundle CUDA (the GPU image); the
            # lite (CPU) image installs a lock without torch.
            assert index == "" and global_args(dockerfile(image))["EXTRACTOR"] == \
                "resnext50-frcnn"
            assert "./feature-torch.sh /opt/venv" in runs
            assert "--require-hashes --no-deps -r feature.txt" in TORCH_SCRIPT.read_text()
            assert "--require-hashes --no-deps -r feature-lite.txt" in runs
        else:
            assert index is None and "torch" not in runs
        # Each image installs its own lock, with hashes.
        assert f"--require-hashes --no-deps -r {image}" in runs
        assert f"requirements/{image}.txt" in " ".join(build.args("COPY"))


def pip_installs(text: str) -> list[str]:
    return [c for c in re.split(r"&&|;|\bthen\b|\belse\b|\|\|?|\n", text)
            if re.search(r'pip"? install', c)]


def test_images_install_nothing_beyond_their_locks() -> None:
    commands = pip_installs(TORCH_SCRIPT.read_text())
    for image in IMAGES:
        build = next(s for s in stages(dockerfile(image)) if s.name == "build")
        commands += [c for run in build.args("RUN") for c in pip_installs(run)]
    assert len(commands) >= 6
    for command in commands:
        # Hash-checked lock files, or torch pinned by its lock from TORCH_INDEX.
        assert ("--require-hashes --no-deps -r" in command
                or '--no-deps --index-url "$TORCH_INDEX"' in command), command


def test_gateway_image_carries_the_ui_where_its_config_looks() -> None:
    config = importlib.import_module("annotation_gateway.config").Config()
    root = Path(config.web_dir).parent
    copied = final("gateway").args("COPY")
    workdir = final("gateway").args("WORKDIR")[-1]
    # The defaults are relative to the checkout, which is /app in the image.
    assert Path(config.web_dir).relative_to(root) == Path("web")
    assert Path(config.vendor_dir).relative_to(root) == Path("node_modules")
    assert f"web/ {workdir}/web/" in copied
    assert f"--from=npm /src/node_modules/uplot/ {workdir}/node_modules/uplot/" in copied
    assert (f"--from=npm /src/node_modules/swagger-ui-dist/ "
            f"{workdir}/node_modules/swagger-ui-dist/") in copied
    assert (ROOT / "web" / "index.html").exists()


def _runtime_imports(tree: ast.AST) -> Iterator[str]:
    """Every module a file can import when it runs (`if TYPE_CHECKING:` blocks aside)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            node.body = []
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def _gateway_imports() -> set[str]:
    """The third-party modules the gateway can import: those of its own files and of
    every `hitl` module they reach (the gateway's image ships `hitl` whole, but a module
    it never imports needs nothing in its lock)."""
    todo = list((ROOT / "annotation_gateway").rglob("*.py"))
    seen: set[Path] = set()
    found: set[str] = set()
    while todo:
        path = todo.pop()
        if path in seen or "v1" in path.relative_to(ROOT).parts:
            continue
        seen.add(path)
        for name in _runtime_imports(ast.parse(path.read_text())):
            found.add(name.split(".")[0])
            parts = name.split(".")
            if parts[0] == "hitl":
                for end in (len(parts), len(parts) - 1):
                    module = ROOT.joinpath(*parts[:end]).with_suffix(".py")
                    if end > 1 and module.is_file():
                        todo.append(module)
                        break
    local = {p.name for p in ROOT.iterdir() if p.is_dir()} | {"tests"}
    return {m for m in found - local if m not in sys.stdlib_module_names and m != "__future__"}


def test_gateway_lock_covers_what_the_gateway_imports() -> None:
    from tools.locks import pins

    locked = set(pins((ROOT / "requirements" / "gateway.txt").read_text()))
    owners = importlib.metadata.packages_distributions()
    imported = _gateway_imports()
    assert {"aiohttp", "grpc", "google"} <= imported  # the walk does reach the gateway's own
    for module in imported:
        dists = {re.sub(r"[-_.]+", "-", d).lower() for d in owners.get(module, [module])}
        assert dists & locked, (
            f"the gateway imports {module} ({dists}) but requirements/gateway.txt lacks it")


def test_build_context_leaves_out_local_state(image: str) -> None:
    ignore = DOCKER / f"{image}.Dockerfile.dockerignore"
    entries = set(ignore.read_text().split())
    assert {".venv", "node_modules", ".models", ".run", "hitl/v1", ".git"} <= entries


def test_the_reader_joins_continuations() -> None:
    assert instructions("FROM a:1.2 AS b\n# c\nRUN x \\\n  && y\n") == [
        ("FROM", "a:1.2 AS b"), ("RUN", "x && y")]
