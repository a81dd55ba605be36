"""tools/build_settings.py: an image build reads the same package indexes as `make
install`, from this machine's pip settings, through read-only mounts."""

from __future__ import annotations

import configparser
from pathlib import Path

from tools.build_settings import (
    CA_FOLDER,
    MOUNTS_TARGET,
    BuildSettings,
    local_paths,
    moved,
    npmrc,
    pip_conf,
    pip_config,
    volume_arguments,
)

LISTING = """\
:env:.cert='/etc/ssl/certs/ca-certificates.crt'
:env:.find-links='{wheels}'
global.find-links='/elsewhere'
global.constraint='{constraints}'
global.extra-index-url='file://{index}/simple https://mirror.example.org/simple'
install.timeout='60'
"""


def machine(tmp_path: Path) -> tuple[str, dict[str, Path]]:
    paths = {"wheels": tmp_path / "wheels", "index": tmp_path / "pypi",
             "constraints": tmp_path / "constraints.txt"}
    paths["wheels"].mkdir()
    (paths["index"] / "simple").mkdir(parents=True)
    (paths["index"] / "files").mkdir()
    paths["constraints"].write_text("torch<=2.14.1\n")
    return LISTING.format(**{k: str(v) for k, v in paths.items()}), paths


def test_the_environments_settings_override_the_files(tmp_path: Path) -> None:
    listing, paths = machine(tmp_path)
    settings = pip_config(listing)
    assert settings[("global", "find-links")] == str(paths["wheels"])
    assert settings[("install", "timeout")] == "60"
    assert settings[("global", "cert")] == "/etc/ssl/certs/ca-certificates.crt"


def test_every_local_path_is_mounted_an_index_with_its_files(tmp_path: Path) -> None:
    listing, paths = machine(tmp_path)
    found = local_paths(pip_config(listing))
    # The index's folder, not just simple/: its pages link to ../../files/.
    assert set(found) == {paths["wheels"], paths["index"], paths["constraints"], CA_FOLDER} \
        - ({CA_FOLDER} if not CA_FOLDER.exists() else set())
    assert Path("/elsewhere") not in found  # overridden, and not there anyway


def test_the_build_sees_the_mounted_paths_under_neutral_names(tmp_path: Path) -> None:
    listing, paths = machine(tmp_path)
    mounts = {CA_FOLDER: str(CA_FOLDER), paths["index"]: f"{MOUNTS_TARGET}/0",
              paths["wheels"]: f"{MOUNTS_TARGET}/1", paths["constraints"]: f"{MOUNTS_TARGET}/2"}
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(pip_conf(pip_config(listing), mounts))
    assert parser["global"]["find-links"] == f"{MOUNTS_TARGET}/1"
    assert parser["global"]["constraint"] == f"{MOUNTS_TARGET}/2"
    assert parser["global"]["extra-index-url"] == (
        f"file://{MOUNTS_TARGET}/0/simple https://mirror.example.org/simple")
    assert parser["global"]["cert"] == "/etc/ssl/certs/ca-certificates.crt"
    assert parser["install"]["timeout"] == "60"
    # A path that merely starts like a mounted one is another path.
    assert moved(f"{paths['index']}-more/simple", mounts) == f"{paths['index']}-more/simple"


def test_volume_arguments_are_read_only(tmp_path: Path) -> None:
    settings = BuildSettings("[global]\n", npmrc("/etc/ssl/certs/ca.crt", ""),
                             {tmp_path: f"{MOUNTS_TARGET}/0"})
    args = volume_arguments(settings, tmp_path / "out")
    pairs = [args[i + 1] for i in range(0, len(args), 2)]
    assert all(a == "-v" for a in args[::2]) and all(p.endswith(":ro") for p in pairs)
    assert f"{tmp_path}:{MOUNTS_TARGET}/0:ro" in pairs
    assert (tmp_path / "out" / "npmrc").read_text() == "cafile=/etc/ssl/certs/ca.crt\n"
