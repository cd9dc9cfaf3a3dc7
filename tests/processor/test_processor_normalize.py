import posixpath

import pytest
from hypothesis import given
from hypothesis import strategies as st

from snoop.processor.normalize import normalize

CASES = [
    (b"/", b"/"),
    (b"/etc/passwd", b"/etc/passwd"),
    (b"//etc//passwd", b"/etc/passwd"),
    (b"/etc/./passwd", b"/etc/passwd"),
    (b"/etc/passwd/", b"/etc/passwd"),
    (b"/etc/", b"/etc"),
    (b"/usr/lib/../bin/python", b"/usr/bin/python"),
    (b"/..", b"/"),
    (b"/../../etc", b"/etc"),
    (b"/a/b/../../..", b"/"),
    (b"/.", b"/"),
    (b"/./", b"/"),
    (b"///", b"/"),
    (b"/.hidden/file", b"/.hidden/file"),
    (b"/a/..b/c", b"/a/..b/c"),
    (b"/a/b.../c", b"/a/b.../c"),
    (b"/caf\xe9/\xff\xfe", b"/caf\xe9/\xff\xfe"),  # not UTF-8: bytes pass untouched
    (b"/x/\xff/../y", b"/x/y"),
    # relative (unresolved) paths stay relative, still cleaned
    (b"a/b", b"a/b"),
    (b"./a//b/", b"a/b"),
    (b"a/../b", b"b"),
    (b"../x", b"../x"),
    (b"../../x/../y", b"../../y"),
    (b"a/..", b"."),
    (b".", b"."),
    (b"./", b"."),
    (b"a/../../b", b"../b"),
]


@pytest.mark.parametrize(("raw", "clean"), CASES)
def test_normalize(raw: bytes, clean: bytes) -> None:
    assert normalize(raw) == clean


@pytest.mark.parametrize(("raw", "clean"), CASES)
def test_normalize_is_idempotent(raw: bytes, clean: bytes) -> None:
    assert normalize(normalize(raw)) == clean


def test_symlinks_are_not_resolved(tmp_path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    path = bytes(tmp_path) + b"/link/../file"
    # Lexical only: link/.. is removed as text, the link is never followed.
    assert normalize(path) == bytes(tmp_path) + b"/file"
    assert normalize(bytes(tmp_path) + b"/link/x") == bytes(tmp_path) + b"/link/x"


@given(st.lists(st.sampled_from([b"a", b"b", b".", b"..", b"", b"\xff", b"..."]), max_size=12))
def test_absolute_paths_agree_with_posixpath(parts: list[bytes]) -> None:
    path = b"/" + b"/".join(parts)
    expected = posixpath.normpath(path)
    if expected.startswith(b"//"):  # POSIX leaves a leading '//' alone; we do not
        expected = expected[1:]
    assert normalize(path) == expected
