"""The locks in requirements/ (`make lock`): every package pinned with its hashes, within
pyproject.toml's ranges, the same versions in the images as in development, no torch for
the gateway, and the CPU variants derived from the torch locks."""

from __future__ import annotations

import re
import tomllib

import pytest
from packaging.requirements import Requirement

from tests.support import ROOT
from tools.locks import CUDA_STACK, blocks, derived, pins

REQUIREMENTS = ROOT / "requirements"
SERVICE_LOCKS = ("gateway", "feature", "trainer", "protoc")
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def lock(name: str) -> str:
    return (REQUIREMENTS / f"{name}.txt").read_text()


def normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared(name: str) -> list[Requirement]:
    """What pyproject.toml asks for in the lock `name`."""
    extras = PROJECT["optional-dependencies"]
    chosen = list(extras) if name == "dev" else [name]
    return [Requirement(r) for r in PROJECT["dependencies"]
            + [r for extra in chosen for r in extras[extra]]]


@pytest.mark.parametrize("name", [*SERVICE_LOCKS, "dev", "feature-cpu", "feature-lite"])
def test_every_package_is_pinned_with_hashes(name: str) -> None:
    text = lock(name)
    requirements = [b for b in blocks(text) if b[:1].isalnum()]
    assert len(requirements) == len(pins(text)) > 0
    for block in requirements:
        assert re.match(r"^[A-Za-z0-9][\w.-]*==\S+ \\\n", block), block.splitlines()[0]
        assert re.search(r"--hash=sha256:[0-9a-f]{64}", block), block.splitlines()[0]


@pytest.mark.parametrize("name", [*SERVICE_LOCKS, "dev"])
def test_locks_hold_what_pyproject_asks_within_its_ranges(name: str) -> None:
    pinned = pins(lock(name))
    for requirement in declared(name):
        version = pinned.get(normal(requirement.name))
        assert version is not None, f"{name}.txt lacks {requirement}: run `make lock`"
        assert requirement.specifier.contains(version, prereleases=True), (
            f"{name}.txt pins {requirement.name}=={version} outside {requirement}")


def test_development_runs_the_images_versions() -> None:
    development = pins(lock("dev"))
    for name in SERVICE_LOCKS:
        for package, version in pins(lock(name)).items():
            assert development.get(package) == version, (name, package, version)


def test_the_gateway_carries_no_torch() -> None:
    pinned = pins(lock("gateway"))
    assert not {p for p in pinned if CUDA_STACK.match(f"{p}==")}
    assert {"aiohttp", "grpcio", "protobuf"} <= set(pinned)


def test_cpu_variants_are_derived_from_the_torch_locks() -> None:
    for path, text in derived().items():
        assert path.read_text() == text, f"{path.name} is stale: run `python -m tools.locks`"
        assert not any(CUDA_STACK.match(b) for b in blocks(text))
    assert "torch" in pins(lock("feature")) and "torch" not in pins(lock("feature-cpu"))


def test_the_trainer_carries_no_torch() -> None:
    """Its model is a scikit-learn logistic regression."""
    pinned = pins(lock("trainer"))
    assert not {p for p in pinned if CUDA_STACK.match(f"{p}==")}
    assert {"scikit-learn", "numpy", "grpcio"} <= set(pinned)
