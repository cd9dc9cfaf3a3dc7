"""An image as an in-memory tree of entries, read from a rootfs directory, a `docker save`
tarball, an OCI image layout (directory or tar) or a plain rootfs tarball (`docker export`).

All three sources produce the same `ImageTree`, so the analysis after this module never
asks where an image came from. Layered images are flattened here: layers are applied in
order, whiteouts (`.wh.NAME`) delete from the layers below, an opaque marker
(`.wh..wh..opq`) hides everything the layers below had in its directory.

Content is never copied into memory: an entry says where its bytes are (a file in a
rootfs directory, or a span of an uncompressed tar on disk). Compressed layers are
decompressed once into a temporary directory that `ImageTree.close()` removes.

Everything from a tarball is untrusted. A member or hard-link name that is absolute or
climbs out of the root with `..` is an attack, not a file: the whole image is refused
with an ImageError. Symlink targets are data (they are resolved inside the image later).
"""

from __future__ import annotations

import bz2
import contextlib
import enum
import gzip
import json
import lzma
import os
import re
import shutil
import stat
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

ROOT = b"/"
WHITEOUT_PREFIX = b".wh."
OPAQUE_MARKER = b".wh..wh..opq"
_CHUNK = 1 << 20


class ImageError(Exception):
    """An image that cannot be read or is refused; the message names the problem."""


class EntryType(enum.Enum):
    FILE = "file"
    DIR = "dir"
    SYMLINK = "symlink"
    CHAR = "char"
    BLOCK = "block"
    FIFO = "fifo"
    SOCKET = "socket"

    @property
    def special(self) -> bool:
        return self in (EntryType.CHAR, EntryType.BLOCK, EntryType.FIFO, EntryType.SOCKET)


@dataclass(frozen=True)
class Content:
    """Where a regular file's bytes are: `offset` into `host_path`.

    `in_rootfs` marks a file inside a rootfs directory (offset 0), which is opened with
    O_NOFOLLOW and checked to still be a regular file before a byte is read; otherwise
    `host_path` is a tar or blob that this program opened or wrote itself.
    """

    host_path: bytes
    offset: int = 0
    in_rootfs: bool = False


@dataclass
class Entry:
    path: bytes  # absolute and normalized inside the image: b"/usr/bin/ls"; the root is b"/"
    type: EntryType
    mode: int = 0o644  # permission bits, setuid/setgid/sticky included
    uid: int = 0
    gid: int = 0
    size: int = 0  # regular files only
    mtime_ns: int = 0
    linkname: bytes = b""  # symlink target, as stored
    devmajor: int = 0
    devminor: int = 0
    xattrs: dict[str, bytes] = field(default_factory=dict)
    content: Content | None = None  # regular files only
    inode: Any = None  # equal for every name of one hard-linked inode; None when alone


def _implied_dir(path: bytes) -> Entry:
    return Entry(path=path, type=EntryType.DIR, mode=0o755)


def parent_of(path: bytes) -> bytes:
    if path == ROOT:
        return ROOT
    head = path.rsplit(b"/", 1)[0]
    return head or ROOT


def join(directory: bytes, name: bytes) -> bytes:
    return directory + name if directory == ROOT else directory + b"/" + name


def ancestors(path: bytes) -> Iterator[bytes]:
    """Every directory above `path`, nearest first, ending with the root."""
    while path != ROOT:
        path = parent_of(path)
        yield path


class ImageTree:
    """The flattened file tree of an image, keyed by absolute path."""

    def __init__(self, source: str = "") -> None:
        self.source = source
        # The layers' sizes as uncompressed tars, what `docker images` shows (an OCI
        # layout's gzip blobs count as what they hold); 0 when the image has no layers.
        self.layer_bytes = 0
        # A docker save or OCI input's image config (Entrypoint, Env, ...) and tags: what
        # a loadable slim image carries over. None and [] for a rootfs.
        self.config: dict[str, Any] | None = None
        self.tags: list[str] = []
        self.entries: dict[bytes, Entry] = {ROOT: _implied_dir(ROOT)}
        self._children: dict[bytes, set[bytes]] = {ROOT: set()}
        self._handles: dict[bytes, IO[bytes]] = {}
        self._tempdir: str | None = None
        self._next_inode = 0

    # ------------------------------------------------------------ structure

    def get(self, path: bytes) -> Entry | None:
        return self.entries.get(path)

    def __contains__(self, path: bytes) -> bool:
        return path in self.entries

    def __len__(self) -> int:
        return len(self.entries)

    def children(self, path: bytes) -> list[bytes]:
        """Names (not paths) directly inside directory `path`, sorted."""
        return sorted(self._children.get(path, ()))

    def walk(self, top: bytes = ROOT) -> Iterator[Entry]:
        """`top` and everything under it, parents before children."""
        stack = [top]
        while stack:
            path = stack.pop()
            entry = self.entries.get(path)
            if entry is None:
                continue
            yield entry
            for name in sorted(self._children.get(path, ()), reverse=True):
                stack.append(join(path, name))

    def new_inode(self) -> int:
        self._next_inode += 1
        return self._next_inode

    def put(self, entry: Entry) -> None:
        """Add or replace an entry, as an upper layer does over the lower ones.

        A directory over a directory keeps the children below; anything else replaces
        the whole subtree. Missing or non-directory ancestors become directories.
        """
        path = entry.path
        self._ensure_dir_ancestors(path)
        old = self.entries.get(path)
        if old is not None and not (old.type is EntryType.DIR and entry.type is EntryType.DIR):
            self.remove(path)
        self.entries[path] = entry
        if entry.type is EntryType.DIR:
            self._children.setdefault(path, set())
        if path != ROOT:
            self._children[parent_of(path)].add(path.rsplit(b"/", 1)[1])

    def remove(self, path: bytes) -> None:
        """Delete `path` and everything below it (a whiteout)."""
        if path == ROOT or path not in self.entries:
            return
        for entry in list(self.walk(path)):
            del self.entries[entry.path]
            self._children.pop(entry.path, None)
        self._children[parent_of(path)].discard(path.rsplit(b"/", 1)[1])

    def clear_dir(self, path: bytes) -> None:
        """Delete everything inside directory `path`, keeping it (an opaque directory)."""
        for name in self.children(path):
            self.remove(join(path, name))

    def _ensure_dir_ancestors(self, path: bytes) -> None:
        missing = []
        for up in ancestors(path):
            existing = self.entries.get(up)
            if existing is not None and existing.type is EntryType.DIR:
                break
            missing.append(up)
        for up in reversed(missing):
            if up in self.entries:
                self.remove(up)
            self.entries[up] = _implied_dir(up)
            self._children[up] = set()
            if up != ROOT:
                self._children[parent_of(up)].add(up.rsplit(b"/", 1)[1])

    # ------------------------------------------------------------ content

    def read(self, entry: Entry, offset: int = 0, size: int = -1) -> bytes:
        """Up to `size` bytes of a regular file from `offset` (all of it with -1)."""
        if entry.type is not EntryType.FILE or entry.content is None:
            raise ImageError(f"{entry.path!r}: not a regular file; its content is never read")
        offset = max(0, min(offset, entry.size))
        size = entry.size - offset if size < 0 else min(size, entry.size - offset)
        if size <= 0:
            return b""
        content = entry.content
        if content.in_rootfs:
            with _open_rootfs_file(content.host_path) as handle:
                handle.seek(offset)
                return handle.read(size)
        handle = self._handle(content.host_path)
        handle.seek(content.offset + offset)
        return handle.read(size)

    def chunks(self, entry: Entry) -> Iterator[bytes]:
        """A regular file's whole content, in pieces of at most 1 MiB."""
        if entry.type is not EntryType.FILE or entry.content is None:
            raise ImageError(f"{entry.path!r}: not a regular file; its content is never read")
        content = entry.content
        with contextlib.ExitStack() as stack:
            if content.in_rootfs:
                handle = stack.enter_context(_open_rootfs_file(content.host_path))
            else:
                handle = self._handle(content.host_path)
            offset = 0
            while offset < entry.size:
                # Shared tar handles are also used by read(): seek before every piece.
                handle.seek(content.offset + offset)
                piece = handle.read(min(_CHUNK, entry.size - offset))
                if not piece:
                    raise ImageError(f"{entry.path!r}: content ends before its size {entry.size}")
                offset += len(piece)
                yield piece

    def _handle(self, host_path: bytes) -> IO[bytes]:
        handle = self._handles.get(host_path)
        if handle is None:
            handle = self._handles[host_path] = open(host_path, "rb")  # noqa: SIM115
        return handle

    def tempdir(self) -> str:
        if self._tempdir is None:
            self._tempdir = tempfile.mkdtemp(prefix="snoop-slim-")
        return self._tempdir

    def close(self) -> None:
        for handle in self._handles.values():
            handle.close()
        self._handles.clear()
        if self._tempdir is not None:
            shutil.rmtree(self._tempdir, ignore_errors=True)
            self._tempdir = None

    def __enter__(self) -> ImageTree:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def _open_rootfs_file(host_path: bytes) -> Iterator[IO[bytes]]:
    # O_NONBLOCK: if the file was swapped for a FIFO since the scan, opening it must not
    # hang; the fstat below then refuses it before anything is read.
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    try:
        fd = os.open(host_path, flags)
    except OSError as exc:
        raise ImageError(f"{os.fsdecode(host_path)}: cannot open: {exc.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ImageError(f"{os.fsdecode(host_path)}: no longer a regular file")
        os.set_blocking(fd, True)
        handle = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with handle:
        yield handle


# ================================================================ rootfs directory

def read_rootfs_dir(root: str | os.PathLike) -> ImageTree:
    """Scan a root filesystem directory without following symlinks or crossing mounts.

    A mount point inside the tree (a /proc or /dev mounted for a chroot) is kept as an
    empty directory: its content is not part of the image.
    """
    top = os.fsencode(os.path.abspath(root))
    try:
        top_stat = os.lstat(top)
    except OSError as exc:
        raise ImageError(f"{os.fsdecode(top)}: cannot read image: {exc.strerror}") from None
    if not stat.S_ISDIR(top_stat.st_mode):
        raise ImageError(f"{os.fsdecode(top)}: not a directory")
    tree = ImageTree(os.fsdecode(top))
    tree.put(_entry_from_stat(ROOT, top, top_stat))
    inodes: dict[tuple[int, int], int] = {}
    stack = [ROOT]
    while stack:
        directory = stack.pop()
        host_dir = top + (b"" if directory == ROOT else directory)
        try:
            names = sorted(os.listdir(host_dir))
        except OSError as exc:
            raise ImageError(f"{os.fsdecode(host_dir)}: cannot list: {exc.strerror}") from None
        for name in names:
            path = join(directory, name)
            host_path = top + path
            try:
                st = os.lstat(host_path)
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise ImageError(f"{os.fsdecode(host_path)}: cannot stat: {exc.strerror}") from None
            entry = _entry_from_stat(path, host_path, st)
            if entry is None:
                continue
            if entry.type is not EntryType.DIR and st.st_nlink > 1:
                key = (st.st_dev, st.st_ino)
                entry.inode = inodes.setdefault(key, tree.new_inode())
            tree.put(entry)
            if entry.type is EntryType.DIR and st.st_dev == top_stat.st_dev:
                stack.append(path)
    return tree


def _entry_from_stat(path: bytes, host_path: bytes, st: os.stat_result) -> Entry | None:
    kind = _type_from_mode(st.st_mode)
    if kind is None:
        return None
    entry = Entry(
        path=path, type=kind, mode=stat.S_IMODE(st.st_mode), uid=st.st_uid, gid=st.st_gid,
        mtime_ns=st.st_mtime_ns, xattrs=_read_xattrs(host_path),
    )
    if kind is EntryType.FILE:
        entry.size = st.st_size
        entry.content = Content(host_path, 0, in_rootfs=True)
    elif kind is EntryType.SYMLINK:
        entry.linkname = os.readlink(host_path)
    elif kind in (EntryType.CHAR, EntryType.BLOCK):
        entry.devmajor, entry.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
    return entry


def _type_from_mode(mode: int) -> EntryType | None:
    for test, kind in ((stat.S_ISREG, EntryType.FILE), (stat.S_ISDIR, EntryType.DIR),
                       (stat.S_ISLNK, EntryType.SYMLINK), (stat.S_ISCHR, EntryType.CHAR),
                       (stat.S_ISBLK, EntryType.BLOCK), (stat.S_ISFIFO, EntryType.FIFO),
                       (stat.S_ISSOCK, EntryType.SOCKET)):
        if test(mode):
            return kind
    return None


def _read_xattrs(host_path: bytes) -> dict[str, bytes]:
    try:
        names = os.listxattr(host_path, follow_symlinks=False)
    except OSError:
        return {}
    values = {}
    for name in names:
        with contextlib.suppress(OSError):
            values[name] = os.getxattr(host_path, name, follow_symlinks=False)
    return values


# ================================================================ tar layers

def safe_member_path(name: str, what: str = "member") -> bytes | None:
    """The absolute image path of a tar member name; None for the root itself.

    Raises ImageError for a name that is absolute or climbs above the root: extracting
    it would write outside the image, so the image is an attack and is refused.
    """
    raw = name.encode("utf-8", "surrogateescape")
    if raw.startswith(b"/"):
        raise ImageError(f"tar {what} {name!r} is an absolute path: refusing the image")
    parts: list[bytes] = []
    for part in raw.split(b"/"):
        if part in (b"", b"."):
            continue
        if part == b"..":
            if not parts:
                raise ImageError(f"tar {what} {name!r} escapes the image root: refusing the image")
            parts.pop()
            continue
        parts.append(part)
    if not parts:
        return None
    return b"/" + b"/".join(parts)


class _Layer:
    """An uncompressed layer tar on disk at `host_path`, starting at byte `offset`."""

    def __init__(self, host_path: bytes, offset: int, size: int) -> None:
        self.host_path, self.offset, self.size = host_path, offset, size


class _Window:
    """A read-only, seekable view of `size` bytes of a file from `start` (for tarfile)."""

    def __init__(self, handle: IO[bytes], start: int, size: int) -> None:
        self._handle, self._start, self._size, self._pos = handle, start, size, 0

    def read(self, size: int = -1) -> bytes:
        remaining = self._size - self._pos
        size = remaining if size is None or size < 0 else min(size, remaining)
        if size <= 0:
            return b""
        self._handle.seek(self._start + self._pos)
        data = self._handle.read(size)
        self._pos += len(data)
        return data

    def seek(self, pos: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self._size}[whence]
        self._pos = max(0, base + pos)
        return self._pos

    def tell(self) -> int:
        return self._pos


def apply_layer(tree: ImageTree, layer: _Layer) -> None:
    """Apply one layer tar on top of `tree`: its whiteouts first, then its entries."""
    with open(layer.host_path, "rb") as handle:
        window = _Window(handle, layer.offset, layer.size)
        try:
            with tarfile.open(fileobj=window, mode="r:",  # type: ignore[call-overload]
                              errors="surrogateescape") as archive:
                members = archive.getmembers()
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise ImageError(f"layer is not a readable tar: {exc}") from None
    # Validate every name before changing anything: a bad member refuses the whole image.
    named = []
    symlinks: set[bytes] = set()  # this tar's symlinks, as of the member being read
    for member in members:
        path = safe_member_path(member.name)
        if member.islnk():
            target = safe_member_path(member.linkname, "hard link")
            if target is None:
                raise ImageError(f"tar hard link {member.name!r} points at the root")
        if path is not None:
            # An extractor follows a symlink it made earlier: a member below one of the
            # same tar lands wherever the link points (outside the root, say).
            through = next((a for a in ancestors(path) if a in symlinks), None)
            if through is not None:
                raise ImageError(f"tar member {member.name!r} lies below the symlink "
                                 f"{through.decode('utf-8', 'backslashreplace')[1:]!r} of "
                                 "the same tar: refusing the image")
            if member.issym():
                symlinks.add(path)
            else:
                symlinks.discard(path)
        named.append((path, member))
    # A layer's whiteouts hide what the layers below had, never what the layer adds.
    for path, _member in named:
        if path is None:
            continue
        directory, name = parent_of(path), path.rsplit(b"/", 1)[1]
        if name == OPAQUE_MARKER:
            if tree.get(directory) is not None and tree.get(directory).type is EntryType.DIR:
                tree.clear_dir(directory)
        elif name.startswith(WHITEOUT_PREFIX):
            hidden = name[len(WHITEOUT_PREFIX):]
            if hidden and not hidden.startswith(WHITEOUT_PREFIX) and hidden not in (b".", b".."):
                tree.remove(join(directory, hidden))
    for path, member in named:
        if path is not None and path.rsplit(b"/", 1)[1].startswith(WHITEOUT_PREFIX):
            continue
        entry = _entry_from_member(tree, path or ROOT, member, layer)
        if entry is not None:
            tree.put(entry)


def _entry_from_member(tree: ImageTree, path: bytes, member: tarfile.TarInfo,
                       layer: _Layer) -> Entry | None:
    xattrs = {
        key[len("SCHILY.xattr."):]: value.encode("utf-8", "surrogateescape")
        for key, value in member.pax_headers.items() if key.startswith("SCHILY.xattr.")
    }
    entry = Entry(path=path, type=EntryType.FILE, mode=member.mode & 0o7777, uid=member.uid,
                  gid=member.gid, mtime_ns=int(member.mtime * 1_000_000_000), xattrs=xattrs)
    if member.islnk():
        target_path = safe_member_path(member.linkname, "hard link")
        target = tree.get(target_path) if target_path else None
        if target is None or target.type is EntryType.DIR:
            raise ImageError(f"tar hard link {member.name!r} points at {member.linkname!r}, "
                             "which is not a file in the image")
        if target.inode is None:
            target.inode = tree.new_inode()
        return Entry(path=path, type=target.type, mode=target.mode, uid=target.uid,
                     gid=target.gid, size=target.size, mtime_ns=target.mtime_ns,
                     linkname=target.linkname, devmajor=target.devmajor,
                     devminor=target.devminor, xattrs=dict(target.xattrs),
                     content=target.content, inode=target.inode)
    if member.isdir():
        entry.type = EntryType.DIR
    elif member.issym():
        entry.type = EntryType.SYMLINK
        entry.linkname = member.linkname.encode("utf-8", "surrogateescape")
    elif member.ischr() or member.isblk():
        entry.type = EntryType.CHAR if member.ischr() else EntryType.BLOCK
        entry.devmajor, entry.devminor = member.devmajor, member.devminor
    elif member.isfifo():
        entry.type = EntryType.FIFO
    elif member.isreg():
        entry.size = member.size
        if member.issparse():
            entry.content = _spool_sparse(tree, layer, member)
        else:
            entry.content = Content(layer.host_path, layer.offset + member.offset_data)
    else:
        return None
    return entry


def _spool_sparse(tree: ImageTree, layer: _Layer, member: tarfile.TarInfo) -> Content:
    with open(layer.host_path, "rb") as handle:
        window = _Window(handle, layer.offset, layer.size)
        fd, name = tempfile.mkstemp(dir=tree.tempdir())
        with tarfile.open(fileobj=window, mode="r:") as archive, \
                os.fdopen(fd, "wb") as out:  # type: ignore[call-overload]
            shutil.copyfileobj(archive.extractfile(member), out)  # type: ignore[arg-type]
    return Content(os.fsencode(name))


# ================================================================ blobs and archives

_MAGIC = {b"\x1f\x8b": gzip.open, b"BZh": bz2.open, b"\xfd7zXZ\x00": lzma.open}
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def _layer_from_span(tree: ImageTree, host_path: bytes, offset: int, size: int,
                     what: str) -> _Layer:
    """A layer blob stored at a span of a file; compressed blobs are decompressed once."""
    with open(host_path, "rb") as handle:
        handle.seek(offset)
        head = handle.read(6)
    if head.startswith(_ZSTD_MAGIC):
        raise ImageError(f"{what}: zstd-compressed layers are not supported")
    for magic, opener in _MAGIC.items():
        if head.startswith(magic):
            fd, name = tempfile.mkstemp(dir=tree.tempdir(), suffix=".tar")
            try:
                with open(host_path, "rb") as raw, os.fdopen(fd, "wb") as out:
                    raw.seek(offset)
                    with opener(_Window(raw, offset, size)) as unpacked:  # type: ignore[operator]
                        shutil.copyfileobj(unpacked, out, _CHUNK)
            except (OSError, EOFError, lzma.LZMAError) as exc:
                raise ImageError(f"{what}: cannot decompress: {exc}") from None
            return _Layer(os.fsencode(name), 0, os.path.getsize(name))
    return _Layer(host_path, offset, size)


class _Archive:
    """Named files of an image container: a directory, or an uncompressed tar on disk."""

    def __init__(self, tree: ImageTree, location: bytes) -> None:
        self.tree = tree
        self.location = location
        self.is_dir = os.path.isdir(location)
        self.members: dict[str, tarfile.TarInfo] = {}
        if not self.is_dir:
            try:
                with tarfile.open(os.fsdecode(location), mode="r:",
                                  errors="surrogateescape") as tar:
                    for member in tar.getmembers():
                        key = safe_member_path(member.name)
                        if key is not None and member.isreg():
                            self.members[key.decode("utf-8", "surrogateescape")[1:]] = member
            except (tarfile.TarError, EOFError) as exc:
                raise ImageError(f"{os.fsdecode(location)}: not a readable tar: {exc}") from None

    def has(self, name: str) -> bool:
        if self.is_dir:
            return os.path.isfile(os.path.join(os.fsdecode(self.location), name))
        return name in self.members

    def span(self, name: str) -> tuple[bytes, int, int]:
        """(host file, offset, size) of a named file, refusing names that leave the image."""
        path = safe_member_path(name, "reference")
        if path is None:
            raise ImageError(f"image refers to {name!r}, which is not a file")
        relative = path[1:].decode("utf-8", "surrogateescape")
        if self.is_dir:
            host = os.path.join(self.location, path[1:])
            try:
                st = os.stat(host)
            except OSError as exc:
                raise ImageError(f"image file {relative!r}: {exc.strerror}") from None
            if not stat.S_ISREG(st.st_mode):
                raise ImageError(f"image file {relative!r} is not a regular file")
            return host, 0, st.st_size
        member = self.members.get(relative)
        if member is None:
            raise ImageError(f"image file {relative!r} is missing from the tarball")
        return self.location, member.offset_data, member.size

    def read_json(self, name: str, limit: int = 16 << 20) -> Any:
        host, offset, size = self.span(name)
        if size > limit:
            raise ImageError(f"image file {name!r} is {size} bytes; too large for metadata")
        with open(host, "rb") as handle:
            handle.seek(offset)
            data = handle.read(size)
        try:
            return json.loads(data)
        except ValueError as exc:
            raise ImageError(f"image file {name!r}: not JSON: {exc}") from None

    def layer(self, name: str) -> _Layer:
        host, offset, size = self.span(name)
        return _layer_from_span(self.tree, host, offset, size, f"layer {name!r}")


@dataclass
class _Manifest:
    """What an image's manifest names: its layers in order, its config, its tags."""

    layers: list[str]
    config: str | None
    tags: list[str]


def _docker_manifest(archive: _Archive) -> _Manifest:
    manifest = archive.read_json("manifest.json")
    if not isinstance(manifest, list) or not manifest:
        raise ImageError("manifest.json: expected a non-empty list of images")
    if len(manifest) > 1:
        tags = [tag for item in manifest if isinstance(item, dict)
                for tag in item.get("RepoTags") or []]
        raise ImageError(f"the tarball holds {len(manifest)} images "
                         f"({', '.join(tags) or 'untagged'}); save one image per tarball")
    image = manifest[0] if isinstance(manifest[0], dict) else {}
    layers = image.get("Layers")
    if not isinstance(layers, list) or not all(isinstance(x, str) for x in layers):
        raise ImageError("manifest.json: expected a 'Layers' list of file names")
    config = image.get("Config")
    tags = image.get("RepoTags") or []
    return _Manifest(layers, config if isinstance(config, str) else None,
                     [tag for tag in tags if isinstance(tag, str)])


_DIGEST = re.compile(r"^(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})$")
_INDEX_TYPES = ("application/vnd.oci.image.index.v1+json",
                "application/vnd.docker.distribution.manifest.list.v2+json")


def _blob_name(digest: Any) -> str:
    if not isinstance(digest, str) or not _DIGEST.match(digest):
        raise ImageError(f"OCI layout: bad digest {digest!r}")
    algorithm, hexdigest = digest.split(":", 1)
    return f"blobs/{algorithm}/{hexdigest}"


_REF_NAME = "org.opencontainers.image.ref.name"
_CONTAINERD_NAME = "io.containerd.image.name"


def _oci_manifest(archive: _Archive) -> _Manifest:
    document = archive.read_json("index.json")
    tags: list[str] = []
    for _ in range(4):  # an index may point to a nested index (a multi-platform image)
        manifests = document.get("manifests") if isinstance(document, dict) else None
        if not isinstance(manifests, list) or not manifests:
            raise ImageError("OCI layout: index has no manifests")
        chosen = _choose_manifest(manifests)
        annotations = chosen.get("annotations") or {}
        name = annotations.get(_CONTAINERD_NAME) if isinstance(annotations, dict) else None
        if isinstance(name, str) and not tags:
            tags = [name]
        document = archive.read_json(_blob_name(chosen.get("digest")))
        if chosen.get("mediaType") in _INDEX_TYPES or "manifests" in document:
            continue
        layers = document.get("layers") if isinstance(document, dict) else None
        if not isinstance(layers, list):
            raise ImageError("OCI layout: image manifest has no 'layers' list")
        config = document.get("config")
        return _Manifest(
            [_blob_name(layer.get("digest") if isinstance(layer, dict) else None)
             for layer in layers],
            _blob_name(config.get("digest")) if isinstance(config, dict) else None, tags)
    raise ImageError("OCI layout: indexes nest too deeply")


def _choose_manifest(manifests: list[Any]) -> dict[str, Any]:
    candidates = [m for m in manifests if isinstance(m, dict)]
    if len(candidates) == 1:
        return candidates[0]
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)
    fitting = [m for m in candidates
               if (m.get("platform") or {}).get("os", "linux") == "linux"
               and (m.get("platform") or {}).get("architecture") == arch]
    if len(fitting) == 1:
        return fitting[0]
    raise ImageError(f"OCI layout: {len(candidates)} manifests and no single one for "
                     f"linux/{arch}; keep one image in the layout")


def read_layered(location: bytes, tree: ImageTree) -> ImageTree:
    archive = _Archive(tree, location)
    if archive.has("manifest.json"):
        manifest = _docker_manifest(archive)
    elif archive.has("oci-layout") and archive.has("index.json"):
        manifest = _oci_manifest(archive)
    elif archive.is_dir:
        raise ImageError(f"{os.fsdecode(location)}: neither a docker save directory "
                         "(manifest.json) nor an OCI image layout (oci-layout, index.json)")
    elif archive.has("repositories") and any(n.endswith("/layer.tar") for n in archive.members):
        raise ImageError(f"{os.fsdecode(location)}: a docker save tarball without "
                         "manifest.json (Docker < 1.10); save it with a newer Docker")
    else:
        # A plain root filesystem tarball: `docker export`, or a rootfs.tar of ours.
        apply_layer(tree, _Layer(location, 0, os.path.getsize(location)))
        return tree
    if manifest.config is not None:
        config = archive.read_json(manifest.config)
        if not isinstance(config, dict):
            raise ImageError(f"image config {manifest.config!r}: expected a JSON object")
        tree.config = config
    tree.tags = manifest.tags
    for name in manifest.layers:
        layer = archive.layer(name)
        tree.layer_bytes += layer.size  # uncompressed, as `docker images` counts it
        apply_layer(tree, layer)
    return tree


def open_image(location: str | os.PathLike) -> ImageTree:
    """Read IMAGE: a rootfs directory, an OCI layout directory, or a tarball (docker
    save, OCI layout, or a plain root filesystem), possibly compressed as a whole."""
    raw = os.fsencode(location)
    if os.path.isdir(raw):
        if os.path.isfile(os.path.join(raw, b"oci-layout")) or (
                os.path.isfile(os.path.join(raw, b"manifest.json"))
                and not os.path.isdir(os.path.join(raw, b"usr"))):
            tree = ImageTree(os.fsdecode(raw))
            return _closing_on_error(tree, lambda: read_layered(raw, tree))
        return read_rootfs_dir(raw)
    try:
        size = os.path.getsize(raw)
    except OSError as exc:
        raise ImageError(f"{os.fsdecode(raw)}: cannot read image: {exc.strerror}") from None
    tree = ImageTree(os.fsdecode(raw))

    def load() -> ImageTree:
        # A tarball compressed as a whole is decompressed once; layers are then spans of it.
        outer = _layer_from_span(tree, raw, 0, size, os.fsdecode(raw))
        return read_layered(outer.host_path, tree)

    return _closing_on_error(tree, load)


def _closing_on_error(tree: ImageTree, load: Any) -> ImageTree:
    try:
        return load()
    except OSError as exc:
        tree.close()
        raise ImageError(f"{tree.source}: cannot read image: {exc.strerror or exc}") from None
    except BaseException:
        tree.close()
        raise
