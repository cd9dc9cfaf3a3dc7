"""PathResolver: the event-fed model, the /proc fallback (fake trees), and real processes."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import textwrap

import pytest

from snoop.tracer.resolve import AT_FDCWD, PathResolver, join, translate

# ---------------------------------------------------------------- join and translate


@pytest.mark.parametrize(
    ("base", "rel", "expected"),
    [
        (b"/app", b"main.py", b"/app/main.py"),
        (b"/", b"etc/passwd", b"/etc/passwd"),
        (b"/app/", b"./lib//x.so", b"/app/lib/x.so"),
        (b"/app/bin", b"../lib/x", b"/app/lib/x"),
        (b"/app", b"../../../etc", b"/etc"),  # never above /
        (b"/app", b"..", b"/"),
        (b"/app", b".", b"/app"),
        (b"/app", b"", b"/app"),
        (b"/app", b"sub/", b"/app/sub"),
        (b"/app", b"/abs/../x", b"/x"),  # an absolute rel ignores base
        (b"/a/./b/../c", b"d", b"/a/c/d"),
        (b"/\xff\xfe", b"\x80.bin", b"/\xff\xfe/\x80.bin"),  # not UTF-8: bytes stay bytes
        # `..` is lexical: if `link` were a symlink the kernel would go elsewhere.
        (b"/app", b"link/../x", b"/app/x"),
    ],
)
def test_join(base: bytes, rel: bytes, expected: bytes) -> None:
    assert join(base, rel) == expected


@pytest.mark.parametrize(
    ("target", "root", "expected"),
    [
        (b"/app", b"/", b"/app"),
        (b"/srv/jail/app", b"/srv/jail", b"/app"),
        (b"/srv/jail", b"/srv/jail", b"/"),
        (b"/srv/jail/app", b"/srv/jail/", b"/app"),
        (b"/srv/jailbreak/x", b"/srv/jail", None),  # a sibling, not inside the root
        (b"/elsewhere", b"/srv/jail", None),
        (b"socket:[1234]", b"/", None),
        (b"pipe:[99]", b"/", None),
        (b"anon_inode:[eventpoll]", b"/", None),
        (b"/srv/jail/tmp/x (deleted)", b"/srv/jail", b"/tmp/x"),
    ],
)
def test_translate(target: bytes, root: bytes, expected: bytes | None) -> None:
    assert translate(target, root) == expected


# ---------------------------------------------------------------- fake /proc trees


class FakeProc:
    """A directory shaped like /proc: <pid>/cwd, <pid>/root, <pid>/fd/<n> symlinks."""

    def __init__(self, path) -> None:
        self.path = str(path)

    def process(self, pid: int, cwd: str | None = None, root: str = "/",
                fds: dict[int, str] | None = None, task_of: int | None = None) -> None:
        base = f"{self.path}/{task_of}/task/{pid}" if task_of else f"{self.path}/{pid}"
        os.makedirs(f"{base}/fd", exist_ok=True)
        self._link(f"{base}/root", root)
        if cwd is not None:
            self._link(f"{base}/cwd", cwd)
        for fd, target in (fds or {}).items():
            self._link(f"{base}/fd/{fd}", target)

    def set_cwd(self, pid: int, cwd: str) -> None:
        self._link(f"{self.path}/{pid}/cwd", cwd)

    def remove(self, pid: int) -> None:
        for dirpath, _, files in os.walk(f"{self.path}/{pid}", topdown=False):
            for name in files:
                os.unlink(f"{dirpath}/{name}")
            for name in os.listdir(dirpath):
                os.unlink(f"{dirpath}/{name}")  # symlinks to directories
            os.rmdir(dirpath)

    @staticmethod
    def _link(link: str, target: str) -> None:
        if os.path.lexists(link):
            os.unlink(link)
        os.symlink(target, link)


@pytest.fixture
def proc(tmp_path) -> FakeProc:
    return FakeProc(tmp_path / "proc")


@pytest.fixture
def resolver(proc: FakeProc) -> PathResolver:
    os.makedirs(proc.path)
    return PathResolver(proc=proc.path)


def test_absolute_paths_pass_through_untouched(resolver: PathResolver) -> None:
    assert resolver.resolve(1, 1, AT_FDCWD, b"/etc/../etc//passwd") == (
        b"/etc/../etc//passwd", True)
    assert resolver.resolve(1, 1, 7, b"/x") == (b"/x", True)


def test_unknown_process_is_unresolved_not_dropped(resolver: PathResolver) -> None:
    assert resolver.resolve(4242, 4242, AT_FDCWD, b"main.py") == (b"main.py", False)
    assert resolver.resolve(4242, 4242, 5, b"x") == (b"x", False)
    assert resolver.resolve(4242, 4242, -1, b"x") == (b"x", False)  # bad dirfd
    assert resolver.resolve(4242, 4242, 5, b"") == (b"", False)
    assert resolver.stats.unresolved == 4


def test_cwd_from_proc(resolver: PathResolver, proc: FakeProc) -> None:
    proc.process(10, cwd="/home/user")
    assert resolver.resolve(10, 10, AT_FDCWD, b"notes.txt") == (b"/home/user/notes.txt", True)
    assert resolver.resolve(10, 10, AT_FDCWD, b"../x") == (b"/home/x", True)
    assert resolver.stats.from_proc == 1  # then cached
    assert resolver.stats.from_model == 1


def test_proc_fallback_is_cached_per_process(resolver: PathResolver, proc: FakeProc) -> None:
    proc.process(10, cwd="/a")
    assert resolver.resolve(10, 10, AT_FDCWD, b"x") == (b"/a/x", True)
    proc.set_cwd(10, "/b")  # without a chdir event the model keeps what it learnt
    assert resolver.resolve(10, 10, AT_FDCWD, b"x") == (b"/a/x", True)
    resolver.on_chdir(10, b"/c")
    assert resolver.resolve(10, 10, AT_FDCWD, b"x") == (b"/c/x", True)


def test_fd_from_proc(resolver: PathResolver, proc: FakeProc) -> None:
    proc.process(10, cwd="/", fds={3: "/usr/lib", 4: "socket:[777]", 5: "/tmp/gone (deleted)"})
    assert resolver.resolve(10, 10, 3, b"x86_64-linux-gnu/libc.so.6") == (
        b"/usr/lib/x86_64-linux-gnu/libc.so.6", True)
    assert resolver.resolve(10, 10, 4, b"x") == (b"x", False)
    assert resolver.resolve(10, 10, 5, b"") == (b"/tmp/gone", True)
    assert resolver.resolve(10, 10, 6, b"x") == (b"x", False)  # not open


def test_empty_path_is_the_fd_itself(resolver: PathResolver, proc: FakeProc) -> None:
    proc.process(10, cwd="/work", fds={3: "/usr/bin/python3"})
    assert resolver.resolve(10, 10, 3, b"") == (b"/usr/bin/python3", True)
    assert resolver.resolve(10, 10, AT_FDCWD, b"") == (b"/work", True)


def test_chroot_translation(resolver: PathResolver, proc: FakeProc) -> None:
    proc.process(20, cwd="/srv/jail/app", root="/srv/jail",
                 fds={3: "/srv/jail/app/data", 4: "/etc/outside"})
    assert resolver.resolve(20, 20, AT_FDCWD, b"main.py") == (b"/app/main.py", True)
    assert resolver.resolve(20, 20, 3, b"x.db") == (b"/app/data/x.db", True)
    assert resolver.resolve(20, 20, 4, b"x") == (b"x", False)  # outside its root


def test_chroot_with_cwd_outside_root_is_unresolved(resolver: PathResolver,
                                                    proc: FakeProc) -> None:
    # chroot() without chdir(): the kernel itself calls such a cwd unreachable.
    proc.process(21, cwd="/home/user", root="/srv/jail")
    assert resolver.resolve(21, 21, AT_FDCWD, b"x") == (b"x", False)


def test_chroot_root_exactly(resolver: PathResolver, proc: FakeProc) -> None:
    proc.process(22, cwd="/srv/jail", root="/srv/jail")
    assert resolver.resolve(22, 22, AT_FDCWD, b"bin/sh") == (b"/bin/sh", True)


def test_thread_of_exited_leader_uses_task_dir(resolver: PathResolver, proc: FakeProc) -> None:
    os.makedirs(f"{proc.path}/30")  # the leader is a zombie: no cwd, no root
    proc.process(31, cwd="/srv", task_of=30)
    assert resolver.resolve(31, 30, AT_FDCWD, b"x") == (b"/srv/x", True)


# ---------------------------------------------------------------- the event-fed model


def test_chdir_sequence(resolver: PathResolver) -> None:
    resolver.on_chdir(1, b"/usr")
    assert resolver.resolve(1, 1, AT_FDCWD, b"bin/env") == (b"/usr/bin/env", True)
    resolver.on_chdir(1, b"lib")  # relative to the known cwd
    assert resolver.resolve(1, 1, AT_FDCWD, b"x") == (b"/usr/lib/x", True)
    resolver.on_chdir(1, b"..")
    assert resolver.resolve(1, 1, AT_FDCWD, b"x") == (b"/usr/x", True)
    resolver.on_chdir(1, b"/")
    assert resolver.resolve(1, 1, AT_FDCWD, b"etc/hosts") == (b"/etc/hosts", True)
    assert resolver.stats.from_model == 4 and resolver.stats.from_proc == 0


def test_relative_chdir_with_unknown_cwd_stays_unknown(resolver: PathResolver,
                                                       proc: FakeProc) -> None:
    resolver.on_fd(1, 3, b"/x")  # the process is known, its cwd is not
    resolver.on_chdir(1, b"sub")
    proc.process(1, cwd="/real/sub")  # what the kernel says after that chdir
    assert resolver.resolve(1, 1, AT_FDCWD, b"f") == (b"/real/sub/f", True)


def test_fork_inherits_cwd_and_fds(resolver: PathResolver) -> None:
    resolver.on_chdir(100, b"/app")
    resolver.on_fd(100, 3, b"/app/static")
    resolver.on_fork(100, 101)
    resolver.on_chdir(100, b"/parent-moved")  # after the fork: not the child's business
    resolver.on_fd(100, 3, b"/reused")
    assert resolver.resolve(101, 101, AT_FDCWD, b"main.py") == (b"/app/main.py", True)
    assert resolver.resolve(101, 101, 3, b"css/a.css") == (b"/app/static/css/a.css", True)
    resolver.on_chdir(101, b"/child")
    assert resolver.resolve(100, 100, AT_FDCWD, b"x") == (b"/parent-moved/x", True)
    assert resolver.resolve(100, 100, 3, b"y") == (b"/reused/y", True)
    assert resolver.resolve(101, 101, AT_FDCWD, b"x") == (b"/child/x", True)


def test_fork_chain_and_threads_share_the_process_state(resolver: PathResolver) -> None:
    resolver.on_chdir(1, b"/srv")
    resolver.on_fork(1, 2)
    resolver.on_fork(2, 3)
    # A thread (pid 4) of process 3 resolves with its tgid.
    assert resolver.resolve(4, 3, AT_FDCWD, b"www") == (b"/srv/www", True)


def test_fork_of_unknown_parent_replaces_stale_child_state(resolver: PathResolver,
                                                           proc: FakeProc) -> None:
    resolver.on_chdir(7, b"/stale")  # pid 7 exited without our noticing; reused now
    resolver.on_fork(6, 7)
    proc.process(7, cwd="/fresh")
    assert resolver.resolve(7, 7, AT_FDCWD, b"x") == (b"/fresh/x", True)


def test_exec_keeps_cwd_and_fds(resolver: PathResolver) -> None:
    resolver.on_chdir(5, b"/opt/app")
    resolver.on_fd(5, 9, b"/opt/app/conf")
    resolver.on_exec(5)
    assert resolver.resolve(5, 5, AT_FDCWD, b"run") == (b"/opt/app/run", True)
    assert resolver.resolve(5, 5, 9, b"a.ini") == (b"/opt/app/conf/a.ini", True)


def test_exit_forgets(resolver: PathResolver) -> None:
    resolver.on_chdir(5, b"/opt")
    resolver.on_fd(5, 3, b"/opt/x")
    resolver.on_exit(5)
    assert len(resolver) == 0 and resolver.fd_count == 0
    assert resolver.resolve(5, 5, AT_FDCWD, b"x") == (b"x", False)


def test_fchdir_and_find_style_dirfd_walk(resolver: PathResolver) -> None:
    # find(1): openat(AT_FDCWD, "/usr", O_DIRECTORY) = 3, openat(3, "share", ...) = 4,
    # fchdir(4), newfstatat(4, "doc", ...), then stat relative to the new cwd.
    resolver.on_chdir(50, b"/root")
    resolved, ok = resolver.resolve(50, 50, AT_FDCWD, b"/usr")
    resolver.on_fd(50, 3, resolved)
    resolved, ok = resolver.resolve(50, 50, 3, b"share")
    assert (resolved, ok) == (b"/usr/share", True)
    resolver.on_fd(50, 4, resolved)
    assert resolver.resolve(50, 50, 4, b"doc") == (b"/usr/share/doc", True)
    resolver.on_fchdir(50, 4)
    assert resolver.resolve(50, 50, AT_FDCWD, b"man") == (b"/usr/share/man", True)


def test_fchdir_to_unknown_fd_falls_back_to_proc(resolver: PathResolver, proc: FakeProc) -> None:
    resolver.on_chdir(60, b"/old")
    resolver.on_fchdir(60, 8)
    proc.process(60, cwd="/new")
    assert resolver.resolve(60, 60, AT_FDCWD, b"x") == (b"/new/x", True)


def test_unresolved_open_forgets_the_fd(resolver: PathResolver) -> None:
    resolver.on_fd(1, 3, b"/first")
    resolver.on_fd(1, 3, b"relative-unresolved")
    assert resolver.resolve(1, 1, 3, b"x") == (b"x", False)


def test_close_and_dup(resolver: PathResolver) -> None:
    resolver.on_fd(1, 3, b"/etc")
    resolver.on_dup(1, 3, 10)
    resolver.on_close(1, 3)
    assert resolver.resolve(1, 1, 3, b"x") == (b"x", False)
    assert resolver.resolve(1, 1, 10, b"hosts") == (b"/etc/hosts", True)
    resolver.on_dup(1, 3, 10)  # dup of a closed fd: 10 is no longer /etc
    assert resolver.resolve(1, 1, 10, b"hosts") == (b"hosts", False)


def test_chroot_event_forgets_old_view(resolver: PathResolver, proc: FakeProc) -> None:
    resolver.on_chdir(70, b"/srv/jail")
    resolver.on_fd(70, 3, b"/srv/jail/etc")
    resolver.on_chroot(70)
    proc.process(70, cwd="/srv/jail", root="/srv/jail", fds={3: "/srv/jail/etc"})
    assert resolver.resolve(70, 70, AT_FDCWD, b"bin/sh") == (b"/bin/sh", True)
    assert resolver.resolve(70, 70, 3, b"passwd") == (b"/etc/passwd", True)


def test_exec_rereads_root(resolver: PathResolver, proc: FakeProc) -> None:
    proc.process(80, cwd="/srv/jail/a", root="/srv/jail", fds={3: "/srv/jail/d"})
    assert resolver.resolve(80, 80, 3, b"x") == (b"/d/x", True)
    proc.process(80, root="/", fds={4: "/srv/jail/e"})  # e.g. setns, then exec
    resolver.on_exec(80)
    assert resolver.resolve(80, 80, 4, b"x") == (b"/srv/jail/e/x", True)


# ---------------------------------------------------------------- bounded memory


def test_processes_are_bounded_lru(proc: FakeProc) -> None:
    os.makedirs(proc.path)
    resolver = PathResolver(proc=proc.path, max_processes=3)
    for tgid in (1, 2, 3):
        resolver.on_chdir(tgid, b"/p%d" % tgid)
    resolver.resolve(1, 1, AT_FDCWD, b"x")  # 1 is now the most recently used
    resolver.on_chdir(4, b"/p4")
    assert len(resolver) == 3
    assert resolver.resolve(2, 2, AT_FDCWD, b"x") == (b"x", False)  # evicted
    assert resolver.resolve(1, 1, AT_FDCWD, b"x") == (b"/p1/x", True)


def test_fds_are_bounded_per_process_and_in_total(proc: FakeProc) -> None:
    os.makedirs(proc.path)
    resolver = PathResolver(proc=proc.path, max_fds_per_process=4, max_fds=10)
    for fd in range(10):
        resolver.on_fd(1, fd, b"/f%d" % fd)
    assert resolver.fd_count == 4
    assert resolver.resolve(1, 1, 9, b"x") == (b"/f9/x", True)
    assert resolver.resolve(1, 1, 0, b"x") == (b"x", False)  # oldest dropped
    for tgid in range(2, 6):
        for fd in range(3):
            resolver.on_fd(tgid, fd, b"/t%d" % tgid)
    assert resolver.fd_count <= 10
    assert resolver.resolve(5, 5, 0, b"x") == (b"/t5/x", True)  # the newest survives
    for _ in range(3):
        resolver.on_fork(5, 6)
        resolver.on_exit(6)
    assert resolver.fd_count == sum(len(p.fds) for p in resolver._processes.values())


def test_many_processes_stay_bounded(proc: FakeProc) -> None:
    os.makedirs(proc.path)
    resolver = PathResolver(proc=proc.path, max_processes=1000, max_fds=5000)
    resolver.on_chdir(1, b"/")
    for tgid in range(2, 20001):
        resolver.on_fork(tgid - 1, tgid)
        resolver.on_fd(tgid, 3, b"/x")
        resolver.on_fd(tgid, 4, b"/y")
    assert len(resolver) <= 1000
    assert resolver.fd_count <= 5000


# ---------------------------------------------------------------- real processes

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chroot, mounts)")


@pytest.fixture
def spawn():
    """Start processes; every one is killed and reaped at teardown, whatever happened."""
    started: list[subprocess.Popen] = []

    def start(*args, **kwargs) -> subprocess.Popen:
        process = subprocess.Popen(*args, **kwargs)
        started.append(process)
        return process

    try:
        yield start
    finally:
        for process in started:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=10)
            if process.stdout:
                process.stdout.close()


def _read_ready_line(process: subprocess.Popen) -> str:
    line = process.stdout.readline()
    if not line:
        raise AssertionError(f"child failed: {process.stderr.read() if process.stderr else ''}")
    return line.strip()


def test_real_process_in_a_subdirectory(tmp_path, spawn) -> None:
    work = tmp_path / "work" / "sub"
    work.mkdir(parents=True)
    process = spawn(["sleep", "60"], cwd=work)
    resolver = PathResolver()
    resolved, ok = resolver.resolve(process.pid, process.pid, AT_FDCWD, b"../data/x.txt")
    assert ok
    assert resolved == os.fsencode(tmp_path / "work" / "data" / "x.txt")


_CHROOT_CHILD = textwrap.dedent("""
    import os, sys, time
    os.chroot(sys.argv[1])
    os.chdir("/app")
    fd = os.open("/app/data", os.O_RDONLY | os.O_DIRECTORY)
    print(fd, flush=True)
    time.sleep(60)
""")


@needs_root
def test_real_chroot_is_translated_into_the_process_view(tmp_path, spawn) -> None:
    jail = tmp_path / "jail"
    (jail / "app" / "data").mkdir(parents=True)
    process = spawn([sys.executable, "-c", _CHROOT_CHILD, str(jail)],
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    fd = int(_read_ready_line(process))
    # From outside, the kernel shows the host's view...
    assert os.readlink(f"/proc/{process.pid}/cwd") == str(jail / "app")
    assert os.readlink(f"/proc/{process.pid}/root") == str(jail)
    # ...and the resolver reports what the process itself named.
    resolver = PathResolver()
    assert resolver.resolve(process.pid, process.pid, AT_FDCWD, b"main.py") == (
        b"/app/main.py", True)
    assert resolver.resolve(process.pid, process.pid, fd, b"x.db") == (b"/app/data/x.db", True)
    assert resolver.stats.from_proc == 2


# A container's start, in miniature: a private mount namespace and pivot_root into a
# bind mount of the new root, the old root detached.
_PIVOT_CHILD = textwrap.dedent("""
    import ctypes, os, sys, time
    libc = ctypes.CDLL(None, use_errno=True)
    def check(result, what):
        if result != 0:
            raise OSError(ctypes.get_errno(), what)
    new = sys.argv[1].encode()
    check(libc.unshare(0x00020000), "unshare(CLONE_NEWNS)")
    check(libc.mount(b"none", b"/", None, 0x4000 | (1 << 18), None), "make-rprivate /")
    check(libc.mount(new, new, None, 0x1000 | 0x4000, None), "bind new root")
    os.chdir(new)
    check(libc.syscall(int(sys.argv[2]), b".", b"old"), "pivot_root")
    os.chdir("/")
    check(libc.umount2(b"/old", 2), "umount old root")
    os.chdir("/app")
    fd = os.open("/app/data", os.O_RDONLY | os.O_DIRECTORY)
    print(fd, flush=True)
    time.sleep(60)
""")
_SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}


@needs_root
@pytest.mark.skipif(platform.machine() not in _SYS_PIVOT_ROOT, reason="pivot_root number")
def test_real_mount_namespace_paths_are_already_in_the_process_view(tmp_path, spawn) -> None:
    new_root = tmp_path / "rootfs"
    (new_root / "app" / "data").mkdir(parents=True)
    (new_root / "old").mkdir()
    syscall_number = str(_SYS_PIVOT_ROOT[platform.machine()])
    process = spawn(
        [sys.executable, "-c", _PIVOT_CHILD, str(new_root), syscall_number],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    fd = int(_read_ready_line(process))
    # The kernel prints paths relative to the other namespace's root: no prefix to strip.
    assert os.readlink(f"/proc/{process.pid}/root") == "/"
    assert os.readlink(f"/proc/{process.pid}/cwd") == "/app"
    resolver = PathResolver()
    assert resolver.resolve(process.pid, process.pid, AT_FDCWD, b"main.py") == (
        b"/app/main.py", True)
    assert resolver.resolve(process.pid, process.pid, fd, b"") == (b"/app/data", True)
