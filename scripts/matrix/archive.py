"""Debian and Ubuntu packages fetched through their signed chain, and only so.

InRelease is checked with gpgv against the archive's keyring, Packages.xz against the
SHA256 the verified Release gives, and each .deb against the SHA256 the verified
Packages gives. Nothing unverified is returned or cached under its hash.
"""

from __future__ import annotations

import hashlib
import lzma
import os
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass

DEBIAN_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
# The trust anchor for Ubuntu: the archive signing keys' fingerprints, as published on
# ubuntu.com and in the ubuntu-keyring package (archive 2012 and 2018, CD image 2012
# keys). Bookworm has no
# ubuntu-keyring package, so the keyring comes from Ubuntu's own archive and is used
# only if it holds exactly these keys.
UBUNTU_ARCHIVE_FINGERPRINTS = {
    "790BC7277767219C42C86F933B4FE6ACC0B21F32",
    "843938DF228D22F7B3742BC0D94AA3F0EFE21092",
    "F6ECB3762474EDA9D21B7022871920D1991BC93C",
}


class VerificationError(Exception):
    """A signature, size or hash did not match what the signed chain says."""


def fetch(url: str, attempts: int = 4) -> bytes:
    for attempt in range(attempts):
        try:
            with urllib.request.urlopen(url, timeout=60) as response:
                return response.read()
        except OSError:
            if attempt == attempts - 1:
                raise
            time.sleep(2 ** attempt)
    raise AssertionError("unreachable")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def gpgv_verify(signed: bytes, keyring: str) -> bytes:
    """The content of a clearsigned InRelease, if a key of `keyring` signed it."""
    with tempfile.TemporaryDirectory(prefix="snoop-gpgv-") as tmp:
        path = os.path.join(tmp, "InRelease")
        out = os.path.join(tmp, "Release")
        with open(path, "wb") as handle:
            handle.write(signed)
        result = subprocess.run(["gpgv", "--keyring", keyring, "--output", out, path],
                                capture_output=True, text=True)
        if result.returncode != 0:
            raise VerificationError(f"InRelease signature not valid for {keyring}: "
                                    f"{result.stderr.strip()}")
        with open(out, "rb") as handle:
            return handle.read()


def keyring_fingerprints(keyring: str) -> set[str]:
    result = subprocess.run(["gpg", "--batch", "--with-colons", "--show-keys", keyring],
                            capture_output=True, text=True, check=True)
    fprs, primary = set(), False
    for line in result.stdout.splitlines():
        fields = line.split(":")
        if fields[0] == "pub":
            primary = True
        elif fields[0] == "fpr" and primary:
            fprs.add(fields[9])
            primary = False
        elif fields[0] == "sub":
            primary = False
    return fprs


def parse_stanzas(text: str) -> list[dict[str, str]]:
    """deb822 paragraphs (Packages, Release) as dicts; continuation lines joined."""
    stanzas, current, key = [], {}, None
    for line in text.splitlines():
        if not line.strip():
            if current:
                stanzas.append(current)
            current, key = {}, None
        elif line[0] in " \t" and key:
            current[key] += "\n" + line.strip()
        else:
            key, _, value = line.partition(":")
            current[key] = value.strip()
    if current:
        stanzas.append(current)
    return stanzas


def release_sha256(release: bytes) -> dict[str, tuple[str, int]]:
    """path -> (sha256, size) from a verified Release's SHA256 field."""
    fields = parse_stanzas(release.decode())[0]
    table = {}
    for line in fields.get("SHA256", "").splitlines():
        parts = line.split()
        if len(parts) == 3:
            table[parts[2]] = (parts[0], int(parts[1]))
    return table


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    filename: str
    sha256: str
    size: int
    depends: tuple[str, ...]


def _depends(field: str) -> tuple[str, ...]:
    names = []
    for clause in field.split(","):
        first = clause.split("|")[0].strip()
        if first:
            names.append(first.split()[0].split(":")[0])
    return tuple(names)


class Suite:
    """One verified suite/component/arch of an archive, e.g. bookworm main amd64."""

    def __init__(self, mirror: str, suite: str, keyring: str, cache_dir: str,
                 component: str = "main", arch: str = "amd64") -> None:
        self.mirror = mirror.rstrip("/")
        self.suite = suite
        self.cache_dir = cache_dir
        signed = fetch(f"{self.mirror}/dists/{suite}/InRelease")
        self.release = gpgv_verify(signed, keyring)
        index = f"{component}/binary-{arch}/Packages.xz"
        want = release_sha256(self.release).get(index)
        if want is None:
            raise VerificationError(f"{suite} Release lists no {index}")
        data = fetch(f"{self.mirror}/dists/{suite}/{index}")
        if sha256(data) != want[0] or len(data) != want[1]:
            raise VerificationError(f"{suite} {index}: sha256 differs from the signed Release")
        self.packages: dict[str, Package] = {}
        for fields in parse_stanzas(lzma.decompress(data).decode(errors="replace")):
            pkg = Package(fields["Package"], fields["Version"], fields["Filename"],
                          fields["SHA256"], int(fields["Size"]),
                          _depends(fields.get("Depends", "")))
            old = self.packages.get(pkg.name)
            if old is None or _newer(pkg.version, old.version):
                self.packages[pkg.name] = pkg

    def get(self, name: str) -> Package:
        try:
            return self.packages[name]
        except KeyError:
            raise KeyError(f"no package {name} in {self.mirror} {self.suite}") from None

    def download(self, pkg: Package) -> str:
        """The .deb's path in the cache, downloaded and checked against Packages."""
        os.makedirs(self.cache_dir, exist_ok=True)
        path = os.path.join(self.cache_dir, f"{pkg.sha256}_{os.path.basename(pkg.filename)}")
        if os.path.exists(path):
            return path
        data = fetch(f"{self.mirror}/{pkg.filename}")
        if sha256(data) != pkg.sha256 or len(data) != pkg.size:
            raise VerificationError(f"{pkg.filename}: sha256 differs from the signed Packages")
        with open(path + ".part", "wb") as handle:
            handle.write(data)
        os.replace(path + ".part", path)
        return path


def _newer(a: str, b: str) -> bool:
    return subprocess.run(["dpkg", "--compare-versions", a, "gt", b]).returncode == 0


def ubuntu_keyring(mirror: str, suite: str, cache_dir: str) -> str:
    """Ubuntu's archive keyring, taken from its ubuntu-keyring package and checked.

    The keyring is accepted only if its keys are exactly the pinned fingerprints; then
    the suite's InRelease must verify with it and the .deb's hash must be the one its
    now-verified Packages gives, so the package that carried the keyring is checked too.
    """
    path = os.path.join(cache_dir, "ubuntu-archive-keyring.gpg")
    if os.path.exists(path) and keyring_fingerprints(path) == UBUNTU_ARCHIVE_FINGERPRINTS:
        return path
    os.makedirs(cache_dir, exist_ok=True)
    base = mirror.rstrip("/")
    # Unverified at this point: only used to find the .deb, whose content is then checked.
    index = lzma.decompress(fetch(f"{base}/dists/{suite}/main/binary-amd64/Packages.xz"))
    stanza = next(s for s in parse_stanzas(index.decode(errors="replace"))
                  if s.get("Package") == "ubuntu-keyring")
    deb = fetch(f"{base}/{stanza['Filename']}")
    with tempfile.TemporaryDirectory(prefix="snoop-keyring-") as tmp:
        with open(os.path.join(tmp, "k.deb"), "wb") as handle:
            handle.write(deb)
        subprocess.run(["dpkg-deb", "-x", os.path.join(tmp, "k.deb"), tmp], check=True)
        found = os.path.join(tmp, "usr/share/keyrings/ubuntu-archive-keyring.gpg")
        fprs = keyring_fingerprints(found)
        if fprs != UBUNTU_ARCHIVE_FINGERPRINTS:
            raise VerificationError(f"ubuntu-keyring holds {sorted(fprs)}, expected the "
                                    f"pinned {sorted(UBUNTU_ARCHIVE_FINGERPRINTS)}")
        with open(found, "rb") as src, open(path + ".part", "wb") as dst:
            dst.write(src.read())
    verified = Suite(mirror, suite, path + ".part", os.path.join(cache_dir, "debs"))
    if verified.get("ubuntu-keyring").sha256 != sha256(deb):
        raise VerificationError("ubuntu-keyring .deb differs from the signed Packages")
    os.replace(path + ".part", path)
    return path
