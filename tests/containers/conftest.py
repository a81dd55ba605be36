"""The container tier runs only when asked for (`make test-containers`, i.e. `-m
containers`), and skips with one line where no container engine is, the images are not
built or the shared tiles are absent."""

from __future__ import annotations

import pytest

from tests.support import TILES, require_data
from tools.containers import NO_ENGINE, engine, exists
from tools.images import REPOSITORIES, tags


@pytest.fixture(scope="session", autouse=True)
def container_tier(request: pytest.FixtureRequest) -> None:
    if "containers" not in (request.config.option.markexpr or ""):
        pytest.skip("the container tier runs with `make test-containers` (-m containers)")
    if engine() is None:
        pytest.skip(NO_ENGINE)
    if engine() != "podman":
        pytest.skip(f"the pods run with podman kube play; this machine has {engine()} only")
    missing = [tags(s)[1] for s in REPOSITORIES if not exists("image", tags(s)[1])]
    if missing:
        pytest.skip(f"images not built ({', '.join(missing)}): run `make images`")
    require_data(TILES)
