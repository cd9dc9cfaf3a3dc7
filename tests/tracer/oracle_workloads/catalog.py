"""The hard oracle workloads: what each one runs, and the files it needs.

A workload runs twice, under strace and traced, each time in a fresh copy of its
fixture at the same place, so both runs touch the same paths. In argv, "{bin}" stands
for the directory of the compiled C programs, "{src}" for this one (shell scripts),
"{here}" for the workload's directory (also its cwd), "{python}" for this interpreter.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

SOURCES = Path(__file__).parent
MAKEFILE = """\
all: out/ab.txt
out/ab.txt: out/a.txt out/b.txt
\tcat out/a.txt out/b.txt > $@
out/%.txt: src/%.in | out
\tcp $< $@
out:
\tmkdir -p out
"""
FORKS, PID_REUSES = 500, 20
ODD_NAMES = (b"\x80\x81\xfe\xff", b"sp ace", b"new\nline", b'dq"uote', b"sq'uote",
             b"back\\slash", b"lt<gt>", b"tab\tbed", b"caf\xc3\xa9", b"n" * 250)


def build(bindir: Path) -> None:
    """Compile every workload program into bindir."""
    for source in sorted(SOURCES.glob("*.c")):
        subprocess.run(["gcc", "-O1", "-pthread", "-Wall", f"-I{SOURCES}",
                        "-o", str(bindir / source.stem), str(source)], check=True)


def _files(here: Path, *names: str) -> None:
    for name in names:
        path = here / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(name + "\n")


def _dirs(here: Path, *names: str) -> None:
    for name in names:
        (here / name).mkdir(parents=True, exist_ok=True)


def _copy_probe(here: Path, bindir: Path, *names: str) -> None:
    for name in names:
        (here / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(bindir / "probe", here / name)


def _empty(here: Path, bindir: Path) -> None:
    pass


def _tree(here: Path, bindir: Path) -> None:
    _files(here, "tree/top.txt", "tree/a/b/f.txt", "tree/a/c.txt", "tree/d/e.txt")
    os.symlink("a/b/f.txt", here / "tree/link")


def _threads(here: Path, bindir: Path) -> None:
    _files(here, *(f"t/a/f{i}" for i in range(4)), *(f"t/b/g{i}" for i in range(4)))


def _chain(here: Path, bindir: Path) -> None:
    _files(here, *("lvl/" * depth + "f" for depth in range(4)))


def _spawn(here: Path, bindir: Path) -> None:
    _dirs(here, "sp/miss1")
    _files(here, "sp/sub/data")
    _copy_probe(here, bindir, "sp/pbin/probe")


def _exec(here: Path, bindir: Path) -> None:
    _dirs(here, "p1", "p2")
    _files(here, "data/one", "data/two", "data/three")
    _copy_probe(here, bindir, "xbin/probe", "xdir/bin/probe", "p3/lastonly")


def _openat2(here: Path, bindir: Path) -> None:
    _files(here, "root/doc/x", "root/doc/y", "outside")


def _opath(here: Path, bindir: Path) -> None:
    _files(here, "od/f", "od/sub/g", "od/sub/h")


def _fdpass(here: Path, bindir: Path) -> None:
    _files(here, "fp/a/passed-file", "fp/d2/file2")
    _dirs(here, "fp/b", "fp/c", "fp/d1")


def _pidreuse(here: Path, bindir: Path) -> None:
    _dirs(here, *(f"pr/n{i}" for i in range(FORKS)))
    _dirs(here, *(f"pr/r{k}{side}" for k in range(PID_REUSES) for side in "ab"))


def _long(here: Path, bindir: Path) -> None:
    _dirs(here, "long")


def _odd_names(here: Path, bindir: Path) -> None:
    names = os.fsencode(here / "names")
    odd_dir = os.path.join(names, b"odd \x90\n dir")
    os.makedirs(odd_dir)
    for name in ODD_NAMES:
        for parent in (names, odd_dir):
            with open(os.path.join(parent, name), "wb") as handle:
                handle.write(name)


def _procfd(here: Path, bindir: Path) -> None:
    _files(here, "cwdfile", *(f"pf/d{i}/file" for i in range(4)),
           *(f"pf/d{i}/sub/file" for i in range(4)))


def _victim(here: Path, bindir: Path) -> None:
    _files(here, "victim/a/b/f", "victim/top")


def _rmtree(here: Path, bindir: Path) -> None:
    _files(here, "rt/a/b/f", "rt/c")


def _shared(here: Path, bindir: Path) -> None:
    _files(here, "shared/c0-1", "shared/c1-2")


def _jail(here: Path, bindir: Path) -> None:
    _files(here, "jail/data/x", "jail/data/y", "jail/data/z", "jail/etc/conf")


def _make(here: Path, bindir: Path) -> None:
    _files(here, "src/a.in", "src/b.in")
    (here / "Makefile").write_text(MAKEFILE)


def _cpio(here: Path, bindir: Path) -> None:
    _tree(here, bindir)
    _dirs(here, "dest")


@dataclass(frozen=True)
class Workload:
    argv: tuple[str, ...]
    fixture: Callable[[Path, Path], None]

    def command(self, bindir: Path, here: Path) -> list[str]:
        values = {"{bin}": str(bindir), "{src}": str(SOURCES), "{here}": str(here),
                  "{python}": sys.executable}
        argv = list(self.argv)
        for key, value in values.items():
            argv = [arg.replace(key, value) for arg in argv]
        return argv

    def prepare(self, bindir: Path, here: Path) -> None:
        """A fresh fixture in `here`, as for the first run."""
        shutil.rmtree(here, ignore_errors=True)
        here.mkdir(parents=True)
        self.fixture(here, bindir)


WORKLOADS: dict[str, Workload] = {
    # 1. threads
    "threads-join": Workload(("{bin}/threads", "join"), _threads),
    "threads-main-exits": Workload(("{bin}/threads", "main-exits"), _threads),
    "threads-exec": Workload(("{bin}/threads", "exec", "{bin}/probe"), _threads),
    # 2. children without fork()
    "vfork-chain": Workload(("{bin}/spawn", "chain", "3"), _chain),
    "posix-spawnp": Workload(("{bin}/spawn", "spawnp"), _spawn),
    # 3. exec by fd, by dirfd, by PATH search
    "fexecve-execveat-execvp": Workload(("{bin}/exec",), _exec),
    # 4. openat2 RESOLVE_IN_ROOT and RESOLVE_BENEATH
    "openat2": Workload(("{bin}/openat2",), _openat2),
    # 5. O_PATH dirfds and fchdir
    "opath-fchdir": Workload(("{bin}/opath",), _opath),
    # 6. reused fd numbers: SCM_RIGHTS, dup2
    "fd-passing": Workload(("{bin}/fdpass",), _fdpass),
    # 7. pid reuse
    "pid-reuse": Workload(("{bin}/pidreuse", str(FORKS), str(PID_REUSES)), _pidreuse),
    # 8. beyond PATH_MAX; any byte in a name
    "long-paths": Workload(("{bin}/longpath",), _long),
    "odd-names": Workload(("bash", "{src}/names.sh"), _odd_names),
    # 9. /proc/self/fd, /dev/fd, /proc/self/cwd
    "proc-fd": Workload(("{bin}/procfd",), _procfd),
    "proc-fd-bash": Workload(("bash", "{src}/procfd.sh"), _procfd),
    # 10. repeated commands
    "find-repeat": Workload(("sh", "-c", "find tree >/dev/null; find tree >/dev/null; "
                             "find tree -newer tree/top.txt >/dev/null"), _tree),
    "rm-repeat": Workload(("sh", "-c", "rm -r victim && mkdir -p victim/a/b && "
                           "touch victim/a/b/f victim/top && rm -r victim"), _victim),
    "mkdir-p-repeat": Workload(("sh", "-c", "mkdir -p {here}/mk/x/y/z && "
                                "mkdir -p {here}/mk/x/y/z"), _empty),
    "rmtree-repeat": Workload(("{python}", "-I", "-B", "-c",
                               "import os, shutil\n"
                               "shutil.rmtree('rt')\n"
                               "os.makedirs('rt/a/b')\n"
                               "open('rt/a/b/f', 'w').close()\n"
                               "shutil.rmtree('rt')\n"), _rmtree),
    "cd-repeat": Workload(("sh", "-c", "cd /usr/share/doc; cd /etc; cd /usr/share/doc; "
                           "cat apt/copyright >/dev/null"), _empty),
    "dash-logical-cd": Workload(("dash", "-c", "cd tree/a/b && cd .. && cat b/f.txt && "
                                 "cd .. && cat top.txt && cd ../tree/d && cat e.txt"),
                                _tree),
    "same-dir-fds": Workload(("{bin}/samedir", "{here}/shared"), _shared),
    # 11. chroot
    "chroot": Workload(("{bin}/chroot",), _jail),
    # real tools
    "make": Workload(("make",), _make),
    "cp-a": Workload(("cp", "-a", "tree", "copy"), _tree),
    "cpio-pass": Workload(("sh", "-c", "find tree | cpio -pdm --quiet dest"), _cpio),
}
