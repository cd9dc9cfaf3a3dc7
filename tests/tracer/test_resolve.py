"""PathResolver: joining to kernel-named bases, priming from /proc (fake trees and real
processes), and the cases where it must say it does not know."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import textwrap

import pytest

from snoop.tracer import records
from snoop.tracer.resolve import Outcome, PathResolver, join, join_in_root, translate

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
    ("rel", "expected"),
    [
        (b"doc/x", b"/r/doc/x"),
        (b"/doc/x", b"/r/doc/x"),  # "/" is the dirfd
        (b"../../etc/passwd", b"/r/etc/passwd"),  # ".." never leaves it
        (b"a/../../b", b"/r/b"),
        (b"", b"/r"),
    ],
)
def test_join_in_root(rel: bytes, expected: bytes) -> None:
    assert join_in_root(b"/r", rel) == expected


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


AT_FDCWD = -100
EBADF, EXDEV = 9, 18


def record(path: bytes, *, base: int = 0, dirfd: int = AT_FDCWD, ret: int = 0, flags: int = 0,
           skip: int = 0, resolve: int = 0, kind: int = 4, serial: int = 1, pid: int = 10,
           tgid: int = 10) -> records.Record:
    return records.Record(cgroup_id=1, pid=pid, tgid=tgid, ret=ret, dirfd=dirfd, kind=kind,
                          flags=flags, syscall=0, path=path, serial=serial, base=base,
                          skip=skip, resolve=resolve)


class FakeKernel:
    """The kernel's tables, as the resolver asks about them."""

    def __init__(self) -> None:
        self.procs: dict[int, tuple[int, int]] = {}
        self.cwds: dict[int, int] = {}
        self.fds: dict[tuple[int, int], int] = {}

    def contexts(self, tgid: int) -> tuple[int, int] | None:
        return self.procs.get(tgid)

    def cwd_base(self, fs: int) -> int:
        return self.cwds.get(fs, 0)

    def fd_base(self, files: int, fd: int) -> int:
        return self.fds.get((files, fd), 0)


@pytest.fixture
def kernel() -> FakeKernel:
    return FakeKernel()


@pytest.fixture
def resolver(proc: FakeProc, kernel: FakeKernel) -> PathResolver:
    os.makedirs(proc.path)
    return PathResolver(kernel, proc=proc.path)


def prime_cwd(serial: int, tgid: int = 10, fs: int = 100) -> records.Record:
    return record(b"", kind=records.KIND_PRIME_CWD, serial=serial, ret=fs, tgid=tgid, pid=tgid)


def prime_fd(serial: int, fd: int, tgid: int = 10, files: int = 200) -> records.Record:
    return record(b"", kind=records.KIND_PRIME_FD, serial=serial, ret=files, dirfd=fd,
                  tgid=tgid, pid=tgid)


def test_absolute_paths_pass_through_untouched(resolver: PathResolver) -> None:
    assert resolver.resolve(record(b"/etc/../etc//passwd")) == (
        b"/etc/../etc//passwd", Outcome.RESOLVED)
    assert resolver.resolve(record(b"/x", dirfd=7)) == (b"/x", Outcome.RESOLVED)


def test_relative_paths_join_the_base_the_kernel_names(resolver: PathResolver) -> None:
    resolver.learn(5, b"/usr/share/doc")
    resolver.learn(6, b"/etc")
    assert resolver.resolve(record(b"bash/copyright", base=5)) == (
        b"/usr/share/doc/bash/copyright", Outcome.RESOLVED)
    assert resolver.resolve(record(b"../x", base=6, dirfd=3)) == (b"/x", Outcome.RESOLVED)
    assert resolver.resolve(record(b"", base=6, dirfd=3)) == (b"/etc", Outcome.RESOLVED)


def test_a_base_never_learned_is_unresolved_not_guessed(resolver: PathResolver) -> None:
    resolver.learn(5, b"/somewhere")
    assert resolver.resolve(record(b"x", base=7)) == (b"x", Outcome.UNRESOLVED)
    assert resolver.resolve(record(b"x", base=0, dirfd=3)) == (b"x", Outcome.UNRESOLVED)
    assert resolver.stats.unresolved == 2


def test_threads_with_their_own_state_are_uncertain(resolver: PathResolver) -> None:
    resolver.learn(5, b"/a")
    assert resolver.resolve(record(b"x", base=5, flags=records.FLAG_UNCERTAIN)) == (
        b"x", Outcome.UNCERTAIN)
    # An absolute name means the same whatever the threads share.
    assert resolver.resolve(record(b"/x", flags=records.FLAG_UNCERTAIN)) == (
        b"/x", Outcome.RESOLVED)


def test_a_bad_dirfd_touched_nothing(resolver: PathResolver) -> None:
    assert resolver.resolve(record(b"x", dirfd=42, ret=-EBADF))[1] is Outcome.UNTOUCHED


def test_magic_fd_and_cwd_prefixes(resolver: PathResolver) -> None:
    resolver.learn(5, b"/usr/share/doc")
    path = b"/proc/self/fd/3/bash/copyright"
    assert resolver.resolve(record(path, base=5, dirfd=3, flags=records.FLAG_MAGIC,
                                   skip=len(b"/proc/self/fd/3/"))) == (
        b"/usr/share/doc/bash/copyright", Outcome.RESOLVED)
    assert resolver.resolve(record(b"/dev/fd/3", base=5, dirfd=3, flags=records.FLAG_MAGIC,
                                   skip=len(b"/dev/fd/3"))) == (
        b"/usr/share/doc", Outcome.RESOLVED)
    assert resolver.resolve(record(b"/proc/self/root/etc/x", dirfd=records.FD_ROOT,
                                   flags=records.FLAG_MAGIC,
                                   skip=len(b"/proc/self/root"))) == (
        b"/etc/x", Outcome.RESOLVED)
    assert resolver.resolve(record(b"/dev/fd/9/x", base=77, dirfd=9,
                                   flags=records.FLAG_MAGIC, skip=9))[1] is Outcome.UNRESOLVED


def test_openat2_resolve_flags(resolver: PathResolver) -> None:
    resolver.learn(5, b"/usr/share")
    in_root = records.RESOLVE_IN_ROOT
    assert resolver.resolve(record(b"/doc/coreutils/copyright", base=5, dirfd=3,
                                   resolve=in_root)) == (
        b"/usr/share/doc/coreutils/copyright", Outcome.RESOLVED)
    assert resolver.resolve(record(b"../../etc/passwd", base=5, dirfd=3,
                                   resolve=in_root)) == (b"/usr/share/etc/passwd",
                                                         Outcome.RESOLVED)
    beneath = records.RESOLVE_BENEATH
    assert resolver.resolve(record(b"doc/x", base=5, dirfd=3, resolve=beneath)) == (
        b"/usr/share/doc/x", Outcome.RESOLVED)
    assert resolver.resolve(record(b"../../etc/passwd", base=5, dirfd=3, resolve=beneath,
                                   ret=-EXDEV))[1] is Outcome.UNTOUCHED


def test_prime_learns_from_proc_when_the_kernel_confirms(
        resolver: PathResolver, proc: FakeProc, kernel: FakeKernel) -> None:
    proc.process(10, cwd="/home/user", fds={3: "/usr/lib"})
    kernel.procs[10] = (100, 200)
    kernel.cwds[100] = 7
    kernel.fds[(200, 3)] = 8
    assert resolver.prime(prime_cwd(7))
    assert resolver.prime(prime_fd(8, 3))
    assert resolver.resolve(record(b"notes.txt", base=7)) == (
        b"/home/user/notes.txt", Outcome.RESOLVED)
    assert resolver.resolve(record(b"libc.so.6", base=8, dirfd=3)) == (
        b"/usr/lib/libc.so.6", Outcome.RESOLVED)
    assert resolver.stats.primed == 2


def test_prime_refused_when_the_process_moved_on(
        resolver: PathResolver, proc: FakeProc, kernel: FakeKernel) -> None:
    """/proc shows now; if the kernel's table changed since the prime, /proc may show a
    later cwd or fd than the one the records mean."""
    proc.process(10, cwd="/later", fds={3: "/reopened"})
    kernel.procs[10] = (100, 200)
    kernel.cwds[100] = 9  # a chdir since the prime minted 7
    kernel.fds[(200, 3)] = 0  # closed since
    assert not resolver.prime(prime_cwd(7))
    assert not resolver.prime(prime_fd(8, 3))
    kernel.procs[10] = (101, 201)  # new contexts (exec, unshare) with the same serials
    kernel.cwds[101] = 7
    assert not resolver.prime(prime_cwd(7))
    assert resolver.resolve(record(b"x", base=7)) == (b"x", Outcome.UNRESOLVED)
    assert resolver.stats.primes_refused == 3


def test_prime_of_a_gone_process_or_a_socket_is_refused(
        resolver: PathResolver, proc: FakeProc, kernel: FakeKernel) -> None:
    proc.process(10, cwd="/", fds={4: "socket:[777]"})
    kernel.procs[10] = (100, 200)
    kernel.fds[(200, 4)] = 8
    assert not resolver.prime(prime_fd(8, 4))
    assert not resolver.prime(prime_cwd(7, tgid=4242))
    assert not PathResolver(None, proc=proc.path).prime(prime_fd(8, 4))


def test_prime_translates_a_chroot_into_the_process_view(
        resolver: PathResolver, proc: FakeProc, kernel: FakeKernel) -> None:
    proc.process(20, cwd="/srv/jail/app", root="/srv/jail",
                 fds={3: "/srv/jail/app/data", 4: "/etc/outside"})
    kernel.procs[20] = (100, 200)
    kernel.cwds[100] = 7
    kernel.fds[(200, 3)] = 8
    kernel.fds[(200, 4)] = 9
    assert resolver.prime(prime_cwd(7, tgid=20))
    assert resolver.prime(prime_fd(8, 3, tgid=20))
    assert not resolver.prime(prime_fd(9, 4, tgid=20))  # outside its root
    assert resolver.base(7) == b"/app"
    assert resolver.base(8) == b"/app/data"


def test_prime_of_a_thread_whose_leader_exited(
        resolver: PathResolver, proc: FakeProc, kernel: FakeKernel) -> None:
    proc.process(31, cwd="/work", task_of=30)
    kernel.procs[30] = (100, 200)
    kernel.cwds[100] = 7
    assert resolver.prime(record(b"", kind=records.KIND_PRIME_CWD, serial=7, ret=100,
                                 tgid=30, pid=31))
    assert resolver.base(7) == b"/work"


def test_bases_are_bounded(proc: FakeProc) -> None:
    resolver = PathResolver(None, proc=proc.path, max_bases=3)
    for serial in range(1, 6):
        resolver.learn(serial, b"/d%d" % serial)
    assert len(resolver) == 3
    assert resolver.base(1) is None and resolver.base(5) == b"/d5"
    assert resolver.stats.evicted == 2


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


def confirming_resolver(pid: int, fd: int = -1) -> PathResolver:
    """A resolver on the real /proc whose kernel confirms serial 7 (cwd) and 8 (fd)."""
    kernel = FakeKernel()
    kernel.procs[pid] = (1, 2)
    kernel.cwds[1] = 7
    kernel.fds[(2, fd)] = 8
    return PathResolver(kernel)


def _read_ready_line(process: subprocess.Popen) -> str:
    line = process.stdout.readline()
    if not line:
        raise AssertionError(f"child failed: {process.stderr.read() if process.stderr else ''}")
    return line.strip()


def test_real_process_in_a_subdirectory(tmp_path, spawn) -> None:
    work = tmp_path / "work" / "sub"
    work.mkdir(parents=True)
    process = spawn(["sleep", "60"], cwd=work)
    resolver = confirming_resolver(process.pid)
    assert resolver.prime(prime_cwd(7, tgid=process.pid, fs=1))
    assert resolver.resolve(record(b"../data/x.txt", base=7)) == (
        os.fsencode(tmp_path / "work" / "data" / "x.txt"), Outcome.RESOLVED)


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
    resolver = confirming_resolver(process.pid, fd)
    assert resolver.prime(prime_cwd(7, tgid=process.pid, fs=1))
    assert resolver.prime(prime_fd(8, fd, tgid=process.pid, files=2))
    assert resolver.resolve(record(b"main.py", base=7)) == (b"/app/main.py", Outcome.RESOLVED)
    assert resolver.resolve(record(b"x.db", base=8, dirfd=fd)) == (
        b"/app/data/x.db", Outcome.RESOLVED)


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
    resolver = confirming_resolver(process.pid, fd)
    assert resolver.prime(prime_cwd(7, tgid=process.pid, fs=1))
    assert resolver.prime(prime_fd(8, fd, tgid=process.pid, files=2))
    assert resolver.resolve(record(b"main.py", base=7)) == (b"/app/main.py", Outcome.RESOLVED)
    assert resolver.resolve(record(b"", base=8, dirfd=fd)) == (b"/app/data", Outcome.RESOLVED)


def test_dotdot_after_a_symlinked_directory_is_uncertain(
        resolver: PathResolver, proc: FakeProc, tmp_path) -> None:
    """The kernel goes to the link target's parent; the lexical path may never have been
    touched, so it is not reported."""
    rootfs = tmp_path / "rootfs"
    (rootfs / "a" / "real").mkdir(parents=True)
    (rootfs / "b").mkdir()
    (rootfs / "a" / "link").symlink_to("../b")
    proc.process(10, cwd="/", root=str(rootfs))
    assert resolver.resolve(record(b"/a/real/../x")) == (b"/a/real/../x", Outcome.RESOLVED)
    assert resolver.resolve(record(b"/a/link/../x")) == (b"/a/link/../x", Outcome.UNCERTAIN)
    resolver.learn(5, b"/a/link")
    assert resolver.resolve(record(b"../x", base=5)) == (b"../x", Outcome.UNCERTAIN)
    resolver.learn(6, b"/a")
    assert resolver.resolve(record(b"real/../y", base=6)) == (b"/a/y", Outcome.RESOLVED)


def test_dotdot_after_a_symlink_that_comes_back_to_the_same_place_is_kept(
        resolver: PathResolver, proc: FakeProc, tmp_path) -> None:
    """Merged /usr: /lib -> usr/lib. `/lib/../lib/crt1.o` (gcc's search path) reaches
    /usr/lib/crt1.o in the kernel, and so does its lexical form /lib/crt1.o."""
    rootfs = tmp_path / "rootfs"
    (rootfs / "usr" / "lib").mkdir(parents=True)
    (rootfs / "usr" / "lib" / "crt1.o").write_text("x")
    (rootfs / "lib").symlink_to("usr/lib")
    proc.process(10, cwd="/", root=str(rootfs))
    assert resolver.resolve(record(b"/lib/../lib/crt1.o"))[1] is Outcome.RESOLVED
    assert resolver.resolve(record(b"/lib/../lib/missing.o"))[1] is Outcome.RESOLVED
    # /lib/.. is /usr for the kernel: /usr/etc/x, not /etc/x.
    (rootfs / "etc").mkdir()
    assert resolver.resolve(record(b"/lib/../etc/x"))[1] is Outcome.UNCERTAIN
