from __future__ import annotations

import os
import stat
import tarfile
from pathlib import Path

import pytest

from snoop.slim.image import read_rootfs_dir
from snoop.slim.keepset import compute_keep_set
from snoop.slim.writer import slim_include_paths, write_rootfs, write_tar

from .helpers import TreeBuilder, make_report

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown and mknod need root")


@pytest.fixture
def source(tmp_path: Path) -> Path:
    root = tmp_path / "source"
    (root / "usr/bin").mkdir(parents=True)
    (root / "srv/data").mkdir(parents=True)
    (root / "dev").mkdir()
    (root / "usr/bin/tool").write_bytes(b"#!/bin/true\n")
    os.link(root / "usr/bin/tool", root / "usr/bin/tool-alias")
    (root / "bin").symlink_to("usr/bin")
    (root / "srv/data/owned").write_bytes(b"data")
    os.chown(root / "srv/data/owned", 1234, 5678)
    os.chown(root / "srv/data", 1234, 5678)
    os.chmod(root / "srv/data", 0o2750)
    os.chmod(root / "usr/bin/tool", 0o4755)
    os.setxattr(root / "srv/data/owned", "user.snoop.test", b"\x01\x02")
    os.mknod(root / "dev/zero", 0o666 | stat.S_IFCHR, os.makedev(1, 5))
    os.mkfifo(root / "dev/pipe", 0o640)
    (root / "srv/unused").write_bytes(b"unused")
    for path in (root / "srv/data/owned", root / "srv/data", root / "usr/bin/tool"):
        os.utime(path, ns=(0, 1_234_567_890_000_000_000), follow_symlinks=False)
    return root


def kept_paths(root: Path) -> tuple:
    tree = read_rootfs_dir(root)
    report = make_report({"/bin/tool": ["exec"], "/srv/data/owned": ["read"],
                          "/dev/zero": ["read"], "/dev/pipe": ["read"]})
    return tree, set(compute_keep_set(tree, report.files).paths)


@pytest.mark.timeout(20)  # reading /dev/zero or opening the FIFO would hang
@needs_root
def test_rootfs_keeps_modes_owners_links_xattrs_mtimes(source: Path, tmp_path: Path) -> None:
    tree, kept = kept_paths(source)
    dest = tmp_path / "slim"
    notes = write_rootfs(tree, kept, str(dest))
    assert not notes.lines()
    owned = os.lstat(dest / "srv/data/owned")
    assert (owned.st_uid, owned.st_gid) == (1234, 5678)
    assert os.getxattr(dest / "srv/data/owned", "user.snoop.test") == b"\x01\x02"
    data_dir = os.lstat(dest / "srv/data")
    assert stat.S_IMODE(data_dir.st_mode) == 0o2750 and data_dir.st_uid == 1234
    assert data_dir.st_mtime_ns == 1_234_567_890_000_000_000
    tool = os.lstat(dest / "usr/bin/tool")
    assert stat.S_IMODE(tool.st_mode) == 0o4755
    assert tool.st_ino == os.lstat(dest / "usr/bin/tool-alias").st_ino
    assert os.readlink(dest / "bin") == "usr/bin"
    zero = os.lstat(dest / "dev/zero")
    assert stat.S_ISCHR(zero.st_mode) and zero.st_rdev == os.makedev(1, 5)
    assert stat.S_ISFIFO(os.lstat(dest / "dev/pipe").st_mode)
    assert not (dest / "srv/unused").exists()
    with pytest.raises(FileExistsError):
        write_rootfs(tree, kept, str(dest))


@pytest.mark.timeout(20)
@needs_root
def test_tarball_holds_what_docker_import_needs(source: Path, tmp_path: Path) -> None:
    tree, kept = kept_paths(source)
    dest = tmp_path / "rootfs.tar"
    write_tar(tree, kept, str(dest))
    with tarfile.open(dest) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert not any(name.startswith(("/", "..")) for name in members)
        assert members["bin"].issym() and members["bin"].linkname == "usr/bin"
        assert members["usr/bin/tool"].isreg() and members["usr/bin/tool"].mode == 0o4755
        assert members["usr/bin/tool-alias"].islnk()
        assert members["usr/bin/tool-alias"].linkname == "usr/bin/tool"
        owned = members["srv/data/owned"]
        assert (owned.uid, owned.gid) == (1234, 5678)
        assert owned.pax_headers["SCHILY.xattr.user.snoop.test"].encode(
            "utf-8", "surrogateescape") == b"\x01\x02"
        assert tar.extractfile(owned).read() == b"data"
        assert members["dev/zero"].ischr() and members["dev/zero"].devminor == 5
        assert members["dev/pipe"].isfifo()
        assert "srv/unused" not in members


def test_slim_include_paths_lists_whole_directories_only_when_complete(tmp_path: Path) -> None:
    image = TreeBuilder(tmp_path)
    image.dir("/etc/complete").file("/etc/complete/a").file("/etc/complete/b")
    image.dir("/etc/partial").file("/etc/partial/a").file("/etc/partial/b")
    image.dir("/var/empty")
    kept = {b"/", b"/etc", b"/etc/complete", b"/etc/complete/a", b"/etc/complete/b",
            b"/etc/partial", b"/etc/partial/a", b"/var", b"/var/empty"}
    assert slim_include_paths(image.tree, kept) == [
        b"/etc/complete", b"/etc/partial/a", b"/var"]
