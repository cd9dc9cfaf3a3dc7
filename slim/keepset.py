"""The keep set: every image path the slim image needs so the recorded workload still runs.

Starting from the reported paths and the user's includes, the set is closed under:
- symlinks: each symlink met while resolving a path, in any component, and what it
  points to, recursively (bounded like the kernel's 40 links);
- parents: every directory above a kept path, with its mode and owner;
- hard links: every name of a kept inode;
- interpreters: the ELF `PT_INTERP` of every kept executable ELF file and the `#!`
  interpreter of every executed script, recursively. The kernel opens these itself
  during execve, so no syscall reports them.
The image's own /dev entries (device nodes, links, directories: no bytes) are always
kept, because recorders exclude /dev by default (a container runtime mounts its own) and
a chroot of the slim root filesystem would otherwise have no /dev/null.
A reported path the image lacks (a /tmp file the workload wrote) is skipped. So is a
path the workload only probed and never found (ENOENT, ENOTDIR: a PATH search, an
import path) even when the image has it: it was absent where the workload ran, and
keeping it would change what the probe finds. A reported directory keeps the directory,
not what is inside it.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from snoop.common.outcomes import only_absent
from snoop.common.protocol import AccessKind
from snoop.common.report import FileDetail
from snoop.slim.elf import ElfError, elf_interpreter, is_elf, shebang_interpreter
from snoop.slim.image import ROOT, EntryType, ImageError, ImageTree, ancestors, join

DEV = b"/dev"
MAX_SYMLINKS = 40  # the kernel's limit per path walk (ELOOP beyond)
_EXEC = 1 << int(AccessKind.EXEC)
_GLOB_CHARS = b"*?["


@dataclass
class Resolution:
    """Where a path leads inside the image."""

    path: bytes | None  # the entry the path names, None when it does not exist
    symlinks: list[bytes] = field(default_factory=list)  # every symlink the walk went through
    loop: bool = False


def resolve(tree: ImageTree, path: bytes, follow_last: bool = True) -> Resolution:
    """Walk `path` through the image as the kernel would inside a chroot of it.

    Each component may be a symlink (absolute targets restart at the image root, `..`
    never climbs above it). Symlinks met on the way are recorded even when the walk
    ends at a missing entry: the workload went through them.
    """
    result = Resolution(None)
    pending = [part for part in reversed(path.split(b"/")) if part not in (b"", b".")]
    current = ROOT
    followed = 0
    while pending:
        name = pending.pop()
        if name in (b"", b"."):
            continue
        if name == b"..":
            current = current.rsplit(b"/", 1)[0] or ROOT
            continue
        candidate = join(current, name)
        entry = tree.get(candidate)
        if entry is None:
            return result
        if entry.type is EntryType.SYMLINK and (pending or follow_last):
            result.symlinks.append(candidate)
            followed += 1
            if followed > MAX_SYMLINKS:
                result.loop = True
                return result
            if not entry.linkname:
                return result  # an empty target resolves to nothing (ENOENT)
            if entry.linkname.startswith(b"/"):
                current = ROOT
            pending.extend(reversed(entry.linkname.split(b"/")))
            continue
        if pending and entry.type is not EntryType.DIR:
            return result  # ENOTDIR
        current = candidate
    result.path = current
    return result


def expand_include(tree: ImageTree, pattern: bytes) -> list[bytes]:
    """Image paths an include names: the path itself, or the matches of a glob.

    `*`, `?` and `[...]` match within one path component; components may go through
    symlinked directories (`/lib/x86_64-linux-gnu/libnss_*` works with merged /usr).
    """
    if not any(char in pattern for char in _GLOB_CHARS):
        return [pattern]
    found = [ROOT]
    for part in (p for p in pattern.split(b"/") if p):
        following = []
        for prefix in found:
            if not any(char in part for char in _GLOB_CHARS):
                following.append(join(prefix, part))
                continue
            directory = resolve(tree, prefix).path
            if directory is None:
                continue
            following.extend(join(prefix, name) for name in tree.children(directory)
                             if fnmatch.fnmatchcase(name, part))
        found = following
    return found


@dataclass
class KeepSet:
    paths: dict[bytes, str] = field(default_factory=dict)  # kept path -> why (first reason)
    missing: list[bytes] = field(default_factory=list)  # reported found, not in the image
    # reported, never found (ENOENT/ENOTDIR only): not kept. The image has `absent_in_image`.
    absent: list[bytes] = field(default_factory=list)
    absent_in_image: list[bytes] = field(default_factory=list)
    unresolvable: list[bytes] = field(default_factory=list)  # relative or symlink loops
    warnings: list[str] = field(default_factory=list)

    def __contains__(self, path: bytes) -> bool:
        return path in self.paths

    def __len__(self) -> int:
        return len(self.paths)

    def sorted(self) -> list[bytes]:
        return sorted(self.paths)


class _Closure:
    def __init__(self, tree: ImageTree) -> None:
        self.tree = tree
        self.keep = KeepSet()
        self.executed: set[bytes] = set()
        self.inspected: set[bytes] = set()
        self.pending: list[bytes] = []
        self.names_of_inode: dict[object, list[bytes]] = {}
        for entry in tree.entries.values():
            if entry.inode is not None:
                self.names_of_inode.setdefault(entry.inode, []).append(entry.path)

    def add_path(self, path: bytes, reason: str, executed: bool = False) -> bytes | None:
        """Keep what `path` names and every symlink on the way; the entry kept, if any."""
        if not path.startswith(b"/"):
            self.keep.unresolvable.append(path)
            return None
        resolution = resolve(self.tree, path)
        for link in resolution.symlinks:
            self._mark(link, "symlink")
        if resolution.loop:
            self.keep.unresolvable.append(path)
            return None
        if resolution.path is None:
            return None
        self._mark(resolution.path, reason)
        if executed and resolution.path not in self.executed:
            self.executed.add(resolution.path)
            self.inspected.discard(resolution.path)
            self.pending.append(resolution.path)
        return resolution.path

    def _mark(self, path: bytes, reason: str) -> None:
        if path in self.keep.paths:
            return
        self.keep.paths[path] = reason
        self.pending.append(path)

    def run(self) -> KeepSet:
        while self.pending:
            path = self.pending.pop()
            entry = self.tree.get(path)
            if entry is None:
                continue
            for up in ancestors(path):
                self._mark(up, "parent")
            if entry.inode is not None:
                for other in self.names_of_inode.get(entry.inode, ()):
                    self._mark(other, "hard link")
            if entry.type is EntryType.FILE and path not in self.inspected:
                self.inspected.add(path)
                self._interpreters(path)
        return self.keep

    def _interpreters(self, path: bytes) -> None:
        entry = self.tree.get(path)
        assert entry is not None
        if entry.size < 4:
            return
        try:
            head = self.tree.read(entry, 0, 256)
            if is_elf(head):
                interpreter = elf_interpreter(
                    lambda offset, size: self.tree.read(entry, offset, size), entry.size)
                kind = "ELF interpreter"
            elif path in self.executed and entry.mode & 0o111:
                interpreter = shebang_interpreter(head)
                kind = "#! interpreter"
            else:
                return
        except (ElfError, ImageError) as exc:
            self.keep.warnings.append(f"{_show(path)}: {exc}")
            return
        if interpreter is None:
            return
        if not interpreter.startswith(b"/"):
            self.keep.warnings.append(
                f"{_show(path)}: relative {kind} {_show(interpreter)} depends on the working "
                "directory; include it explicitly if needed")
            return
        if self.add_path(interpreter, kind, executed=True) is None:
            self.keep.warnings.append(
                f"{_show(path)}: {kind} {_show(interpreter)} is not in the image")


def compute_keep_set(tree: ImageTree, files: Mapping[bytes, FileDetail],
                     includes: Iterable[bytes] = (), runtime: Iterable[bytes] = ()) -> KeepSet:
    """The closed keep set for reported `files` (merged reports), user `includes`, and
    the paths the container `runtime` reads itself (see image_config.runtime_paths)."""
    closure = _Closure(tree)
    closure._mark(ROOT, "image root")
    if DEV in tree:
        for entry in tree.walk(DEV):
            if entry.type is not EntryType.FILE:
                closure._mark(entry.path, "/dev entry")
    for path in sorted(files):
        if only_absent(files[path].outcomes):
            closure.keep.absent.append(path)
            if resolve(tree, path).path is not None:
                closure.keep.absent_in_image.append(path)
            continue
        kinds = files[path].kinds
        # No recorded kinds (an older or foreign report): any file may have been executed.
        executed = bool(kinds & _EXEC) or kinds == 0
        if closure.add_path(path, "reported", executed=executed) is None and path.startswith(b"/"):
            closure.keep.missing.append(path)
    for path in runtime:
        closure.add_path(path, "image config")
    for pattern in includes:
        matches = expand_include(tree, pattern)
        kept_any = False
        for match in matches:
            kept = closure.add_path(match, "included")
            if kept is None:
                continue
            kept_any = True
            entry = tree.get(kept)
            if entry is not None and entry.type is EntryType.DIR:
                # An included directory means its whole content, links followed.
                for inner in tree.walk(kept):
                    closure.add_path(inner.path, "included")
        if not kept_any:
            closure.keep.warnings.append(f"include {_show(pattern)} matches nothing in the image")
    return closure.run()


def _show(path: bytes) -> str:
    return path.decode("utf-8", "backslashreplace")
