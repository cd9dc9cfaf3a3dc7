"""The kernels of the matrix: which archive, suite and metapackage each comes from."""

from __future__ import annotations

import re
from dataclasses import dataclass

from archive import DEBIAN_KEYRING, Package, Suite

DEBIAN = "http://deb.debian.org/debian"
UBUNTU = "http://archive.ubuntu.com/ubuntu"


@dataclass(frozen=True)
class KernelSpec:
    name: str  # what --kernels takes
    distro: str  # debian or ubuntu
    mirror: str
    suite: str
    flavour: str  # amd64 (Debian) or generic (Ubuntu)

    @property
    def meta_image(self) -> str:
        return f"linux-image-{self.flavour}"


KERNELS = [
    KernelSpec("5.4", "ubuntu", UBUNTU, "focal-updates", "generic"),
    KernelSpec("5.10", "debian", DEBIAN, "bullseye", "amd64"),
    KernelSpec("5.15", "ubuntu", UBUNTU, "jammy-updates", "generic"),
    KernelSpec("6.1", "debian", DEBIAN, "bookworm", "amd64"),
    KernelSpec("6.12", "debian", DEBIAN, "bookworm-backports", "amd64"),
]
QUICK = ["5.4", "6.12"]

_IMAGE = re.compile(r"^linux-image-(\d[^ ]*)$")


@dataclass(frozen=True)
class Resolved:
    spec: KernelSpec
    krel: str  # what uname -r says
    packages: tuple[Package, ...]


def keyring_for(spec: KernelSpec, cache_dir: str) -> str:
    if spec.distro == "debian":
        return DEBIAN_KEYRING
    from archive import ubuntu_keyring
    return ubuntu_keyring(spec.mirror, spec.suite, cache_dir)


def resolve(spec: KernelSpec, suite: Suite) -> Resolved:
    """The image (+ modules), headers and their header deps the metapackage names."""
    meta = suite.get(spec.meta_image)
    images = [d for d in meta.depends if _IMAGE.match(d) and not d.endswith("-unsigned")]
    if not images:
        raise LookupError(f"{spec.meta_image} in {spec.suite} depends on no kernel image: "
                          f"{meta.depends}")
    image = suite.get(images[0])
    krel = _IMAGE.match(image.name).group(1)
    wanted = [image.name, f"linux-headers-{krel}"]
    if spec.distro == "ubuntu":
        wanted += [f"linux-modules-{krel}"]
    names: list[str] = []
    while wanted:
        name = wanted.pop(0)
        if name in names:
            continue
        names.append(name)
        # Header trees depend on their arch-independent part and on kbuild's scripts.
        wanted += [d for d in suite.get(name).depends
                   if d.startswith(("linux-headers-", "linux-kbuild-", "linux-modules-"))
                   and d in suite.packages]
    return Resolved(spec, krel, tuple(suite.get(n) for n in names))
