"""A Debian minbase root filesystem for the end-to-end test, built once and cached.

The first build runs debootstrap (minutes); later runs find it under CACHE_ROOT, keyed
by a hash of everything that decides its content, and take a few milliseconds. The
tree is built in a temporary directory next to its final place and renamed into place,
so an interrupted build never leaves a half-built rootfs where the test would use it.
A lock file keeps two concurrent test runs from building it twice.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

CACHE_ROOT = Path(os.environ.get("SNOOP_TEST_CACHE", "/var/cache/snoop-test"))
SUITE = "bookworm"
MIRROR = os.environ.get("SNOOP_TEST_MIRROR", "http://deb.debian.org/debian")
PACKAGES = ("python3",)
# Bump when the build steps change, so an old cached tree is not reused.
RECIPE = 1


def cache_key(packages: tuple[str, ...] = PACKAGES) -> str:
    text = f"{RECIPE} {SUITE} minbase {MIRROR} {' '.join(sorted(packages))}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def ensure_debootstrap() -> str:
    found = shutil.which("debootstrap") or (
        "/usr/sbin/debootstrap" if os.path.exists("/usr/sbin/debootstrap") else None
    )
    if found:
        return found
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "debootstrap"], check=True, env=env)
    return "/usr/sbin/debootstrap"


def minbase_rootfs(packages: tuple[str, ...] = PACKAGES) -> Path:
    """The cached rootfs path, building it first when it is not there yet."""
    final = CACHE_ROOT / f"{SUITE}-minbase-{cache_key(packages)}"
    if (final / "usr/bin/python3").exists():
        return final
    CACHE_ROOT.mkdir(parents=True, exist_ok=True)
    with open(CACHE_ROOT / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (final / "usr/bin/python3").exists():
            return final
        debootstrap = ensure_debootstrap()
        building = CACHE_ROOT / f".building-{final.name}-{os.getpid()}"
        shutil.rmtree(building, ignore_errors=True)
        try:
            subprocess.run(
                [debootstrap, "--variant=minbase", f"--include={','.join(packages)}",
                 SUITE, str(building), MIRROR],
                check=True, stdout=subprocess.DEVNULL,
            )
            # Downloaded .debs are not part of the system; they would only inflate
            # the "before" size and flatter the ratio.
            for deb in (building / "var/cache/apt/archives").glob("*.deb"):
                deb.unlink()
            os.rename(building, final)
        finally:
            shutil.rmtree(building, ignore_errors=True)
    return final


if __name__ == "__main__":
    print(minbase_rootfs())
