"""What an image build needs to reach the same package indexes as `make install`: this
machine's pip settings (`pip config list`: indexes, local package folders, constraints,
certificate) written as a pip.conf, an npmrc with the same certificate and registry, and
read-only mounts of everything they name on the host's disk, the CA bundle included.

Only podman (buildah) can mount into a build; docker builds use the public indexes.
podman leaves each mount's target behind in the image as an empty file or folder, so
the folders are mounted under neutral names (/run/hitl-build/<n>) and the pip.conf points
there."""

from __future__ import annotations

import ast
import configparser
import io
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

CA_FOLDER = Path("/etc/ssl/certs")
# Where the build containers read them: pip's and npm's (as root) site-wide files.
PIP_CONF_TARGET = "/etc/pip.conf"
NPMRC_TARGET = "/root/.npmrc"
MOUNTS_TARGET = "/run/hitl-build"
# Settings whose values can name files or folders of this machine.
PATH_SETTINGS = {"find-links", "index-url", "extra-index-url", "constraint", "cert",
                 "client-cert"}


@dataclass
class BuildSettings:
    pip_conf: str
    npmrc: str
    mounts: dict[Path, str] = field(default_factory=dict)  # host path -> path in the build


def pip_config(listing: str) -> dict[tuple[str, str], str]:
    """`pip config list` output -> (section, name) -> value; the environment's settings
    (":env:") count as [global] and override the files'."""
    found: dict[tuple[str, str], str] = {}
    env: dict[tuple[str, str], str] = {}
    for line in listing.splitlines():
        key, sep, raw = line.partition("=")
        if not sep or "." not in key:
            continue
        section, name = key.rsplit(".", 1)
        value = str(ast.literal_eval(raw))
        if section == ":env:":
            env[("global", name)] = value
        else:
            found[(section, name)] = value
    return found | env


def local_paths(settings: dict[tuple[str, str], str]) -> list[Path]:
    paths: set[Path] = set()
    for (_, name), value in settings.items():
        if name not in PATH_SETTINGS:
            continue
        for word in value.split():
            path = Path(word.removeprefix("file://")) if word.startswith(("/", "file://")) \
                else None
            if path is None or not path.exists():
                continue
            if path.is_relative_to(CA_FOLDER):
                path = CA_FOLDER
            elif name.endswith("index-url") and path.name == "simple":
                path = path.parent  # a PEP 503 index links to files beside `simple/`
            paths.add(path)
    return sorted(paths)


def moved(word: str, mounts: dict[Path, str]) -> str:
    """A setting's path or file:// URL as the build sees it."""
    scheme = "file://" if word.startswith("file://") else ""
    path = Path(word.removeprefix(scheme)) if word.startswith(("/", "file://")) else None
    for host, inside in mounts.items():
        if path is not None and path.is_relative_to(host):
            return scheme + str(Path(inside) / path.relative_to(host))
    return word


def pip_conf(settings: dict[tuple[str, str], str], mounts: dict[Path, str]) -> str:
    """The settings as a pip.conf that names the mounted paths."""
    parser = configparser.ConfigParser(interpolation=None)
    for (section, name), value in sorted(settings.items()):
        value = " ".join(moved(word, mounts) for word in value.split())
        if not parser.has_section(section):
            parser.add_section(section)
        parser.set(section, name, value)
    out = io.StringIO()
    parser.write(out)
    return out.getvalue()


def npm_setting(name: str) -> str:
    try:
        done = subprocess.run(["npm", "config", "get", name], capture_output=True, text=True,
                              timeout=60, check=False)
    except OSError:
        return ""
    value = done.stdout.strip()
    return "" if done.returncode or value in ("null", "undefined") else value


def npmrc(cafile: str, registry: str) -> str:
    lines = [f"cafile={cafile}"] if cafile else []
    lines += [f"registry={registry}"] if registry else []
    return "".join(line + "\n" for line in lines)


def collect(python: str = sys.executable) -> BuildSettings:
    """This machine's settings, as the build containers will read them."""
    listing = subprocess.run([python, "-m", "pip", "config", "list"], capture_output=True,
                             text=True, timeout=120, check=True).stdout
    settings = pip_config(listing)
    cafile = npm_setting("cafile") or settings.get(("global", "cert"), "")
    # The CA folder exists in every base, at the place the settings name.
    mounts = {CA_FOLDER: str(CA_FOLDER)} if CA_FOLDER.is_dir() else {}
    others = [p for p in local_paths(settings) if p != CA_FOLDER]
    mounts |= {path: f"{MOUNTS_TARGET}/{i}" for i, path in enumerate(others)}
    return BuildSettings(pip_conf(settings, mounts), npmrc(cafile, npm_setting("registry")),
                         mounts)


def volume_arguments(settings: BuildSettings, folder: Path) -> list[str]:
    """podman build's -v options: the written pip.conf and npmrc, and every host path."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pip.conf").write_text(settings.pip_conf)
    (folder / "npmrc").write_text(settings.npmrc)
    args = ["-v", f"{folder / 'pip.conf'}:{PIP_CONF_TARGET}:ro",
            "-v", f"{folder / 'npmrc'}:{NPMRC_TARGET}:ro"]
    for path, inside in settings.mounts.items():
        args += ["-v", f"{path}:{inside}:ro"]
    return args
