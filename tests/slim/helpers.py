"""Builders for the slimming tests: in-memory image trees, crafted ELF files, reports,
and layer tarballs for docker-save and OCI images."""

from __future__ import annotations

import errno
import gzip
import hashlib
import io
import json
import struct
import tarfile
from collections.abc import Iterable
from pathlib import Path

from snoop.common.outcomes import FOUND
from snoop.common.protocol import AccessKind
from snoop.common.report import Report
from snoop.slim.image import Content, Entry, EntryType, ImageTree

KIND_BITS = {kind.name.lower(): 1 << int(kind) for kind in AccessKind}


class TreeBuilder:
    """An ImageTree whose file contents live in a scratch directory."""

    def __init__(self, scratch: Path) -> None:
        self.scratch = scratch
        self.tree = ImageTree("test")
        self._count = 0

    def dir(self, path: str, mode: int = 0o755, uid: int = 0, gid: int = 0) -> TreeBuilder:
        self.tree.put(Entry(path=path.encode(), type=EntryType.DIR, mode=mode, uid=uid, gid=gid))
        return self

    def file(self, path: str, data: bytes = b"x", mode: int = 0o644, inode: object = None,
             uid: int = 0, gid: int = 0) -> TreeBuilder:
        self._count += 1
        host = self.scratch / f"content-{self._count}"
        host.write_bytes(data)
        self.tree.put(Entry(path=path.encode(), type=EntryType.FILE, mode=mode, size=len(data),
                            content=Content(bytes(host)), inode=inode, uid=uid, gid=gid,
                            mtime_ns=1_600_000_000_000_000_000))
        return self

    def link(self, path: str, target: str) -> TreeBuilder:
        self.tree.put(Entry(path=path.encode(), type=EntryType.SYMLINK, mode=0o777,
                            linkname=target.encode()))
        return self

    def special(self, path: str, kind: EntryType, major: int = 1, minor: int = 3) -> TreeBuilder:
        self.tree.put(Entry(path=path.encode(), type=kind, mode=0o666, devmajor=major,
                            devminor=minor))
        return self

    def merged_usr(self) -> TreeBuilder:
        """Debian's merged /usr: /bin, /lib, /lib64 are symlinks into /usr."""
        self.dir("/usr/bin").dir("/usr/lib/x86_64-linux-gnu").dir("/usr/lib64")
        self.link("/bin", "usr/bin").link("/lib", "usr/lib").link("/lib64", "usr/lib64")
        self.file("/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", elf64(None), mode=0o755)
        self.link("/usr/lib64/ld-linux-x86-64.so.2",
                  "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")
        return self


def elf64(interp: bytes | None, big_endian: bool = False, pad: int = 64) -> bytes:
    """A minimal 64-bit ELF executable with an optional PT_INTERP."""
    end = ">" if big_endian else "<"
    phdrs = []
    body = b""
    phoff = 64
    phnum = 2 if interp else 1
    data_offset = phoff + 56 * phnum
    # A PT_LOAD first, so the parser has to walk the table, not just read entry 0.
    phdrs.append(struct.pack(end + "IIQQQQQQ", 1, 5, 0, 0x400000, 0x400000, 0, 0, 0x1000))
    if interp:
        body = interp + b"\0"
        phdrs.append(struct.pack(end + "IIQQQQQQ", 3, 4, data_offset, 0, 0, len(body),
                                 len(body), 1))
    ident = b"\x7fELF" + bytes([2, 2 if big_endian else 1, 1]) + bytes(9)
    header = struct.pack(end + "16sHHIQQQIHHHHHH", ident, 2, 0x3E, 1, 0x401000, phoff, 0, 0,
                         64, 56, phnum, 64, 0, 0)
    return header + b"".join(phdrs) + body + bytes(pad)


def elf32(interp: bytes) -> bytes:
    """A minimal 32-bit little-endian ELF executable with a PT_INTERP."""
    body = interp + b"\0"
    phoff, phnum = 52, 1
    data_offset = phoff + 32 * phnum
    phdr = struct.pack("<IIIIIIII", 3, data_offset, 0, 0, len(body), len(body), 4, 1)
    ident = b"\x7fELF" + bytes([1, 1, 1]) + bytes(9)
    header = struct.pack("<16sHHIIIIIHHHHHH", ident, 2, 3, 1, 0x8048000, phoff, 0, 0, 52, 32,
                         phnum, 40, 0, 0)
    return header + phdr + body


def make_report(files: dict[str, Iterable[str]], **identity: object) -> Report:
    """Kinds by name; "found", or an errno name ("ENOENT"), give the outcomes."""
    report = Report(**identity)  # type: ignore[arg-type]
    for number, (path, kinds) in enumerate(sorted(files.items())):
        mask = outcomes = 0
        for kind in kinds:
            if kind == "found":
                outcomes |= FOUND
            elif kind.startswith("E"):
                outcomes |= 1 << getattr(errno, kind)
            else:
                mask |= KIND_BITS[kind]
        report.add_file(path.encode("utf-8", "surrogateescape"), mask, 1000.0 + number,
                        2000.0 + number, outcomes)
    return report


def write_report(path: Path, files: dict[str, Iterable[str]], **identity: object) -> Path:
    path.write_text(make_report(files, **identity).dumps())
    return path


# ---------------------------------------------------------------- tarballs

Member = tuple  # (name, kind, payload): kind in file/dir/symlink/hardlink/fifo/char


def layer_tar(members: Iterable[Member]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, payload in members:
            info = tarfile.TarInfo(name)
            info.mtime = 1_600_000_000
            if kind == "file":
                info.size = len(payload)
                info.mode = 0o644
                tar.addfile(info, io.BytesIO(payload))
                continue
            if kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
            elif kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, payload
            elif kind == "hardlink":
                info.type, info.linkname = tarfile.LNKTYPE, payload
            elif kind == "fifo":
                info.type = tarfile.FIFOTYPE
            elif kind == "char":
                info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 9
            tar.addfile(info)
    return buffer.getvalue()


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def docker_save_tar(path: Path, layers: list[bytes], config: dict | None = None,
                    tags: list[str] | None = None) -> Path:
    """A `docker save` tarball: manifest.json naming each layer's layer.tar."""
    with tarfile.open(path, "w") as tar:
        names = []
        for number, layer in enumerate(layers):
            name = f"{number:064x}/layer.tar"
            _add_bytes(tar, name, layer)
            names.append(name)
        _add_bytes(tar, "config.json", json.dumps(config or {}).encode())
        manifest = [{"Config": "config.json", "RepoTags": ["test:latest"] if tags is None else tags,
                     "Layers": names}]
        _add_bytes(tar, "manifest.json", json.dumps(manifest).encode())
    return path


def oci_layout(layers: list[bytes], compress: bool = True) -> dict[str, bytes]:
    """The files of an OCI image layout: oci-layout, index.json, blobs/sha256/*."""
    files: dict[str, bytes] = {"oci-layout": b'{"imageLayoutVersion": "1.0.0"}'}

    def blob(data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        files[f"blobs/sha256/{digest}"] = data
        return f"sha256:{digest}"

    descriptors = []
    for layer in layers:
        data = gzip.compress(layer) if compress else layer
        media = "application/vnd.oci.image.layer.v1.tar" + ("+gzip" if compress else "")
        descriptors.append({"mediaType": media, "digest": blob(data), "size": len(data)})
    config = blob(b"{}")
    manifest = json.dumps({"schemaVersion": 2, "config": {"digest": config, "size": 2},
                           "layers": descriptors}).encode()
    files["index.json"] = json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": blob(manifest), "size": len(manifest)}]}).encode()
    return files


def oci_tar(path: Path, layers: list[bytes], compress: bool = True) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, data in oci_layout(layers, compress).items():
            _add_bytes(tar, name, data)
    return path


def oci_dir(path: Path, layers: list[bytes], compress: bool = True) -> Path:
    for name, data in oci_layout(layers, compress).items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_bytes(data)
    return path
