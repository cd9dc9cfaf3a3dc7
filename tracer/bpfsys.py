"""The few bpf(2) and perf_event_open(2) calls Snoop makes without bcc.

The long-running tracer holds no bcc object (bcc brings LLVM, 100 MB of it): it opens
the maps the compile step pinned and works on them through these calls. The compile
step uses them too, to attach its programs as links it can pin.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform

_SYSCALLS = {"x86_64": {"bpf": 321, "perf_event_open": 298},
             "aarch64": {"bpf": 280, "perf_event_open": 241}}

BPF_MAP_LOOKUP_ELEM = 1
BPF_MAP_UPDATE_ELEM = 2
BPF_MAP_DELETE_ELEM = 3
BPF_MAP_GET_NEXT_KEY = 4
BPF_OBJ_PIN = 6
BPF_OBJ_GET = 7
BPF_OBJ_GET_INFO_BY_FD = 15
BPF_LINK_CREATE = 28

BPF_PERF_EVENT = 41  # attach type of a link to a perf event (a tracepoint)
BPF_ANY = 0
PERF_TYPE_TRACEPOINT = 2
PERF_SAMPLE_RAW = 1 << 10
PERF_FLAG_FD_CLOEXEC = 1 << 3
ENOTSUPP = 524  # the kernel's own, which bpf() can return
PERF_EVENT_IOC_ENABLE = 0x2400  # _IO('$', 0)
PERF_EVENT_IOC_SET_BPF = 0x40042408  # _IOW('$', 8, u32)



class BpfError(OSError):
    """A bpf() or perf_event_open() call failed; errno and what was asked."""


class _MapAttr(ctypes.Structure):
    _fields_ = [("map_fd", ctypes.c_uint32), ("pad", ctypes.c_uint32),
                ("key", ctypes.c_uint64), ("value", ctypes.c_uint64),
                ("flags", ctypes.c_uint64)]


class _ObjAttr(ctypes.Structure):
    _fields_ = [("pathname", ctypes.c_uint64), ("bpf_fd", ctypes.c_uint32),
                ("file_flags", ctypes.c_uint32)]


class _InfoAttr(ctypes.Structure):
    _fields_ = [("bpf_fd", ctypes.c_uint32), ("info_len", ctypes.c_uint32),
                ("info", ctypes.c_uint64)]


class _MapInfo(ctypes.Structure):
    _fields_ = [("type", ctypes.c_uint32), ("id", ctypes.c_uint32),
                ("key_size", ctypes.c_uint32), ("value_size", ctypes.c_uint32),
                ("max_entries", ctypes.c_uint32), ("map_flags", ctypes.c_uint32),
                ("name", ctypes.c_char * 16)]


class _LinkAttr(ctypes.Structure):
    _fields_ = [("prog_fd", ctypes.c_uint32), ("target_fd", ctypes.c_uint32),
                ("attach_type", ctypes.c_uint32), ("flags", ctypes.c_uint32),
                ("cookie", ctypes.c_uint64), ("pad", ctypes.c_uint64 * 4)]


class _PerfAttr(ctypes.Structure):
    _fields_ = [("type", ctypes.c_uint32), ("size", ctypes.c_uint32),
                ("config", ctypes.c_uint64), ("sample_period", ctypes.c_uint64),
                ("sample_type", ctypes.c_uint64), ("read_format", ctypes.c_uint64),
                ("flags", ctypes.c_uint64), ("wakeup_events", ctypes.c_uint32),
                ("bp_type", ctypes.c_uint32), ("rest", ctypes.c_uint64 * 10)]


class Bpf:
    """bpf(2) for one architecture. Stateless apart from the libc handle."""

    def __init__(self) -> None:
        numbers = _SYSCALLS.get(platform.machine())
        if numbers is None:
            raise BpfError(0, f"no bpf() syscall number known for {platform.machine()}")
        self._numbers = numbers
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._libc.syscall.restype = ctypes.c_long
        self._possible_cpus = _possible_cpus()

    def syscall_number(self, name: str) -> int:
        return self._numbers[name]

    @property
    def possible_cpus(self) -> int:
        return self._possible_cpus

    def call(self, cmd: int, attr: ctypes.Structure, what: str) -> int:
        result = self._libc.syscall(self._numbers["bpf"], ctypes.c_int(cmd),
                                    ctypes.byref(attr), ctypes.c_uint(ctypes.sizeof(attr)))
        if result < 0:
            err = ctypes.get_errno()
            raise BpfError(err, f"{what}: {os.strerror(err)}")
        return result

    # ------------------------------------------------------------ pins

    def pin(self, fd: int, path: str) -> None:
        name = ctypes.create_string_buffer(os.fsencode(path))
        self.call(BPF_OBJ_PIN, _ObjAttr(ctypes.addressof(name), fd, 0), f"pin {path}")

    def get_pinned(self, path: str) -> int:
        name = ctypes.create_string_buffer(os.fsencode(path))
        return self.call(BPF_OBJ_GET, _ObjAttr(ctypes.addressof(name), 0, 0),
                          f"open pinned {path}")

    def map_info(self, fd: int) -> _MapInfo:
        info = _MapInfo()
        self.call(BPF_OBJ_GET_INFO_BY_FD,
                   _InfoAttr(fd, ctypes.sizeof(info), ctypes.addressof(info)), "map info")
        return info

    # ------------------------------------------------------------ map elements

    def lookup(self, fd: int, key: bytes, value_size: int) -> bytes | None:
        key_buf = ctypes.create_string_buffer(key, len(key))
        value = ctypes.create_string_buffer(value_size)
        attr = _MapAttr(fd, 0, ctypes.addressof(key_buf), ctypes.addressof(value), 0)
        try:
            self.call(BPF_MAP_LOOKUP_ELEM, attr, "map lookup")
        except BpfError as exc:
            if exc.errno == 2:  # ENOENT
                return None
            raise
        return value.raw

    def update(self, fd: int, key: bytes, value: bytes, flags: int = BPF_ANY) -> None:
        key_buf = ctypes.create_string_buffer(key, len(key))
        value_buf = ctypes.create_string_buffer(value, len(value))
        self.call(BPF_MAP_UPDATE_ELEM, _MapAttr(fd, 0, ctypes.addressof(key_buf),
                                                 ctypes.addressof(value_buf), flags),
                   "map update")

    def delete(self, fd: int, key: bytes) -> bool:
        key_buf = ctypes.create_string_buffer(key, len(key))
        try:
            self.call(BPF_MAP_DELETE_ELEM, _MapAttr(fd, 0, ctypes.addressof(key_buf), 0, 0),
                       "map delete")
        except BpfError as exc:
            if exc.errno == 2:
                return False
            raise
        return True

    def keys(self, fd: int, key_size: int) -> list[bytes]:
        """Every key of a hash map (a snapshot: entries may come and go meanwhile)."""
        found: list[bytes] = []
        current = None
        next_key = ctypes.create_string_buffer(key_size)
        while True:
            if current is None:
                attr = _MapAttr(fd, 0, 0, ctypes.addressof(next_key), 0)
            else:
                key_buf = ctypes.create_string_buffer(current, key_size)
                attr = _MapAttr(fd, 0, ctypes.addressof(key_buf), ctypes.addressof(next_key), 0)
            try:
                self.call(BPF_MAP_GET_NEXT_KEY, attr, "map keys")
            except BpfError as exc:
                if exc.errno == 2:
                    return found
                raise
            current = next_key.raw
            found.append(current)

    # ------------------------------------------------------------ attaching

    def tracepoint_link(self, tracefs: str, category: str, event: str,
                        prog_fd: int) -> tuple[int, bool]:
        """Attach the program to a tracepoint: (fd, pinnable). From 5.15 the fd is a BPF
        link, which survives its creator when pinned; before, it is the perf event itself
        (PERF_EVENT_IOC_SET_BPF), attached only while some process holds it open."""
        with open(os.path.join(tracefs, "events", category, event, "id")) as handle:
            tracepoint_id = int(handle.read())
        attr = _PerfAttr(type=PERF_TYPE_TRACEPOINT, size=ctypes.sizeof(_PerfAttr),
                         config=tracepoint_id, sample_period=1, sample_type=PERF_SAMPLE_RAW,
                         wakeup_events=1)
        perf_fd = self._libc.syscall(self._numbers["perf_event_open"], ctypes.byref(attr),
                                     ctypes.c_int(-1), ctypes.c_int(0), ctypes.c_int(-1),
                                     ctypes.c_ulong(PERF_FLAG_FD_CLOEXEC))
        if perf_fd < 0:
            err = ctypes.get_errno()
            raise BpfError(err, f"perf_event_open {category}:{event}: {os.strerror(err)}")
        try:
            link = self.call(BPF_LINK_CREATE, _LinkAttr(prog_fd, perf_fd, BPF_PERF_EVENT, 0),
                              f"link {category}:{event}")
        except BpfError as exc:
            if exc.errno not in (errno.EINVAL, errno.EOPNOTSUPP, ENOTSUPP):
                os.close(perf_fd)
                raise
        else:
            os.close(perf_fd)
            return link, True
        try:
            for request, argument in ((PERF_EVENT_IOC_SET_BPF, prog_fd),
                                      (PERF_EVENT_IOC_ENABLE, 0)):
                if self._libc.ioctl(ctypes.c_int(perf_fd), ctypes.c_ulong(request),
                                    ctypes.c_int(argument)) < 0:
                    err = ctypes.get_errno()
                    raise BpfError(err, f"attach {category}:{event} to its perf event: "
                                        f"{os.strerror(err)}")
        except BpfError:
            os.close(perf_fd)
            raise
        return perf_fd, False


def _possible_cpus() -> int:
    """Per-CPU map values hold one slot per possible CPU (not only online ones)."""
    try:
        with open("/sys/devices/system/cpu/possible") as handle:
            text = handle.read().strip()
    except OSError:
        return os.cpu_count() or 1
    count = 0
    for part in text.split(","):
        low, _, high = part.partition("-")
        count += int(high or low) - int(low) + 1
    return count

