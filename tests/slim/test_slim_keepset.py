from __future__ import annotations

from pathlib import Path

import pytest

from snoop.slim.image import EntryType
from snoop.slim.keepset import compute_keep_set, expand_include, resolve

from .helpers import TreeBuilder, elf64, make_report


@pytest.fixture
def image(tmp_path: Path) -> TreeBuilder:
    return TreeBuilder(tmp_path).merged_usr()


def keep(builder: TreeBuilder, files: dict[str, list[str]], includes: list[str] = ()):
    report = make_report(files)
    return compute_keep_set(builder.tree, report.files, [i.encode() for i in includes])


def test_merged_usr_loader_resolves_through_lib(image: TreeBuilder) -> None:
    result = resolve(image.tree, b"/lib64/ld-linux-x86-64.so.2")
    assert result.path == b"/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
    assert result.symlinks == [b"/lib64", b"/usr/lib64/ld-linux-x86-64.so.2", b"/lib"]
    kept = keep(image, {"/lib64/ld-linux-x86-64.so.2": ["read"]})
    for path in (b"/lib64", b"/lib", b"/usr/lib64", b"/usr/lib64/ld-linux-x86-64.so.2",
                 b"/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", b"/usr",
                 b"/usr/lib", b"/usr/lib/x86_64-linux-gnu", b"/"):
        assert path in kept, path
    assert b"/bin" not in kept and b"/usr/bin" not in kept


def test_symlink_chain_through_a_directory_symlink(image: TreeBuilder) -> None:
    image.dir("/opt/app-1.2/etc").file("/opt/app-1.2/etc/real.conf", b"conf")
    image.link("/opt/app", "app-1.2")                       # a directory symlink
    image.link("/opt/app-1.2/etc/app.conf", "real.conf")
    image.link("/etc/app.conf", "../opt/app/etc/app.conf")  # relative, through /opt/app
    image.link("/etc/current.conf", "/etc/app.conf")        # absolute, to another link
    kept = keep(image, {"/etc/current.conf": ["read"]})
    assert {b"/etc/current.conf", b"/etc/app.conf", b"/opt/app",
            b"/opt/app-1.2/etc/app.conf", b"/opt/app-1.2/etc/real.conf"} <= set(kept.paths)
    assert kept.paths[b"/opt/app-1.2/etc/real.conf"] == "reported"
    assert kept.paths[b"/opt/app"] == "symlink"


def test_symlink_loop_is_bounded(image: TreeBuilder) -> None:
    image.link("/a", "b").link("/b", "a")
    result = resolve(image.tree, b"/a")
    assert result.loop and result.path is None
    kept = keep(image, {"/a": ["read"]})
    assert b"/a" in kept and b"/b" in kept and kept.unresolvable == [b"/a"]


def test_dotdot_after_a_symlink_follows_the_kernel(image: TreeBuilder) -> None:
    image.dir("/data/x").file("/data/file", b"1").link("/shortcut", "/data/x")
    assert resolve(image.tree, b"/shortcut/../file").path == b"/data/file"
    assert resolve(image.tree, b"/../../data/file").path == b"/data/file"


def test_missing_paths_are_skipped_but_links_on_the_way_kept(image: TreeBuilder) -> None:
    kept = keep(image, {"/lib/libnothere.so": ["read"], "/tmp/scratch": ["write"]})
    assert kept.missing == [b"/lib/libnothere.so", b"/tmp/scratch"]
    assert b"/lib" in kept and b"/tmp/scratch" not in kept


def test_reported_directory_keeps_only_the_directory(image: TreeBuilder) -> None:
    image.dir("/usr/share/zoneinfo").file("/usr/share/zoneinfo/UTC", b"tz")
    kept = keep(image, {"/usr/share/zoneinfo": ["stat"]})
    assert b"/usr/share/zoneinfo" in kept and b"/usr/share/zoneinfo/UTC" not in kept


def test_hard_links_keep_every_name(image: TreeBuilder) -> None:
    image.file("/usr/bin/gzip", b"same", inode=7).file("/usr/bin/gunzip", b"same", inode=7)
    kept = keep(image, {"/bin/gunzip": ["read"]})
    assert kept.paths[b"/usr/bin/gzip"] == "hard link"


def test_exec_keeps_the_elf_interpreter(image: TreeBuilder) -> None:
    image.file("/usr/bin/tool", elf64(b"/lib64/ld-linux-x86-64.so.2"), mode=0o755)
    kept = keep(image, {"/bin/tool": ["exec"]})
    assert kept.paths[b"/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"] == "ELF interpreter"
    assert b"/lib64" in kept and b"/usr/lib64/ld-linux-x86-64.so.2" in kept


def test_shebang_chain_is_followed(image: TreeBuilder) -> None:
    image.file("/usr/bin/python3", elf64(b"/lib64/ld-linux-x86-64.so.2"), mode=0o755)
    image.file("/usr/bin/runner", b"#!/usr/bin/python3 -u\nprint()\n", mode=0o755)
    image.dir("/app").file("/app/start", b"#!/usr/bin/runner\n", mode=0o755)
    kept = keep(image, {"/app/start": ["exec"]})
    assert kept.paths[b"/usr/bin/runner"] == "#! interpreter"
    assert kept.paths[b"/usr/bin/python3"] == "#! interpreter"
    assert kept.paths[b"/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"] == "ELF interpreter"


def test_script_only_read_does_not_pull_its_interpreter(image: TreeBuilder) -> None:
    image.file("/usr/bin/perl", b"perl", mode=0o755)
    image.dir("/app").file("/app/tool.pl", b"#!/usr/bin/perl\n", mode=0o755)
    kept = keep(image, {"/app/tool.pl": ["read"]})
    assert b"/usr/bin/perl" not in kept


def test_missing_interpreter_is_a_warning(image: TreeBuilder) -> None:
    image.dir("/app").file("/app/run", b"#!/usr/bin/nothere\n", mode=0o755)
    kept = keep(image, {"/app/run": ["exec"]})
    assert any("/usr/bin/nothere" in warning for warning in kept.warnings)


def test_includes_paths_directories_and_globs(image: TreeBuilder) -> None:
    image.file("/usr/lib/x86_64-linux-gnu/libnss_files.so.2", b"n")
    image.file("/usr/lib/x86_64-linux-gnu/libnss_dns.so.2", b"n")
    image.file("/usr/lib/x86_64-linux-gnu/libz.so.1", b"z")
    image.dir("/etc/ssl/certs").dir("/usr/share/ca").file("/usr/share/ca/root.crt", b"c")
    image.link("/etc/ssl/certs/root.pem", "/usr/share/ca/root.crt")
    image.file("/etc/hosts", b"h")
    assert sorted(expand_include(image.tree, b"/lib/x86_64-linux-gnu/libnss_*")) == [
        b"/lib/x86_64-linux-gnu/libnss_dns.so.2", b"/lib/x86_64-linux-gnu/libnss_files.so.2"]
    kept = keep(image, {}, ["/lib/x86_64-linux-gnu/libnss_*", "/etc/ssl", "/etc/hosts",
                            "/nothing/*"])
    assert b"/usr/lib/x86_64-linux-gnu/libnss_dns.so.2" in kept
    assert b"/usr/lib/x86_64-linux-gnu/libz.so.1" not in kept
    assert b"/usr/share/ca/root.crt" in kept and b"/etc/hosts" in kept
    assert any("/nothing/*" in warning for warning in kept.warnings)


def test_kept_entries_have_kept_parents(image: TreeBuilder) -> None:
    image.dir("/srv/a/b", mode=0o750, uid=5).file("/srv/a/b/c", b"c")
    kept = keep(image, {"/srv/a/b/c": ["read"]})
    for path in (b"/srv", b"/srv/a", b"/srv/a/b"):
        assert kept.paths[path] == "parent"
        assert image.tree.get(path).type is EntryType.DIR


def test_dev_entries_are_kept_without_being_reported(image: TreeBuilder) -> None:
    image.dir("/dev/pts").special("/dev/null", EntryType.CHAR).link("/dev/fd", "/proc/self/fd")
    image.file("/dev/stray-file", b"a regular file in /dev is kept only when used")
    kept = keep(image, {})
    assert {b"/dev", b"/dev/pts", b"/dev/null", b"/dev/fd"} <= set(kept.paths)
    assert kept.paths[b"/dev/null"] == "/dev entry" and b"/dev/stray-file" not in kept
    assert b"/proc" not in kept


def test_empty_symlink_target_resolves_to_nothing(image: TreeBuilder) -> None:
    image.link("/etc/empty", "")
    result = resolve(image.tree, b"/etc/empty")
    assert result.path is None and result.symlinks == [b"/etc/empty"]
    assert resolve(image.tree, b"/etc/empty", follow_last=False).path == b"/etc/empty"


def test_a_path_only_probed_and_never_found_is_not_kept(image: TreeBuilder) -> None:
    # The image has all four; where the workload ran, the first two were absent.
    for name in ("probed", "not-a-dir", "denied", "later"):
        image.file(f"/usr/lib/{name}.py", b"x")
    image.file("/usr/lib/unknown.py", b"x")
    kept = keep(image, {
        "/usr/lib/probed.py": ["stat", "ENOENT"],
        "/usr/lib/not-a-dir.py": ["read", "ENOTDIR"],
        "/usr/lib/denied.py": ["read", "EACCES"],  # it was there, unreadable
        "/usr/lib/later.py": ["read", "ENOENT", "found"],  # absent once, then found
        "/usr/lib/unknown.py": ["read"],  # a report without outcomes: kept as before
        "/usr/lib/nowhere.py": ["stat", "ENOENT"],
    })
    assert b"/usr/lib/probed.py" not in kept and b"/usr/lib/not-a-dir.py" not in kept
    for name in ("denied", "later", "unknown"):
        assert f"/usr/lib/{name}.py".encode() in kept, name
    assert kept.absent == [b"/usr/lib/not-a-dir.py", b"/usr/lib/nowhere.py",
                           b"/usr/lib/probed.py"]
    assert kept.absent_in_image == [b"/usr/lib/not-a-dir.py", b"/usr/lib/probed.py"]
    assert kept.missing == []  # a probe that failed is no sign of the wrong image
