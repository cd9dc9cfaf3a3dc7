"""The image build copies every package pyproject.toml maps, in all three places that
list them: the Dockerfile's COPYs, .dockerignore's allow-list, and docker-up.sh's
content-hash context. A package missing from one breaks the image build."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def package_dirs() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return set(project["tool"]["setuptools"]["package-dir"].values())


def test_dockerfile_copies_every_package() -> None:
    copied = set(re.findall(r"^COPY (\S+) /src/\1$", (ROOT / "Dockerfile").read_text(), re.M))
    assert package_dirs() <= copied


def test_dockerignore_lets_every_package_in() -> None:
    allowed = set(re.findall(r"^!([\w-]+)/$", (ROOT / ".dockerignore").read_text(), re.M))
    assert package_dirs() <= allowed


def test_the_image_hash_covers_every_package() -> None:
    script = (ROOT / "scripts" / "docker-up.sh").read_text()
    context = re.search(r"^CONTEXT=\(([^)]*)\)", script, re.M | re.S).group(1).split()
    assert package_dirs() <= set(context)
