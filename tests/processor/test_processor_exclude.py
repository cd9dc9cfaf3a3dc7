import pytest

from snoop.processor.exclude import Exclusions

DEFAULT = ("/proc", "/sys", "/dev")


@pytest.mark.parametrize(("path", "excluded"), [
    (b"/dev", True),
    (b"/dev/null", True),
    (b"/dev/pts/0", True),
    (b"/devices", False),
    (b"/devx/null", False),
    (b"/proc/self/maps", True),
    (b"/proc", True),
    (b"/process", False),
    (b"/sys/fs/cgroup", True),
    (b"/system", False),
    (b"/etc/passwd", False),
    (b"/", False),
    (b"dev/null", False),  # relative: never excluded
    (b"proc/self", False),
])
def test_prefixes_match_whole_components(path: bytes, excluded: bool) -> None:
    assert Exclusions(DEFAULT).excludes(path) is excluded


def test_prefix_with_trailing_slash_and_dots_is_normalized() -> None:
    ex = Exclusions(["/var/cache/", "/opt/./app"])
    assert ex.excludes(b"/var/cache/apt")
    assert ex.excludes(b"/var/cache")
    assert not ex.excludes(b"/var/caches")
    assert ex.excludes(b"/opt/app/x")


def test_root_prefix_excludes_every_absolute_path() -> None:
    ex = Exclusions(["/"])
    assert ex.excludes(b"/etc/passwd")
    assert ex.excludes(b"/")
    assert not ex.excludes(b"relative")


@pytest.mark.parametrize(("pattern", "path", "excluded"), [
    ("/tmp/*.log", b"/tmp/a.log", True),
    ("/tmp/*.log", b"/tmp/sub/a.log", False),  # * stays within one component
    ("/tmp/*.log", b"/tmp/a.log.1", False),
    ("/tmp/**.log", b"/tmp/sub/a.log", True),
    ("/home/*/.cache", b"/home/u/.cache", True),
    ("/home/*/.cache", b"/home/u/.cache/pip/x", True),  # and everything below a match
    ("/home/*/.cache", b"/home/u/.cachex", False),
    ("/home/*/.cache", b"/home/.cache", False),
    ("/var/log/app?", b"/var/log/app1", True),
    ("/var/log/app?", b"/var/log/app12", False),
    ("/var/log/app?", b"/var/log/app/", False),
    ("/srv/[ab]*", b"/srv/alpha", True),
    ("/srv/[ab]*", b"/srv/charlie", False),
    ("/srv/[!ab]*", b"/srv/charlie", True),
    ("/srv/[!ab]*", b"/srv/alpha", False),
    ("/srv/x[/]y", b"/srv/x/y", False),  # a class never matches '/'
    ("/srv/[a-c]", b"/srv/b", True),
    ("/srv/[a-c]", b"/srv/d", False),
    ("/srv/a+b(*", b"/srv/a+b(1", True),  # regex metacharacters are literal
    ("/srv/[unclosed", b"/srv/[unclosed", True),
])
def test_globs(pattern: str, path: bytes, excluded: bool) -> None:
    assert Exclusions([pattern]).excludes(path) is excluded


def test_non_utf8_paths_are_matched_as_bytes() -> None:
    ex = Exclusions(["/data/*"])
    assert ex.excludes(b"/data/\xff\xfe")
    assert not ex.excludes(b"/dat\xff/x")
