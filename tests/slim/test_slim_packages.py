from __future__ import annotations

from pathlib import Path

from snoop.slim.packages import package_view

from .helpers import TreeBuilder

STATUS = b"""\
Package: libfoo1
Status: install ok installed
Architecture: amd64
Multi-Arch: same
Version: 1.2-3
Description: foo
 long description line

Package: bar-tools
Status: install ok installed
Architecture: all
Version: 0.9

Package: removed-pkg
Status: deinstall ok config-files
Architecture: all
Version: 1
"""


def test_dpkg_view_resolves_merged_usr_and_ignores_directories(tmp_path: Path) -> None:
    image = TreeBuilder(tmp_path).merged_usr()
    image.file("/var/lib/dpkg/status", STATUS)
    # dpkg lists the pre-merge location /lib/...; the file lives in /usr/lib.
    image.file("/var/lib/dpkg/info/libfoo1:amd64.list",
               b"/.\n/lib\n/lib/x86_64-linux-gnu\n/lib/x86_64-linux-gnu/libfoo.so.1\n"
               b"/usr/share/doc/libfoo1/copyright\n")
    image.file("/var/lib/dpkg/info/bar-tools.list", b"/usr\n/usr/bin\n/usr/bin/bar\n")
    image.file("/usr/lib/x86_64-linux-gnu/libfoo.so.1", b"f" * 1000)
    image.file("/usr/share/doc/libfoo1/copyright", b"c" * 10)
    image.file("/usr/bin/bar", b"b" * 500)
    kept = {b"/usr/lib/x86_64-linux-gnu/libfoo.so.1"}
    view = package_view(image.tree, kept)
    assert view is not None and view.manager == "dpkg"
    assert [p.name for p in view.packages] == ["libfoo1", "bar-tools"]
    (foo,) = view.used
    assert (foo.name, foo.version, foo.kept_files, foo.kept_bytes, foo.total_bytes) == (
        "libfoo1", "1.2-3", 1, 1000, 1010)
    assert foo.files == [b"/usr/lib/x86_64-linux-gnu/libfoo.so.1",
                         b"/usr/share/doc/libfoo1/copyright"]
    (bar,) = view.unused
    assert (bar.name, bar.total_bytes, bar.used) == ("bar-tools", 500, False)


def test_apk_view(tmp_path: Path) -> None:
    image = TreeBuilder(tmp_path)
    image.file("/lib/apk/db/installed",
               b"C:Q1abc=\nP:musl\nV:1.2.4-r2\nF:lib\nR:ld-musl-x86_64.so.1\n"
               b"R:libc.musl-x86_64.so.1\n\nP:busybox\nV:1.36\nF:bin\nR:busybox\n")
    image.file("/lib/ld-musl-x86_64.so.1", b"m" * 600)
    image.link("/lib/libc.musl-x86_64.so.1", "ld-musl-x86_64.so.1")
    image.file("/bin/busybox", b"b" * 800)
    view = package_view(image.tree, {b"/bin/busybox"})
    assert view is not None and view.manager == "apk"
    assert [(p.name, p.version, p.used, p.total_bytes) for p in view.packages] == [
        ("musl", "1.2.4-r2", False, 600), ("busybox", "1.36", True, 800)]


def test_no_database(tmp_path: Path) -> None:
    assert package_view(TreeBuilder(tmp_path).tree, set()) is None
