"""`make base-images`: the images' bases made from Debian packages, for a machine that
reaches a Debian mirror but no container registry. mmdebstrap builds a minimal Debian
(minbase) with Python, or with Node.js and npm, and the engine imports it as an image;
`make images` then passes them as BASE_IMAGE and NODE_IMAGE instead of the pinned
upstream bases."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tools.containers import EngineError, exists, require_engine, run

SUITE = "bookworm"
MIRROR = os.environ.get("DEBIAN_MIRROR", "http://deb.debian.org/debian")
SECURITY = os.environ.get("DEBIAN_SECURITY_MIRROR", "http://deb.debian.org/debian-security")
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Documentation and translations are of no use in a container.
TRIM = ["path-exclude=/usr/share/man/*", "path-exclude=/usr/share/doc/*",
        "path-include=/usr/share/doc/*/copyright", "path-exclude=/usr/share/locale/*"]


@dataclass(frozen=True)
class Base:
    image: str
    packages: tuple[str, ...]
    command: str


# The Python of bookworm is 3.11, as pyproject requires; passwd gives useradd.
BASES = {
    "python": Base(f"localhost/hitl-base/python:3.11-{SUITE}",
                   ("python3", "python3-venv", "python-is-python3", "passwd",
                    "ca-certificates"), "python"),
    "node": Base(f"localhost/hitl-base/node:18-{SUITE}", ("nodejs", "npm", "ca-certificates"),
                 "node"),
}
BUILD_ARGS = {"python": "BASE_IMAGE", "node": "NODE_IMAGE"}


def present() -> bool:
    return all(exists("image", base.image) for base in BASES.values())


def build(base: Base) -> float:
    """Makes the image; returns the seconds it took."""
    if shutil.which("mmdebstrap") is None:
        raise EngineError("mmdebstrap is not installed (apt-get install mmdebstrap)")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="hitl-base-") as tmp:
        tarball = Path(tmp) / "rootfs.tar"
        command = ["mmdebstrap", "--variant=minbase", "--include=" + ",".join(base.packages),
                   *[f"--dpkgopt={option}" for option in TRIM], SUITE, str(tarball),
                   f"deb {MIRROR} {SUITE} main", f"deb {SECURITY} {SUITE}-security main"]
        done = subprocess.run(command, capture_output=True, text=True, timeout=1800,
                              check=False)
        if done.returncode != 0:
            raise EngineError(f"mmdebstrap failed: {done.stderr.strip()[-2000:]}")
        run("import", "--change", f"ENV PATH={PATH}", "--change", f'CMD ["{base.command}"]',
            str(tarball), base.image, timeout=1800)
    return time.monotonic() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.base_images",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="rebuild those already there")
    args = parser.parse_args(argv)
    try:
        require_engine()
        for base in BASES.values():
            if exists("image", base.image) and not args.force:
                print(f"{base.image} is already there (--force rebuilds it)")
                continue
            print(f"{base.image}: built in {build(base):.0f} s", flush=True)
    except EngineError as exc:
        print(f"base-images: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
