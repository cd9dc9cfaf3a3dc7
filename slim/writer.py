"""Writing the results: the path lists, the slim root filesystem and its tarball.

Everything is written from the image tree, never by copying a directory wholesale:
regular files are the only entries whose content is read; device nodes, FIFOs and
sockets are recreated (mknod/mkfifo) or skipped. Reading /dev/urandom as a file would
fill the disk, and opening a FIFO would hang.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tarfile
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from snoop.slim.image import ROOT, Entry, EntryType, ImageTree, parent_of


@dataclass
class WriteNotes:
    """What could not be written exactly, counted by reason (never one line per file)."""

    skipped: Counter[str] = field(default_factory=Counter)
    unlisted: list[bytes] = field(default_factory=list)  # paths a line-based list cannot hold

    def lines(self) -> list[str]:
        notes = [f"{count} {reason}" for reason, count in sorted(self.skipped.items())]
        if self.unlisted:
            notes.append(f"{len(self.unlisted)} path(s) containing a newline left out of "
                         "the .txt lists (they are in the rootfs)")
        return notes


# ---------------------------------------------------------------- path lists

def _write_lines(path: str, lines: Iterable[bytes], notes: WriteNotes) -> None:
    with open(path, "wb") as out:
        for line in lines:
            if b"\n" in line:
                if line not in notes.unlisted:
                    notes.unlisted.append(line)
                continue
            out.write(line + b"\n")


def slim_include_paths(tree: ImageTree, kept: set[bytes]) -> list[bytes]:
    """Paths for SlimToolkit's `--include-path-file`: one absolute path per line.

    SlimToolkit copies a listed directory with everything inside it, so a directory is
    listed only when its whole content is kept; otherwise its kept entries are listed
    one by one (their parents come along).
    """
    complete: dict[bytes, bool] = {}
    for path in sorted(kept, reverse=True):  # children before their parents
        entry = tree.get(path)
        if entry is None or entry.type is not EntryType.DIR:
            continue
        complete[path] = all(
            child in kept and complete.get(child, True)
            for child in (_child(path, name) for name in tree.children(path))
        )
    listed = []
    for path in sorted(kept):
        if path == ROOT:
            continue
        parent = parent_of(path)
        if parent != ROOT and complete.get(parent):
            continue  # the parent directory, listed whole, brings it
        entry = tree.get(path)
        if entry is None:
            continue
        if entry.type is not EntryType.DIR or complete.get(path):
            listed.append(path)
    return listed


def _child(directory: bytes, name: bytes) -> bytes:
    return directory + name if directory == ROOT else directory + b"/" + name


def write_lists(out_dir: str, tree: ImageTree, kept: set[bytes]) -> WriteNotes:
    notes = WriteNotes()
    _write_lines(os.path.join(out_dir, "keep.txt"), sorted(kept), notes)
    _write_lines(os.path.join(out_dir, "remove.txt"),
                 sorted(p for p in tree.entries if p not in kept), notes)
    _write_lines(os.path.join(out_dir, "slim-include-paths.txt"),
                 slim_include_paths(tree, kept), notes)
    return notes


# ---------------------------------------------------------------- root filesystem

def write_rootfs(tree: ImageTree, kept: Iterable[bytes], dest: str) -> WriteNotes:
    """Recreate the kept entries under `dest`, which must not exist or be empty."""
    notes = WriteNotes()
    root = os.fsencode(os.path.abspath(dest))
    os.makedirs(root, exist_ok=True)
    if os.listdir(root):
        raise FileExistsError(f"{dest} is not empty")
    first_name: dict[object, bytes] = {}
    directories: list[Entry] = []
    for path in sorted(kept):
        entry = tree.get(path)
        if entry is None:
            continue
        host = root + (b"" if path == ROOT else path)
        if entry.type is EntryType.DIR:
            if path != ROOT:
                os.mkdir(host, 0o700)
            directories.append(entry)
            continue
        if entry.inode is not None and entry.inode in first_name:
            os.link(root + first_name[entry.inode], host, follow_symlinks=False)
            continue
        if not _create(tree, entry, host, notes):
            continue
        _apply_metadata(host, entry, notes)
        if entry.inode is not None:
            first_name[entry.inode] = path
    # Directories last and deepest first: creating their content changed their mtimes.
    for entry in reversed(directories):
        _apply_metadata(root + (b"" if entry.path == ROOT else entry.path), entry, notes)
    return notes


def _create(tree: ImageTree, entry: Entry, host: bytes, notes: WriteNotes) -> bool:
    kind = entry.type
    if kind is EntryType.FILE:
        fd = os.open(host, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600)
        with os.fdopen(fd, "wb") as out:
            for piece in tree.chunks(entry):
                out.write(piece)
        return True
    if kind is EntryType.SYMLINK:
        os.symlink(entry.linkname, host)
        return True
    try:
        if kind is EntryType.FIFO:
            os.mkfifo(host, 0o600)
        elif kind is EntryType.SOCKET:
            os.mknod(host, 0o600 | stat.S_IFSOCK)
        else:
            file_type = stat.S_IFCHR if kind is EntryType.CHAR else stat.S_IFBLK
            os.mknod(host, 0o600 | file_type, os.makedev(entry.devmajor, entry.devminor))
    except OSError as exc:
        notes.skipped[f"{kind.value} node(s) skipped: {exc.strerror}"] += 1
        return False
    return True


def _apply_metadata(host: bytes, entry: Entry, notes: WriteNotes) -> None:
    # Order matters: chown clears setuid bits and file capabilities, so mode and
    # xattrs come after it; the mtime comes last.
    try:
        os.chown(host, entry.uid, entry.gid, follow_symlinks=False)
    except OSError as exc:
        notes.skipped[f"owner(s) not set: {exc.strerror}"] += 1
    if entry.type is not EntryType.SYMLINK:
        os.chmod(host, entry.mode)
    for name, value in entry.xattrs.items():
        try:
            os.setxattr(host, name, value, follow_symlinks=False)
        except OSError as exc:
            notes.skipped[f"xattr(s) not set: {exc.strerror}"] += 1
    with contextlib.suppress(OSError):
        os.utime(host, ns=(entry.mtime_ns, entry.mtime_ns), follow_symlinks=False)


# ---------------------------------------------------------------- tarball

class _ContentReader:
    """A file-like view of an entry's content, for tarfile.addfile."""

    def __init__(self, tree: ImageTree, entry: Entry) -> None:
        self._tree, self._entry, self._pos = tree, entry, 0

    def read(self, size: int = -1) -> bytes:
        data = self._tree.read(self._entry, self._pos, size)
        self._pos += len(data)
        return data


_TAR_TYPES = {
    EntryType.FILE: tarfile.REGTYPE, EntryType.DIR: tarfile.DIRTYPE,
    EntryType.SYMLINK: tarfile.SYMTYPE, EntryType.CHAR: tarfile.CHRTYPE,
    EntryType.BLOCK: tarfile.BLKTYPE, EntryType.FIFO: tarfile.FIFOTYPE,
}


def write_tar(tree: ImageTree, kept: Iterable[bytes], dest: str) -> WriteNotes:
    """A tarball of the kept entries that `docker import` accepts (PAX, numeric owners)."""
    notes = WriteNotes()
    first_name: dict[object, bytes] = {}
    tmp = f"{dest}.{os.getpid()}.tmp"
    try:
        with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT, encoding="utf-8",
                          errors="surrogateescape") as archive:
            for path in sorted(kept):
                entry = tree.get(path)
                if entry is None or path == ROOT:
                    continue
                if entry.type is EntryType.SOCKET:
                    notes.skipped["socket(s) left out of the tarball: tar cannot hold them"] += 1
                    continue
                info = tarfile.TarInfo(path[1:].decode("utf-8", "surrogateescape"))
                info.mode, info.uid, info.gid = entry.mode, entry.uid, entry.gid
                info.uname = info.gname = ""
                info.mtime = entry.mtime_ns // 1_000_000_000
                info.pax_headers = {
                    f"SCHILY.xattr.{name}": value.decode("utf-8", "surrogateescape")
                    for name, value in entry.xattrs.items()
                }
                if entry.inode is not None and entry.inode in first_name:
                    info.type = tarfile.LNKTYPE
                    info.linkname = first_name[entry.inode][1:].decode("utf-8", "surrogateescape")
                    archive.addfile(info)
                    continue
                info.type = _TAR_TYPES[entry.type]
                if entry.type is EntryType.SYMLINK:
                    info.linkname = entry.linkname.decode("utf-8", "surrogateescape")
                elif entry.type in (EntryType.CHAR, EntryType.BLOCK):
                    info.devmajor, info.devminor = entry.devmajor, entry.devminor
                if entry.type is EntryType.FILE:
                    info.size = entry.size
                    archive.addfile(info, _ContentReader(tree, entry))  # type: ignore[arg-type]
                else:
                    archive.addfile(info)
                if entry.inode is not None:
                    first_name[entry.inode] = path
        os.rename(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return notes
