from __future__ import annotations

import gzip
import os
import stat
from pathlib import Path

import pytest

from snoop.slim.image import EntryType, ImageError, open_image, read_rootfs_dir

from .helpers import docker_save_tar, layer_tar, oci_dir, oci_tar

BASE = layer_tar([
    ("etc", "dir", None),
    ("etc/keep.conf", "file", b"keep"),
    ("etc/gone.conf", "file", b"gone"),
    ("etc/app", "dir", None),
    ("etc/app/old-1", "file", b"old"),
    ("etc/app/old-2", "file", b"old"),
    ("usr/bin/tool", "file", b"tool-v1"),
    ("usr/bin/tool-alias", "hardlink", "usr/bin/tool"),
    ("lib", "symlink", "usr/lib"),
    ("var/cache", "dir", None),
    ("var/cache/big.bin", "file", b"b" * 1000),
])
UPPER = layer_tar([
    ("etc/.wh.gone.conf", "file", b""),
    ("etc/app/new", "file", b"new"),          # added before the opaque marker on purpose
    ("etc/app/.wh..wh..opq", "file", b""),
    ("usr/bin/tool", "file", b"tool-v2"),
    (".wh.var", "file", b""),
    ("dev", "dir", None),
    ("dev/fifo", "fifo", None),
    ("dev/urandom", "char", None),
])


def check_flattened(location: Path) -> None:
    with open_image(location) as tree:
        assert tree.get(b"/etc/keep.conf") is not None
        assert tree.get(b"/etc/gone.conf") is None
        assert tree.children(b"/etc/app") == [b"new"]
        assert tree.get(b"/var") is None and tree.get(b"/var/cache/big.bin") is None
        tool = tree.get(b"/usr/bin/tool")
        assert tree.read(tool) == b"tool-v2"
        alias = tree.get(b"/usr/bin/tool-alias")
        assert tree.read(alias) == b"tool-v1" and alias.inode is not None
        assert tree.get(b"/lib").type is EntryType.SYMLINK
        assert tree.get(b"/lib").linkname == b"usr/lib"
        urandom = tree.get(b"/dev/urandom")
        assert (urandom.type, urandom.devmajor, urandom.devminor) == (EntryType.CHAR, 1, 9)
        assert tree.get(b"/dev/fifo").type is EntryType.FIFO
        assert not any(b".wh." in path for path in tree.entries)


def test_docker_save_layers_whiteouts_and_opaque_dirs(tmp_path: Path) -> None:
    check_flattened(docker_save_tar(tmp_path / "image.tar", [BASE, UPPER]))


def test_docker_save_compressed_as_a_whole(tmp_path: Path) -> None:
    plain = docker_save_tar(tmp_path / "image.tar", [BASE, UPPER])
    packed = tmp_path / "image.tar.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    check_flattened(packed)


@pytest.mark.parametrize("compress", [True, False])
def test_oci_layout_tarball(tmp_path: Path, compress: bool) -> None:
    check_flattened(oci_tar(tmp_path / "oci.tar", [BASE, UPPER], compress))


def test_oci_layout_directory(tmp_path: Path) -> None:
    check_flattened(oci_dir(tmp_path / "oci", [BASE, UPPER]))


@pytest.mark.parametrize("name", ["../evil", "etc/../../evil", "/etc/evil"])
def test_member_escaping_the_root_refuses_the_image(tmp_path: Path, name: str) -> None:
    layer = layer_tar([("etc", "dir", None), (name, "file", b"x")])
    with pytest.raises(ImageError, match="refusing the image"):
        open_image(docker_save_tar(tmp_path / "image.tar", [layer]))


@pytest.mark.parametrize("target", ["../../etc/shadow", "/etc/shadow"])
def test_hard_link_escaping_the_root_refuses_the_image(tmp_path: Path, target: str) -> None:
    layer = layer_tar([("etc/shadow", "file", b"s"), ("etc/copy", "hardlink", target)])
    with pytest.raises(ImageError, match="hard link"):
        open_image(oci_tar(tmp_path / "oci.tar", [layer]))


def test_hard_link_to_a_missing_member_is_refused(tmp_path: Path) -> None:
    layer = layer_tar([("etc/copy", "hardlink", "etc/nothere")])
    with pytest.raises(ImageError, match="not a file in the image"):
        open_image(docker_save_tar(tmp_path / "image.tar", [layer]))


def test_oci_blob_digest_must_be_a_digest(tmp_path: Path) -> None:
    layout = oci_dir(tmp_path / "oci", [BASE])
    index = (layout / "index.json").read_text()
    manifest_digest = index.split('"digest": "')[1].split('"')[0]
    (layout / "index.json").write_text(index.replace(manifest_digest, "sha256:../../x"))
    with pytest.raises(ImageError, match="bad digest"):
        open_image(layout)


def test_unreadable_images(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="cannot read image"):
        open_image(tmp_path / "missing")
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"this is not a tarball" * 100)
    with pytest.raises(ImageError):
        open_image(junk)


def test_rootfs_directory(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/bin/a").write_bytes(b"hello")
    os.link(root / "usr/bin/a", root / "usr/bin/b")
    (root / "bin").symlink_to("usr/bin")
    (root / "dev").mkdir()
    os.mkfifo(root / "dev/pipe")
    os.chmod(root / "usr/bin/a", 0o4755)
    os.utime(root / "usr/bin/a", ns=(1, 1_500_000_000_123_456_789))
    os.setxattr(root / "usr/bin/a", "user.snoop", b"\x00\xff")
    tree = read_rootfs_dir(root)
    a, b = tree.get(b"/usr/bin/a"), tree.get(b"/usr/bin/b")
    assert a.inode is not None and a.inode == b.inode
    assert a.mode == 0o4755 and a.mtime_ns == 1_500_000_000_123_456_789
    assert a.xattrs == {"user.snoop": b"\x00\xff"}
    assert tree.read(a, 1, 3) == b"ell"
    assert tree.get(b"/bin").linkname == b"usr/bin"
    assert tree.get(b"/dev/pipe").type is EntryType.FIFO


@pytest.mark.timeout(10)
def test_special_entries_are_never_read(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "data").write_bytes(b"data")
    tree = read_rootfs_dir(root)
    os.mkfifo(root / "pipe")
    tree.get(b"/data")  # scanned as a regular file ...
    (root / "data").unlink()
    os.mkfifo(root / "data")  # ... and swapped for a FIFO: opening it must not hang
    with pytest.raises(ImageError, match="no longer a regular file"):
        tree.read(tree.get(b"/data"))
    fifo_tree = read_rootfs_dir(root)
    with pytest.raises(ImageError, match="never read"):
        fifo_tree.read(fifo_tree.get(b"/pipe"))
    assert stat.S_ISFIFO(os.lstat(root / "pipe").st_mode)


def test_plain_rootfs_tarball_is_one_layer(tmp_path: Path) -> None:
    plain = tmp_path / "export.tar"
    plain.write_bytes(layer_tar([("./etc", "dir", None), ("./etc/a", "file", b"a"),
                                 ("./bin", "symlink", "usr/bin")]))
    with open_image(plain) as tree:
        assert tree.read(tree.get(b"/etc/a")) == b"a"
        assert tree.get(b"/bin").linkname == b"usr/bin"


def test_pre_manifest_docker_save_is_refused_clearly(tmp_path: Path) -> None:
    old = tmp_path / "old.tar"
    old.write_bytes(layer_tar([("repositories", "file", b"{}"),
                               ("abc/layer.tar", "file", layer_tar([]))]))
    with pytest.raises(ImageError, match="without manifest.json"):
        open_image(old)
