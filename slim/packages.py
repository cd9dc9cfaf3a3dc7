"""The per-package view: which of the image's installed packages the workload used.

Reads the package database inside the image: dpkg (`/var/lib/dpkg/status` and
`/var/lib/dpkg/info/<package>[:<arch>].list`) or apk (`/lib/apk/db/installed`). A package
is *used* when at least one of its files (not directories: those are shared) is in the
keep set. Package databases list paths as installed (`/lib/...`); with merged /usr the
file really lives under `/usr/lib`, so each path is resolved through the image's
directory symlinks before it is looked up.
"""

from __future__ import annotations

from collections.abc import Container, Iterator
from dataclasses import dataclass, field

from snoop.slim.image import EntryType, ImageError, ImageTree, join, parent_of
from snoop.slim.keepset import resolve

DPKG_STATUS = b"/var/lib/dpkg/status"
DPKG_INFO = b"/var/lib/dpkg/info"
APK_INSTALLED = b"/lib/apk/db/installed"
_DB_LIMIT = 256 << 20


@dataclass
class Package:
    name: str
    version: str = ""
    files: list[bytes] = field(default_factory=list)  # image paths of its non-directories
    total_bytes: int = 0
    kept_files: int = 0
    kept_bytes: int = 0

    @property
    def used(self) -> bool:
        return self.kept_files > 0


@dataclass
class PackageView:
    manager: str  # "dpkg" or "apk"
    packages: list[Package]

    @property
    def used(self) -> list[Package]:
        return sorted((p for p in self.packages if p.used), key=lambda p: (-p.kept_bytes, p.name))

    @property
    def unused(self) -> list[Package]:
        return sorted((p for p in self.packages if not p.used),
                      key=lambda p: (-p.total_bytes, p.name))


def package_view(tree: ImageTree, kept: Container[bytes]) -> PackageView | None:
    """The image's packages with their use, or None when it has no package database."""
    if _regular(tree, DPKG_STATUS) is not None:
        view = PackageView("dpkg", list(_dpkg_packages(tree)))
    elif _regular(tree, APK_INSTALLED) is not None:
        view = PackageView("apk", list(_apk_packages(tree)))
    else:
        return None
    for package in view.packages:
        _measure(tree, package, kept)
    return view


def _regular(tree: ImageTree, path: bytes) -> bytes | None:
    found = resolve(tree, path).path
    entry = tree.get(found) if found else None
    return found if entry is not None and entry.type is EntryType.FILE else None


def _text(tree: ImageTree, path: bytes) -> bytes:
    found = _regular(tree, path)
    if found is None:
        return b""
    entry = tree.get(found)
    assert entry is not None
    if entry.size > _DB_LIMIT:
        raise ImageError(f"{path.decode(errors='replace')}: {entry.size} bytes; too large")
    return tree.read(entry)


def _stanzas(text: bytes) -> Iterator[list[bytes]]:
    for block in text.replace(b"\r\n", b"\n").split(b"\n\n"):
        lines = [line for line in block.split(b"\n") if line]
        if lines:
            yield lines


def _dpkg_packages(tree: ImageTree) -> Iterator[Package]:
    for lines in _stanzas(_text(tree, DPKG_STATUS)):
        fields: dict[bytes, bytes] = {}
        for line in lines:
            if line[:1] in (b" ", b"\t") or b":" not in line:
                continue
            key, _, value = line.partition(b":")
            fields[key.strip().lower()] = value.strip()
        name = fields.get(b"package")
        if not name or fields.get(b"status", b"").split()[-1:] != [b"installed"]:
            continue
        arch = fields.get(b"architecture", b"")
        listing = b""
        for candidate in (name + b":" + arch, name):
            listing = _text(tree, join(DPKG_INFO, candidate + b".list"))
            if listing:
                break
        yield Package(
            name=name.decode(errors="replace"),
            version=fields.get(b"version", b"").decode(errors="replace"),
            files=[line for line in listing.split(b"\n") if line.startswith(b"/")],
        )


def _apk_packages(tree: ImageTree) -> Iterator[Package]:
    for lines in _stanzas(_text(tree, APK_INSTALLED)):
        package = Package(name="")
        directory = b"/"
        for line in lines:
            key, _, value = line.partition(b":")
            if key == b"P":
                package.name = value.decode(errors="replace")
            elif key == b"V":
                package.version = value.decode(errors="replace")
            elif key == b"F":
                directory = b"/" + value.strip(b"/")
            elif key == b"R":
                package.files.append(join(directory, value))
        if package.name:
            yield package


def _measure(tree: ImageTree, package: Package, kept: Container[bytes]) -> None:
    """Keep the package's non-directory files as image paths, and size them."""
    files: set[bytes] = set()
    for listed in package.files:
        # Resolve the directory part only: a package may own a symlink itself.
        directory = resolve(tree, parent_of(listed)).path
        if directory is None:
            continue
        path = join(directory, listed.rsplit(b"/", 1)[1])
        entry = tree.get(path)
        if entry is None or entry.type is EntryType.DIR or path in files:
            continue
        if entry.type is EntryType.SYMLINK and _is_dir(tree, path):
            continue  # a directory the package shipped, now a merged-/usr symlink
        files.add(path)
        package.total_bytes += entry.size
        if path in kept:
            package.kept_files += 1
            package.kept_bytes += entry.size
    package.files = sorted(files)


def _is_dir(tree: ImageTree, path: bytes) -> bool:
    target = resolve(tree, path).path
    entry = tree.get(target) if target else None
    return entry is not None and entry.type is EntryType.DIR
