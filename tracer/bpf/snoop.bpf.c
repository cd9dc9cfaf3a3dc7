// Snoop's kernel side: every path-taking syscall of the target cgroups, deduplicated,
// as variable-length records in one ring buffer, plus the state that gives relative
// paths their meaning.
//
// Compiled by bcc at tracer start. The loader passes, with -D:
//   HAVE_<syscall>       for each syscall tracepoint this kernel has (others are skipped)
//   HAVE_GROUP_DEAD      when sched_process_exit says whether the whole process died
//   HAVE_io_uring_submit_req or HAVE_io_uring_submit_sqe, when that tracepoint has an opcode
//   HAVE_RINGBUF         the BPF ring buffer (5.8); else one perf buffer per CPU
//   HAVE_ANCESTOR_CGROUP_HELPER  bpf_get_current_ancestor_cgroup_id in tracing programs
//   SYS_IDX_<syscall>    the syscall's index in the tracer's syscall table (for metrics)
//   RINGBUF_PAGES, DEDUP_ENTRIES, DEDUP_TTL_NS, MAX_CGROUP_LEVELS, WAKEUP_EVERY
//   WATCH_READ, WATCH_WRITE, WATCH_CLOSE (with WATCH_IO), WATCH_PID=<tgid>, WATCH_COMMS:
//                        only for `snoop watch` (tracer/watch/), never for the tracer
//
// Rules: no kernel struct is ever read (bcc compiles against whatever headers are
// installed, which may not match the running kernel): only tracepoint arguments, user
// memory and BPF helpers. The record layout below is mirrored once in tracer/records.py;
// tests/tracer/test_records.py checks the two agree.
//
// The cwd and fd model lives here, not in user space, because the dedup must never hide
// what the model needs. Every record has a unique serial. A record whose path later
// serves as a base (a successful open: its fd; a successful chdir: the cwd) is a "base
// record"; the tracer remembers serial -> resolved path for those. The kernel keeps, per
// process, which serial its cwd and each of its fds stand for, through fork (copied or
// shared by CLONE_FS/CLONE_FILES), dup, close, close_range, exec (close-on-exec) and
// chroot, and stamps every relative record with the serial of its base. A deduplicated
// open still updates the fd table, with the serial of the record that was sent. Where
// the kernel does not know a base (an fd or cwd from before tracing, or one that came by
// a way it does not see, such as SCM_RIGHTS), it mints a serial and sends a PRIME
// record; the tracer reads /proc for it and checks the kernel's table still holds that
// serial, so a /proc answer is never taken for a state that has changed since.

#define SNOOP_PATH_MAX 4096
#define AT_FDCWD_VALUE -100
#define FD_ROOT -2  // magic prefix /proc/self/root: the rest is an absolute path

// Access kinds: the values of snoop.common.protocol.AccessKind.
#define KIND_FROM_FLAGS 0
#define KIND_READ 1
#define KIND_WRITE 2
#define KIND_EXEC 3
#define KIND_STAT 4
#define KIND_ACCESS 5
#define KIND_READLINK 6
#define KIND_CHDIR 7
#define KIND_TRUNCATE 8
#define KIND_STATFS 9
#define KIND_XATTR 10
#define KIND_MKDIR 11
#define KIND_UNLINK 12
#define KIND_RENAME 13
#define KIND_LINK 14
#define KIND_CHMOD 15
#define KIND_CHOWN 16
#define KIND_UTIME 17
#define KIND_MKNOD 18
// Records for the tracer's bookkeeping; never reported as files.
#define KIND_FORK 100       // ret: child pid
#define KIND_EXIT 101       // the whole process died
#define KIND_PRIME_CWD 103  // serial now stands for the cwd of tgid; ret: its fs context
#define KIND_PRIME_FD 104   // serial now stands for fd `dirfd` of tgid; ret: its fd table
// Stash-only kinds: handled at sys_exit, never sent.
#define KIND_DUP 102
#define KIND_FCHDIR 105
#define KIND_CLONE 106
#define KIND_UNSHARE 107
#define KIND_SOCKETPAIR 108
#define KIND_RECVMSG 109
#define KIND_IO 110         // watch: a read, write or close; dirfd: the fd, base: its path

// Record flags.
#define FLAG_READ_FAILED 1  // the path could not be read from user memory
#define FLAG_TRUNCATED 2    // the string filled SNOOP_PATH_MAX (the kernel rejects it too)
#define FLAG_FROM_EXEC 4    // from sched_process_exec: the binary that really ran
#define FLAG_MAGIC 8        // /proc/self/fd/N/..., /dev/fd/N/...: `skip` bytes stand for base
#define FLAG_BASE 16        // this record's serial names the fd it returned or the new cwd
#define FLAG_UNCERTAIN 32   // relative, in a process whose threads do not share one model
#define FLAG_OLD_ROOT 64    // its base was named before the process's last chroot

// Stash options.
#define STASH_RETURNS_FD 1
#define STASH_CLOEXEC 2
#define STASH_EXEC 4  // an exec: its name is read again at exit if it failed, with its errno

// Counter slots (per CPU).
#define STAT_SUBMITTED 0
#define STAT_RINGBUF_FULL 1
#define STAT_READ_FAILED 2
#define STAT_DEDUP_HITS 3
#define STAT_STASH_FULL 4
#define STAT_PRIMED 5
#define STAT_NOTES_DROPPED 6  // bookkeeping records (fork, exit, prime) the ring buffer
                              // had no room for; STAT_RINGBUF_FULL counts path records only
#define STAT_IO_DROPPED 7      // watch: read, write and close records there was no room for
#define STAT_SLOTS 8

#define O_ACCMODE_BITS 3
#define O_CREAT_BIT 0100
#define O_TRUNC_BIT 01000
#define O_APPEND_BIT 02000
#define O_CLOEXEC_BIT 02000000
#define RESOLVE_MASK 0x18  // RESOLVE_BENEATH | RESOLVE_IN_ROOT

#define CLONE_VM_BIT 0x100
#define CLONE_FS_BIT 0x200
#define CLONE_FILES_BIT 0x400
#define CLONE_THREAD_BIT 0x10000
#define CLONE_NEWNS_BIT 0x20000

struct event_hdr {
    u64 cgroup_id;
    u64 serial;    // unique per record
    u64 base;      // serial of the cwd or fd a relative (or magic) path is relative to
    s64 ret;       // syscall return value; child pid for KIND_FORK; context for PRIME
    u32 pid;       // thread id
    u32 tgid;      // process id
    s32 dirfd;     // AT_FDCWD (-100) or the fd a relative path is relative to
    u16 path_len;  // bytes of path following the header, without the NUL
    u16 syscall;   // SYS_IDX_* of the syscall
    u16 skip;      // FLAG_MAGIC: bytes of the path's /proc/self/fd/N/ prefix
    u8 kind;
    u8 flags;
    u8 resolve;    // openat2's RESOLVE_BENEATH and RESOLVE_IN_ROOT bits
    u8 pad1;
    u16 pad2;
    char comm[16]; // the process name of the thread that made the access (at submit)
};

struct event_buf {
    struct event_hdr hdr;
    char path[SNOOP_PATH_MAX];
};

// Syscall arguments kept from sys_enter to sys_exit, per thread.
struct stash {
    u64 path;
    u64 path2;
    u64 arg;  // clone/unshare flags
    s32 dirfd;
    s32 dirfd2;
    u16 syscall;
    u8 kind;
    u8 kind2;
    u8 opts;
    u8 resolve;
    u8 live;  // set at entry, cleared at exit: the entry stays for the thread's next one
    u8 pad;
};

struct dedup_key {
    u64 cgroup_id;
    u64 hash;
    u64 base;  // 0 for absolute paths; a relative path means something else elsewhere
    u16 len;
    u8 kind;
    u8 flags;    // FLAG_BASE, FLAG_MAGIC and FLAG_FROM_EXEC change what it means...
    u8 resolve;  // ...and so do openat2's resolve bits
    u8 failed;   // a failed access and a successful one of the same path are both sent
    u16 pad;
};

struct dedup_value {
    u64 sent_at;
    u64 serial;  // of the record that was sent: what a deduplicated open's fd stands for
};

struct proc {
    u64 fs;          // its fs context (cwd): shared with CLONE_FS peers
    u64 files;       // its fd table: shared with CLONE_FILES peers
    u64 root_stamp;  // time of its last chroot: older bases are named in the old view
    u32 uncertain;   // a thread has its own cwd or fd table: not modelled
    u32 pad;
};

struct cwd_entry {
    u64 base;
    u64 stamp;  // when it was set
};

struct fd_key {
    u64 files;
    s32 fd;
    u32 pad;
};

struct fd_value {
    u64 base;   // 0: closed, or unknown to the kernel
    u64 sock;   // an end of a socketpair: (pair serial << 1) | end; 0 otherwise
    u64 stamp;  // when it was set
    u32 cloexec;
    u32 set;    // 0: nothing was here (look further up the copies)
};

// The value before the current one is kept too: a parent that closes an fd right after
// forking (its copy of the child's socket end, say) must not hide what the child got.
struct fd_entry {
    struct fd_value now;
    struct fd_value before;
};

// fds sent by SCM_RIGHTS over a socketpair, waiting for the other end's recvmsg.
#define PASS_MAX 8
struct passing {
    u64 bases[PASS_MAX];
    u32 count;
    u32 ambiguous;  // a second message came before the first was received
};

// A table copied from another at `since` (fork, exec, close_range): entries it has not
// set itself are looked up in `parent`, if older than the copy.
struct files_link {
    u64 parent;
    u64 since;
    u32 drop_cloexec;  // exec: close-on-exec entries did not survive
    u32 closed_lo;     // close_range: [lo, hi] did not survive (lo > hi: none)
    u32 closed_hi;
    u32 pad;
};

#ifdef HAVE_RINGBUF
BPF_RINGBUF_OUTPUT(events, RINGBUF_PAGES);
#else
// Before 5.8: one perf buffer per CPU, which the tracer opens and maps itself.
BPF_PERF_OUTPUT(events);
#endif
BPF_PERCPU_ARRAY(scratch, struct event_buf, 1);
BPF_PERCPU_ARRAY(counters, u64, STAT_SLOTS);
BPF_PERCPU_ARRAY(wakeup_count, u32, 1);
BPF_PERCPU_ARRAY(serials, u64, 1);
// Target cgroup ids: 1 = trace it and its descendants, 2 = exclude it and its descendants.
// Without the ancestor helper every descendant is listed too, so there is more of it.
#ifdef HAVE_ANCESTOR_CGROUP_HELPER
BPF_HASH(targets, u64, u8, 4096);
#else
BPF_HASH(targets, u64, u8, 65536);
#endif
// Cached verdict per cgroup id: (generation << 8) | verdict. Stale generations recompute.
BPF_TABLE("lru_hash", u64, u64, verdicts, 16384);
BPF_ARRAY(generation, u64, 1);
BPF_HASH(excluded_tgids, u32, u8, 1024);
// `snoop watch --comm`: the process names shown (only read when built WATCH_COMMS).
struct comm_key {
    char name[16];
};
BPF_HASH(watch_comms, struct comm_key, u8, 16);
// control[0] != 0: paused. Detaching a hundred tracepoints takes seconds (an RCU grace
// period each); pausing first makes a stop instant, so the final drain is complete.
BPF_ARRAY(control, u32, 1);
BPF_TABLE("lru_hash", u32, struct stash, inflight, 16384);
BPF_TABLE("lru_hash", struct dedup_key, struct dedup_value, dedup, DEDUP_ENTRIES);
BPF_TABLE("lru_hash", u32, struct proc, procs, 65536);
BPF_TABLE("lru_hash", u64, struct cwd_entry, cwds, 65536);
BPF_TABLE("lru_hash", struct fd_key, struct fd_entry, fds, 131072);
BPF_TABLE("lru_hash", u64, struct files_link, links, 65536);
BPF_TABLE("lru_hash", u64, struct passing, passings, 4096);  // by receiving end
// io_uring requests that name paths (open, statx, mkdir ...), per cgroup: invisible here.
BPF_HASH(uring_path_ops, u64, u64, 4096);
// Never written: lets the tests read bcc's own view of the record layout.
BPF_ARRAY(event_layout, struct event_hdr, 1);

static __always_inline void count(u32 slot) {
    u64 *value = counters.lookup(&slot);
    if (value)
        *value += 1;
}

// Unique and never 0: a per-CPU count with the CPU number in the low bits.
static __always_inline u64 new_serial(void) {
    u32 zero = 0;
    u64 *n = serials.lookup(&zero);
    if (!n)
        return 0;
    *n += 1;
    return (*n << 12) | (bpf_get_smp_processor_id() & 0xfff);
}

static __always_inline u64 current_generation(void) {
    u32 zero = 0;
    u64 *gen = generation.lookup(&zero);
    return gen ? *gen : 0;
}

// Nearest listed ancestor decides, deepest first; the answer is cached per cgroup.
static __always_inline int cgroup_traced(u64 cgroup_id) {
    u64 gen = current_generation();
    u64 *cached = verdicts.lookup(&cgroup_id);
    if (cached && (*cached >> 8) == gen)
        return (*cached & 0xff) == 1;
    u64 verdict = 2;
#ifdef HAVE_ANCESTOR_CGROUP_HELPER
#pragma unroll
    for (int level = MAX_CGROUP_LEVELS - 1; level >= 0; level--) {
        u64 ancestor = bpf_get_current_ancestor_cgroup_id(level);
        if (!ancestor)
            continue;
        u8 *mark = targets.lookup(&ancestor);
        if (mark) {
            verdict = *mark;
            break;
        }
    }
#else
    // No ancestor helper for tracing programs (5.10 and older): the tracer lists every
    // descendant of a target itself (tracer/descendants.py), with its verdict.
    u8 *mark = targets.lookup(&cgroup_id);
    if (mark)
        verdict = *mark;
#endif
    u64 value = (gen << 8) | verdict;
    verdicts.update(&cgroup_id, &value);
    return verdict == 1;
}

// The last verdict on each CPU: a process runs many syscalls in a row, and every hook
// asks. Changing the targets or the excluded processes bumps the generation.
struct last_verdict {
    u64 cgroup_id;
    u64 gen;
    u32 tgid;
    u32 traced;
};
BPF_PERCPU_ARRAY(last_verdicts, struct last_verdict, 1);

static __always_inline int traced_now(u64 cgroup_id, u32 tgid) {
    u32 zero = 0;
    u64 gen = current_generation();
    struct last_verdict *last = last_verdicts.lookup(&zero);
    if (last && last->cgroup_id == cgroup_id && last->tgid == tgid && last->gen == gen)
        return last->traced;
    int traced = cgroup_traced(cgroup_id) && excluded_tgids.lookup(&tgid) == NULL;
    if (last) {
        last->cgroup_id = cgroup_id;
        last->gen = gen;
        last->tgid = tgid;
        last->traced = traced;
    }
    return traced;
}

static __always_inline int should_trace(u64 *cgroup_id) {
    u32 zero = 0;
    u32 *paused = control.lookup(&zero);
    if (paused && *paused)
        return 0;
#ifdef WATCH_PID
    if ((bpf_get_current_pid_tgid() >> 32) != WATCH_PID)
        return 0;
#endif
#ifdef WATCH_COMMS
    struct comm_key comm = {};
    bpf_get_current_comm(comm.name, sizeof(comm.name));
    if (!watch_comms.lookup(&comm))
        return 0;
#endif
    *cgroup_id = bpf_get_current_cgroup_id();
    return traced_now(*cgroup_id, bpf_get_current_pid_tgid() >> 32);
}

static __always_inline u8 kind_from_open_flags(u64 flags) {
    if ((flags & O_ACCMODE_BITS) != 0 || (flags & (O_CREAT_BIT | O_TRUNC_BIT | O_APPEND_BIT)))
        return KIND_WRITE;
    return KIND_READ;
}

// ---------------------------------------------------------------- records

static __always_inline void submit_ring(void *ctx, void *data, u32 size, int *ok, u32 full_slot) {
#ifdef HAVE_RINGBUF
    // Waking the reader on every record costs ~3 us on the traced syscall; the tracer
    // polls on a short timer instead, and every WAKEUP_EVERY records force a wakeup so
    // a burst cannot fill the ring buffer between polls.
    u32 zero = 0;
    u64 wake = BPF_RB_NO_WAKEUP;
    u32 *n = wakeup_count.lookup(&zero);
    if (n) {
        *n += 1;
        if (*n >= WAKEUP_EVERY) {
            *n = 0;
            wake = BPF_RB_FORCE_WAKEUP;
        }
    }
    int failed = events.ringbuf_output(data, size, wake) < 0;
#else
    // The perf event's own wakeup_events does what WAKEUP_EVERY does above.
    int failed = events.perf_submit(ctx, data, size) < 0;
#endif
    if (failed) {
        count(full_slot);
        *ok = 0;
    } else {
        count(STAT_SUBMITTED);
        *ok = 1;
    }
}

static __always_inline int submit(void *ctx, struct event_buf *buf, u32 len) {
    int ok = 0;
    u32 size = sizeof(struct event_hdr) + (len & (SNOOP_PATH_MAX - 1));
    if (size > sizeof(struct event_buf))
        return 0;
    bpf_get_current_comm(buf->hdr.comm, sizeof(buf->hdr.comm));
    submit_ring(ctx, buf, size, &ok, STAT_RINGBUF_FULL);
    return ok;
}

static __always_inline struct event_buf *new_event(u64 cgroup_id, u8 kind, u16 syscall,
                                                    s32 dirfd, s64 ret) {
    u32 zero = 0;
    struct event_buf *buf = scratch.lookup(&zero);
    if (!buf)
        return NULL;
    u64 pid_tgid = bpf_get_current_pid_tgid();
    buf->hdr.cgroup_id = cgroup_id;
    buf->hdr.serial = new_serial();
    buf->hdr.base = 0;
    buf->hdr.ret = ret;
    buf->hdr.pid = (u32)pid_tgid;
    buf->hdr.tgid = pid_tgid >> 32;
    buf->hdr.dirfd = dirfd;
    buf->hdr.path_len = 0;
    buf->hdr.syscall = syscall;
    buf->hdr.skip = 0;
    buf->hdr.kind = kind;
    buf->hdr.flags = 0;
    buf->hdr.resolve = 0;
    buf->hdr.pad1 = 0;
    buf->hdr.pad2 = 0;
    return buf;
}

// A path-less bookkeeping record, built on the stack (the scratch buffer may hold the
// record being assembled). Returns 1 when it reached the ring buffer.
static __always_inline int send_note(void *ctx, u64 cgroup_id, u8 kind, u16 syscall, u32 tgid,
                                     s32 dirfd, s64 ret, u64 serial) {
    struct event_hdr note = {};
    u64 pid_tgid = bpf_get_current_pid_tgid();
    note.cgroup_id = cgroup_id;
    note.serial = serial;
    note.ret = ret;
    note.pid = tgid == (u32)(pid_tgid >> 32) ? (u32)pid_tgid : tgid;
    note.tgid = tgid;
    note.dirfd = dirfd;
    note.syscall = syscall;
    note.kind = kind;
    int ok = 0;
    submit_ring(ctx, &note, sizeof(note), &ok, STAT_NOTES_DROPPED);
    return ok;
}

// ---------------------------------------------------------------- the model

static __always_inline struct proc *get_proc(u32 tgid) {
    struct proc *p = procs.lookup(&tgid);
    if (p)
        return p;
    // First sight of this process (it predates tracing, or came in from an untraced
    // parent): contexts of its own, whose bases are minted from /proc on demand.
    struct proc fresh = {};
    fresh.fs = new_serial();
    fresh.files = new_serial();
    procs.update(&tgid, &fresh);
    return procs.lookup(&tgid);
}

static __always_inline u64 now_ns(void) {
    return bpf_ktime_get_ns();
}

// What fd `fd` of a process holds, as far as the kernel's tables know; NULL if unknown.
// *old_root: it was named before the process's last chroot.
static __always_inline struct fd_value *fd_find(struct proc *p, s32 fd, int *old_root) {
    struct fd_key key = {};
    key.files = p->files;
    key.fd = fd;
    u64 root_stamp = p->root_stamp;
    u64 since = ~0ULL;  // the value must predate every copy on the way up
    u32 drop_cloexec = 0;
#pragma unroll
    for (int level = 0; level < 4; level++) {
        struct fd_entry *entry = fds.lookup(&key);
        struct fd_value *value = NULL;
        if (entry) {
            if (entry->now.stamp < since)
                value = &entry->now;
            else if (entry->before.set && entry->before.stamp < since)
                value = &entry->before;
            else if (entry->before.set)
                return NULL;  // changed twice since the copy
        }
        if (value) {
            if (!value->set || !(value->base || value->sock) ||
                (drop_cloexec && value->cloexec))
                return NULL;  // closed
            *old_root = value->stamp < root_stamp;
            return value;
        }
        struct files_link *link = links.lookup(&key.files);
        if (!link)
            return NULL;
        if ((u32)fd >= link->closed_lo && (u32)fd <= link->closed_hi)
            return NULL;
        if (link->since < since)
            since = link->since;
        drop_cloexec |= link->drop_cloexec;
        key.files = link->parent;
    }
    return NULL;
}

static __always_inline u64 fd_lookup(struct proc *p, s32 fd, int *old_root) {
    struct fd_value *value = fd_find(p, fd, old_root);
    return value ? value->base : 0;
}

static __always_inline void fd_put_entry(u64 files, s32 fd, u64 base, u64 sock,
                                         u32 cloexec) {
    struct fd_key key = {};
    key.files = files;
    key.fd = fd;
    struct fd_value value = {};
    value.base = base;
    value.sock = sock;
    value.stamp = now_ns();
    value.cloexec = cloexec;
    value.set = 1;
    struct fd_entry *old = fds.lookup(&key);
    if (old) {
        old->before = old->now;  // in place: cheaper than an update of an LRU map
        old->now = value;
        return;
    }
    struct fd_entry entry = {};
    entry.now = value;
    fds.update(&key, &entry);
}

// The calling process's state, if it is traced and the kernel side has seen it before.
static __always_inline struct proc *traced_proc(void) {
    u64 cgroup_id;
    if (!should_trace(&cgroup_id))
        return NULL;
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    return procs.lookup(&tgid);
}

static __always_inline void fd_put(u64 files, s32 fd, u64 base, u32 cloexec) {
    fd_put_entry(files, fd, base, 0, cloexec);
}

static __always_inline void cwd_put(u64 fs, u64 base) {
    struct cwd_entry *known = cwds.lookup(&fs);
    if (known) {
        known->base = base;
        known->stamp = now_ns();
        return;
    }
    struct cwd_entry entry = {};
    entry.base = base;
    entry.stamp = now_ns();
    cwds.update(&fs, &entry);
}

// The base for fd `fd`: known, or minted now and announced with a PRIME record.
static __always_inline u64 fd_base(void *ctx, u64 cgroup_id, struct proc *p, u32 tgid, s32 fd,
                                   int *old_root) {
    u64 base = fd_lookup(p, fd, old_root);
    if (base)
        return base;
    u64 files = p->files;
    base = new_serial();
    if (!send_note(ctx, cgroup_id, KIND_PRIME_FD, 0, tgid, fd, (s64)files, base))
        return 0;
    count(STAT_PRIMED);
    fd_put(files, fd, base, 0);
    return base;
}

static __always_inline u64 cwd_base(void *ctx, u64 cgroup_id, struct proc *p, u32 tgid,
                                    int *old_root) {
    u64 fs = p->fs;
    struct cwd_entry *known = cwds.lookup(&fs);
    if (known && known->base) {
        *old_root = known->stamp < p->root_stamp;
        return known->base;
    }
    u64 base = new_serial();
    if (!send_note(ctx, cgroup_id, KIND_PRIME_CWD, 0, tgid, AT_FDCWD_VALUE, (s64)fs, base))
        return 0;
    count(STAT_PRIMED);
    cwd_put(fs, base);
    return base;
}

// The process's fd table becomes a copy of the one it had (exec, close_range, unshare).
// ---------------------------------------------------------------- snoop watch

// A read, write or close for `snoop watch`: the fd, the result, and the serial of the
// record the fd's path came from (or of the PRIME that asks /proc for it).
static __always_inline int send_io(void *ctx, u64 cgroup_id, u16 syscall, u32 tgid, s32 fd,
                                   s64 ret, u64 base) {
    struct event_hdr note = {};
    u64 pid_tgid = bpf_get_current_pid_tgid();
    note.cgroup_id = cgroup_id;
    note.serial = new_serial();
    note.base = base;
    note.ret = ret;
    note.pid = (u32)pid_tgid;
    note.tgid = tgid;
    note.dirfd = fd;
    note.syscall = syscall;
    note.kind = KIND_IO;
    bpf_get_current_comm(note.comm, sizeof(note.comm));
    int ok = 0;
    submit_ring(ctx, &note, sizeof(note), &ok, STAT_IO_DROPPED);
    return ok;
}

#ifdef WATCH_IO
struct watch_io {
    s32 fd;
    u16 syscall;
    u8 live;
    u8 pad;
};
BPF_TABLE("lru_hash", u32, struct watch_io, watch_inflight, 16384);  // by thread

static __always_inline int watch_io_enter(u16 syscall, s32 fd) {
    u64 cgroup_id;
    if (!should_trace(&cgroup_id))
        return 0;
    u32 tid = (u32)bpf_get_current_pid_tgid();
    struct watch_io *io = watch_inflight.lookup(&tid);
    if (io) {  // in place: an update of an LRU map costs a lock and an allocation
        io->fd = fd;
        io->syscall = syscall;
        io->live = 1;
        return 0;
    }
    struct watch_io fresh = {};
    fresh.fd = fd;
    fresh.syscall = syscall;
    fresh.live = 1;
    watch_inflight.update(&tid, &fresh);
    return 0;
}

static __always_inline int watch_io_exit(void *ctx, s64 ret) {
    u64 pid_tgid = bpf_get_current_pid_tgid();
    u32 tid = (u32)pid_tgid;
    struct watch_io *io = watch_inflight.lookup(&tid);
    if (!io || !io->live)
        return 0;
    io->live = 0;
    s32 fd = io->fd;
    u16 syscall = io->syscall;
    u32 tgid = pid_tgid >> 32;
    u64 cgroup_id = bpf_get_current_cgroup_id();
    u64 base = 0;
    struct proc *p = get_proc(tgid);
    if (p) {
        int old_root = 0;
        base = fd_base(ctx, cgroup_id, p, tgid, fd, &old_root);
    }
    send_io(ctx, cgroup_id, syscall, tgid, fd, ret, base);
    return 0;
}
#endif

static __always_inline void copy_files(struct proc *p, u32 drop_cloexec, u32 lo, u32 hi) {
    struct files_link link = {};
    link.parent = p->files;
    link.since = now_ns();
    link.drop_cloexec = drop_cloexec;
    link.closed_lo = lo;
    link.closed_hi = hi;
    u64 files = new_serial();
    links.update(&files, &link);
    p->files = files;
}

static __always_inline void copy_fs(struct proc *p) {
    u64 old = p->fs;
    u64 fs = new_serial();
    struct cwd_entry *cwd = cwds.lookup(&old);
    if (cwd && cwd->base) {
        struct cwd_entry value = *cwd;
        cwds.update(&fs, &value);
    }
    p->fs = fs;
}

// ---------------------------------------------------------------- magic paths

#define W8(a, b, c, d, e, f, g, h)                                                       \
    ((u64)(a) | (u64)(b) << 8 | (u64)(c) << 16 | (u64)(d) << 24 | (u64)(e) << 32 |       \
     (u64)(f) << 40 | (u64)(g) << 48 | (u64)(h) << 56)
#define BYTES(n) ((1ULL << ((n) * 8)) - 1)

static __always_inline u64 word_at(struct event_buf *buf, u32 at) {
    u64 word = 0;
    bpf_probe_read_kernel(&word, 8, &buf->path[at & (SNOOP_PATH_MAX - 1)]);
    return word;
}

static __always_inline char char_at(struct event_buf *buf, u32 at) {
    return buf->path[at & (SNOOP_PATH_MAX - 1)];
}

// Up to 7 decimal digits from the word read at `at`; *count of them (0: none).
static __always_inline u32 digits_in(u64 word, u32 at, u32 len, u32 *count) {
    u32 value = 0;
    u32 n = 0;
#pragma unroll
    for (int i = 0; i < 7; i++) {
        u8 c = (u8)(word >> (8 * i)) - '0';
        if (c > 9 || at + i >= len)
            break;
        value = value * 10 + c;
        n++;
    }
    *count = n;
    return value;
}

// /dev/fd/N[/...], /proc/{self,thread-self,PID}/fd/N[/...], .../cwd[/...], .../root/...:
// the prefix names an fd, the cwd or the root of the process itself (PID its own). Returns the prefix
// length (with the slash after it), 0 when the path has no such prefix. Every branch
// here multiplies the verifier's work, so the words are compared whole and the fd's
// digits are taken from one word.
static __always_inline u32 magic_prefix(struct event_buf *buf, u32 len, s32 *fd) {
    if (len < 8)
        return 0;
    u64 word = word_at(buf, 0);
    u32 at;
    if (word == W8('/', 'd', 'e', 'v', '/', 'f', 'd', '/')) {
        at = 8;
    } else {
        if (word == W8('/', 'p', 'r', 'o', 'c', '/', 's', 'e')) {
            if ((word_at(buf, 8) & BYTES(3)) != W8('l', 'f', '/', 0, 0, 0, 0, 0))
                return 0;
            at = 11;
        } else if (word == W8('/', 'p', 'r', 'o', 'c', '/', 't', 'h')) {
            if (word_at(buf, 8) != W8('r', 'e', 'a', 'd', '-', 's', 'e', 'l') ||
                (word_at(buf, 16) & BYTES(2)) != W8('f', '/', 0, 0, 0, 0, 0, 0))
                return 0;
            at = 18;
        } else if ((word & BYTES(6)) == W8('/', 'p', 'r', 'o', 'c', '/', 0, 0)) {
            u32 count = 0;
            u32 pid = digits_in(word_at(buf, 6), 6, len, &count);
            at = 6 + count;
            if (count == 0 || count == 7 || at >= len || char_at(buf, at) != '/' ||
                (pid != buf->hdr.tgid && pid != buf->hdr.pid))
                return 0;
            at++;
        } else {
            return 0;
        }
        u64 rest = word_at(buf, at);
        if ((rest & BYTES(3)) == W8('c', 'w', 'd', 0, 0, 0, 0, 0)) {
            u32 tail = at + 3;
            if (tail > len || (tail < len && char_at(buf, tail) != '/'))
                return 0;
            *fd = AT_FDCWD_VALUE;
            return tail < len ? tail + 1 : tail;
        }
        if ((rest & BYTES(4)) == W8('r', 'o', 'o', 't', 0, 0, 0, 0)) {
            u32 tail = at + 4;
            if (tail >= len || char_at(buf, tail) != '/')
                return 0;
            *fd = FD_ROOT;
            return tail;  // the rest, slash and all, is absolute in the process's root
        }
        if ((rest & BYTES(3)) != W8('f', 'd', '/', 0, 0, 0, 0, 0))
            return 0;
        at += 3;
    }
    u32 count = 0;
    u32 value = digits_in(word_at(buf, at), at, len, &count);
    u32 end = at + count;
    if (count == 0 || count == 7 || end > len || (end < len && char_at(buf, end) != '/'))
        return 0;
    *fd = (s32)value;
    return end < len ? end + 1 : end;
}

// Sets the record's base for a relative, magic or RESOLVE_IN_ROOT path. Returns 0 when
// the path is absolute and needs none.
// `skip` and `magic_fd` are magic_prefix's answer, found in an earlier stage.
static __always_inline int set_base(void *ctx, struct event_buf *buf, struct proc *p, u32 skip,
                                    s32 magic_fd) {
    u64 cgroup_id = buf->hdr.cgroup_id;
    u32 tgid = buf->hdr.tgid;
    s32 fd = magic_fd;
    if (buf->path[0] == '/') {
        if (!skip) {
            if (!(buf->hdr.resolve & 0x10))  // RESOLVE_IN_ROOT: "/" is the dirfd
                return 0;
            fd = buf->hdr.dirfd;
        } else {
            buf->hdr.flags |= FLAG_MAGIC;
            buf->hdr.skip = skip;
            if (fd == FD_ROOT)
                return 0;
            buf->hdr.dirfd = fd;
        }
    }
    if (p->uncertain)
        buf->hdr.flags |= FLAG_UNCERTAIN;
    int old_root = 0;
    if (fd == AT_FDCWD_VALUE)
        buf->hdr.base = cwd_base(ctx, cgroup_id, p, tgid, &old_root);
    else if (fd >= 0)
        buf->hdr.base = fd_base(ctx, cgroup_id, p, tgid, fd, &old_root);
    if (old_root)
        buf->hdr.flags |= FLAG_OLD_ROOT;
    return 1;
}

// ---------------------------------------------------------------- dedup and emit

// FNV-1a over 8-byte words of the len bytes read; bytes past len are masked off.
static __always_inline u64 hash_path(struct event_buf *buf, u32 len) {
    u64 hash = 14695981039346656037ULL;
#pragma clang loop unroll(disable)
    for (u32 i = 0; i < SNOOP_PATH_MAX / 8; i++) {
        u32 offset = i * 8;
        if (offset >= len)
            break;
        u64 word = *(u64 *)&buf->path[offset & (SNOOP_PATH_MAX - 8)];
        u32 remaining = len - offset;
        if (remaining < 8)
            word &= (1ULL << (remaining * 8)) - 1;
        hash ^= word;
        hash *= 1099511628211ULL;
    }
    return hash;
}

static __always_inline void dedup_key_of(struct event_buf *buf, u32 len, u64 hash,
                                         struct dedup_key *key) {
    key->cgroup_id = buf->hdr.cgroup_id;
    key->base = buf->hdr.base;
    key->len = len;
    key->kind = buf->hdr.kind;
    // FLAG_FROM_EXEC: the exec that ran is sent beside its name sent at entry, whose
    // result was not known then.
    key->flags = buf->hdr.flags & (FLAG_BASE | FLAG_MAGIC | FLAG_FROM_EXEC);
    key->resolve = buf->hdr.resolve;
    key->failed = buf->hdr.ret < 0;
    key->hash = hash;
}

// Sends the record unless the same (cgroup, kind, path, base) was sent less than
// DEDUP_TTL_NS ago. Returns the serial user space knows this path by (this record's, or
// the earlier one's), 0 when it reached nobody. Only a record that was really submitted
// leaves a dedup entry. `hash` is hash_path's, computed before the branches of set_base:
// the verifier walks the hash loop once per distinct state that reaches it.
static __always_inline u64 send_deduplicated(void *ctx, struct event_buf *buf, u32 len, u64 hash,
                                             int dedupable) {
    struct dedup_key key = {};
    u64 now = now_ns();
    if (dedupable) {
        dedup_key_of(buf, len, hash, &key);
        struct dedup_value *last = dedup.lookup(&key);
        if (last && now - last->sent_at < DEDUP_TTL_NS) {
            count(STAT_DEDUP_HITS);
            return last->serial;
        }
    }
    if (!submit(ctx, buf, len))
        return 0;
    if (dedupable) {
        struct dedup_value value = {};
        value.sent_at = now;
        value.serial = buf->hdr.serial;
        dedup.update(&key, &value);
    }
    return buf->hdr.serial;
}

// Copy the user string into the scratch buffer; returns its length without the NUL.
static __always_inline u32 read_user_path(struct event_buf *buf, u64 user_ptr) {
    long n = bpf_probe_read_user_str(buf->path, SNOOP_PATH_MAX, (void *)user_ptr);
    if (n <= 0) {
        buf->hdr.flags |= FLAG_READ_FAILED;
        return 0;
    }
    if (n >= SNOOP_PATH_MAX)
        buf->hdr.flags |= FLAG_TRUNCATED;
    u32 len = (u32)(n - 1) & (SNOOP_PATH_MAX - 1);
    buf->hdr.path_len = len;
    return len;
}

// Root switches are never deduplicated: the tracer drops a launcher's events before one.
static __always_inline int is_root_switch(u16 syscall) {
    return syscall == SYS_IDX_chroot || syscall == SYS_IDX_pivot_root;
}

// A path record is built in stages, each its own program reached by a tail call and
// verified on its own: read and hash the path (in the hook), then find its base, dedup,
// submit and update the model (finish_*). As one program, the branches of the magic
// prefixes and the fd table times the hash loop exceed what the verifier accepts. What
// the stages share travels in a per-CPU slot; the record itself in `scratch`.
#define AFTER_NOTHING 0
#define AFTER_STASHED 1  // a syscall's first path: fd results, chdir, chroot; then path2
#define AFTER_EXEC 2     // sched_process_exec: close-on-exec fds go
#define STAGE_EXIT 0     // what a syscall's exit does with its stash
#define STAGE_MAGIC 1
#define STAGE_FINISH 2
#define STAGE_PATH2 3
#define STAGE_MODEL 4
#define STAGE_ENTER 5    // a one-path syscall without a result the model needs: seen already?
#define STAGE_COUNT 6

struct stage {
    struct stash args;
    s64 ret;
    u64 hash;
    u32 len;
    s32 magic_fd;  // magic_prefix's answer (or the dirfd)
    u32 pad2;
    u16 skip;
    u8 after;
    u8 base_record;
};
// Every program here is a tracepoint program, so one array serves entry and exit alike.
BPF_PROG_ARRAY(stage_progs, STAGE_COUNT);
BPF_PERCPU_ARRAY(stages, struct stage, 1);

static __always_inline struct stage *current_stage(void) {
    u32 zero = 0;
    return stages.lookup(&zero);
}

static __always_inline void find_magic(void) {
    u32 zero = 0;
    struct stage *st = stages.lookup(&zero);
    struct event_buf *buf = scratch.lookup(&zero);
    if (!st || !buf)
        return;
    u32 len = st->len & (SNOOP_PATH_MAX - 1);
    s32 fd = 0;
    st->skip = buf->path[0] == '/' ? magic_prefix(buf, len, &fd) : 0;
    st->magic_fd = st->skip ? fd : buf->hdr.dirfd;
}

// Reads the user path into a new record in `scratch` and hashes it. Returns 1 when a
// record is ready for finish_*; 0 when there is none (nothing to send, or it was sent
// already: an unreadable path is sent as such unless `read_failed` asks to retry).
static __always_inline int prepare_path(void *ctx, struct stage *st, u64 cgroup_id, u8 kind,
                                        u16 syscall, s32 dirfd, u64 user_ptr, s64 ret,
                                        u8 resolve, int *read_failed) {
    if (!user_ptr)
        return 0;  // futimens() is utimensat(fd, NULL): no path, the fd's own file
    struct event_buf *buf = new_event(cgroup_id, kind, syscall, dirfd, ret);
    if (!buf)
        return 0;
    buf->hdr.resolve = resolve;
    u32 len = read_user_path(buf, user_ptr);
    if (buf->hdr.flags & FLAG_READ_FAILED) {
        if (read_failed) {
            *read_failed = 1;  // the caller tries again later
            return 0;
        }
        count(STAT_READ_FAILED);
        submit(ctx, buf, 0);
        return 0;
    }
    if (len == 0) {
        // An empty path with AT_EMPTY_PATH is fstat() and friends on an open fd, whose
        // path was recorded when it was opened. (fexecve is covered by sched_process_exec.)
        return 0;
    }
    st->len = len;
    st->hash = hash_path(buf, len);
    return 1;
}

// Base, dedup, submit. Returns the serial the path is known by (see send_deduplicated).
static __always_inline u64 finish_record(void *ctx, struct stage *st) {
    u32 zero = 0;
    struct event_buf *buf = scratch.lookup(&zero);
    if (!buf)
        return 0;
    u32 len = st->len & (SNOOP_PATH_MAX - 1);
    struct proc *p = get_proc(buf->hdr.tgid);
    if (!p)
        return 0;
    if (st->base_record)
        buf->hdr.flags |= FLAG_BASE;
    int needs_base = set_base(ctx, buf, p, st->skip, st->magic_fd);
    // A relative path without a known base is sent every time: its meaning is new.
    int dedupable = (!needs_base || buf->hdr.base) && !is_root_switch(buf->hdr.syscall);
    return send_deduplicated(ctx, buf, len, st->hash, dedupable);
}

// What a syscall's result does to the model, once its record's serial is known.
static __always_inline void after_stashed(struct stage *st, u64 serial) {
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    struct proc *p = procs.lookup(&tgid);
    if (!p)
        return;
    s64 ret = st->ret;
    if (st->base_record && (st->args.opts & STASH_RETURNS_FD))
        fd_put(p->files, (s32)ret, serial, (st->args.opts & STASH_CLOEXEC) ? 1 : 0);
    u64 fs = p->fs;
    if (st->base_record && st->args.kind == KIND_CHDIR) {
        if (serial)
            cwd_put(fs, serial);
        else
            cwds.delete(&fs);  // unknown now: minted from /proc when needed
    }
    if (st->args.syscall == SYS_IDX_chroot && ret == 0)
        p->root_stamp = now_ns();
}

static __always_inline void after_exec(void) {
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    struct proc *p = procs.lookup(&tgid);
    if (!p)
        return;
    if (p->uncertain) {
        // One thread is left: start again from what /proc will say.
        p->uncertain = 0;
        p->fs = new_serial();
        p->files = new_serial();
    } else {
        copy_files(p, 1, 1, 0);  // close-on-exec fds are gone
    }
}

int magic_stage(void *ctx) {
    find_magic();
    stage_progs.call(ctx, STAGE_FINISH);
    return 0;
}

int finish_stage(void *ctx) {
    struct stage *st = current_stage();
    if (!st)
        return 0;
    u64 serial = finish_record(ctx, st);
    if (st->after == AFTER_STASHED) {
        after_stashed(st, serial);
        if (st->args.path2)
            stage_progs.call(ctx, STAGE_PATH2);
    } else if (st->after == AFTER_EXEC) {
        after_exec();
    }
    return 0;
}

static __always_inline void put_stash(struct stash *entry) {
    u32 tid = (u32)bpf_get_current_pid_tgid();
    entry->live = 1;
    struct stash *slot = inflight.lookup(&tid);
    if (slot)
        *slot = *entry;
    else if (inflight.update(&tid, entry) != 0)
        count(STAT_STASH_FULL);
}

static __always_inline int stash_args(u8 kind, u16 syscall, s32 dirfd, u64 path, u8 opts,
                                      u8 resolve, s32 dirfd2, u64 path2, u8 kind2) {
    u64 cgroup_id;
    if (!should_trace(&cgroup_id))
        return 0;
    struct stash entry = {};
    entry.path = path;
    entry.path2 = path2;
    entry.dirfd = dirfd;
    entry.dirfd2 = dirfd2;
    entry.syscall = syscall;
    entry.kind = kind;
    entry.kind2 = kind2;
    entry.opts = opts;
    entry.resolve = resolve;
    put_stash(&entry);
    return 0;
}

// For the model only: dup, fchdir, clone, unshare.
static __always_inline int stash_model(u8 kind, u16 syscall, s32 fd, u64 arg) {
    u64 cgroup_id;
    if (!should_trace(&cgroup_id))
        return 0;
    struct stash entry = {};
    entry.kind = kind;
    entry.syscall = syscall;
    entry.dirfd = fd;
    entry.arg = arg;
    put_stash(&entry);
    return 0;
}

// A repeated access decided at entry: an absolute path (no magic prefix) that reads fine
// and was sent less than DEDUP_TTL_NS ago needs nothing at exit, so nothing is stashed.
// Only for syscalls whose record does not depend on their result (no fd, no cwd, no
// root switch, one path): the key is the one finish_record would look up.
static __always_inline int seen_at_entry(struct stash *args) {
    u32 zero = 0;
    struct event_buf *buf = scratch.lookup(&zero);
    if (!buf)
        return 0;
    long n = bpf_probe_read_user_str(buf->path, SNOOP_PATH_MAX, (void *)args->path);
    if (n <= 1 || n >= SNOOP_PATH_MAX || buf->path[0] != '/')
        return 0;  // unreadable now (read again at exit), empty, too long or relative
    u64 first = *(u64 *)buf->path;
    if ((first & BYTES(6)) == W8('/', 'p', 'r', 'o', 'c', '/', 0, 0) ||
        first == W8('/', 'd', 'e', 'v', '/', 'f', 'd', '/'))
        return 0;  // perhaps magic: the exit stages know
    u32 len = (u32)(n - 1) & (SNOOP_PATH_MAX - 1);
    struct dedup_key key = {};
    key.cgroup_id = bpf_get_current_cgroup_id();
    key.hash = hash_path(buf, len);
    key.len = len;
    key.kind = args->kind;
    struct dedup_value *last = dedup.lookup(&key);
    if (!last || now_ns() - last->sent_at >= DEDUP_TTL_NS)
        return 0;
    count(STAT_DEDUP_HITS);
    return 1;
}

int enter_stage(void *ctx) {
    struct stage *st = current_stage();
    if (!st)
        return 0;
    struct stash args = st->args;
    if (!seen_at_entry(&args))
        put_stash(&args);
    return 0;
}

// One path, its record independent of the result: decided at entry where it can be.
static __always_inline int stash_path(void *ctx, u8 kind, u16 syscall, s32 dirfd,
                                      u64 path) {
    if (kind == KIND_CHDIR || is_root_switch(syscall))
        return stash_args(kind, syscall, dirfd, path, 0, 0, 0, 0, 0);
    u64 cgroup_id;
    if (!should_trace(&cgroup_id))
        return 0;
    struct stage *st = current_stage();
    if (!st)
        return 0;
    struct stash entry = {};
    entry.path = path;
    entry.dirfd = dirfd;
    entry.syscall = syscall;
    entry.kind = kind;
    st->args = entry;
    stage_progs.call(ctx, STAGE_ENTER);
    put_stash(&entry);  // the tail call failed: the exit decides
    return 0;
}

static __always_inline int stash_open(u16 syscall, s32 dirfd, u64 path, u64 flags,
                                      u64 resolve) {
    u8 opts = STASH_RETURNS_FD | ((flags & O_CLOEXEC_BIT) ? STASH_CLOEXEC : 0);
    return stash_args(kind_from_open_flags(flags), syscall, dirfd, path, opts,
                      (u8)(resolve & RESOLVE_MASK), 0, 0, 0);
}

// SCM_RIGHTS in a user msghdr: {name, namelen, iov, iovlen, control @32, controllen @40}
// and a cmsghdr {len, level, type} before the fds. Returns how many fds it holds (up to
// PASS_MAX), with them in fds[]; 0 when there are none.
#define SOL_SOCKET_VALUE 1
#define SCM_RIGHTS_VALUE 1
static __always_inline u32 rights_in(u64 msg, s32 *fds_out) {
    u64 control = 0, controllen = 0;
    bpf_probe_read_user(&control, 8, (void *)(msg + 32));
    bpf_probe_read_user(&controllen, 8, (void *)(msg + 40));
    if (!control || controllen < 20)
        return 0;
    struct {
        u64 len;
        s32 level;
        s32 type;
    } cmsg = {};
    if (bpf_probe_read_user(&cmsg, sizeof(cmsg), (void *)control) != 0)
        return 0;
    if (cmsg.level != SOL_SOCKET_VALUE || cmsg.type != SCM_RIGHTS_VALUE || cmsg.len < 20)
        return 0;
    u32 count = (cmsg.len - 16) / 4;
    if (count > PASS_MAX)
        count = PASS_MAX + 1;  // more than can be carried: the receiver asks /proc
    if (bpf_probe_read_user(fds_out, PASS_MAX * sizeof(s32), (void *)(control + 16)) != 0)
        return 0;
    return count;
}

// sendmsg on a socketpair end with SCM_RIGHTS: what the fds stand for goes to the
// other end. One message at a time: a second one before the first was received makes
// both ambiguous, and the receiver asks /proc instead.
static __always_inline void send_fds(struct proc *p, s32 fd, u64 msg) {
    int old_root = 0;
    struct fd_value *end = fd_find(p, fd, &old_root);
    if (!end || !end->sock)
        return;
    u64 other = end->sock ^ 1;
    s32 sent[PASS_MAX] = {};
    u32 count = rights_in(msg, sent);
    if (!count)
        return;
    struct passing *waiting = passings.lookup(&other);
    if (waiting) {
        waiting->ambiguous = 1;
        return;
    }
    struct passing fresh = {};
    fresh.count = count;
#pragma unroll
    for (int i = 0; i < PASS_MAX; i++) {
        if (i < count)
            fresh.bases[i] = fd_lookup(p, sent[i], &old_root);
    }
    passings.update(&other, &fresh);
}

static __always_inline void receive_fds(struct proc *p, s32 fd, u64 msg) {
    int old_root = 0;
    struct fd_value *end = fd_find(p, fd, &old_root);
    if (!end || !end->sock)
        return;
    u64 sock = end->sock;
    s32 got[PASS_MAX] = {};
    u32 count = rights_in(msg, got);
    if (!count)
        return;
    struct passing *waiting = passings.lookup(&sock);
    int known = waiting && !waiting->ambiguous && waiting->count == count &&
                count <= PASS_MAX;
    u64 files = p->files;
#pragma unroll
    for (int i = 0; i < PASS_MAX; i++) {
        if (i < count)
            fd_put(files, got[i], known ? waiting->bases[i & (PASS_MAX - 1)] : 0, 0);
    }
    passings.delete(&sock);
}

static __always_inline void model_exit(void *ctx, struct stash *args, s64 ret) {
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    u32 pid = (u32)bpf_get_current_pid_tgid();
    struct proc *p = get_proc(tgid);
    if (!p)
        return;
    if (args->kind == KIND_DUP) {
        int old_root = 0;
        if (ret >= 0 && ret != args->dirfd) {
            struct fd_value *from = fd_find(p, args->dirfd, &old_root);
            u64 base = from ? from->base : 0;
            u64 sock = from ? from->sock : 0;
            fd_put_entry(p->files, (s32)ret, base, sock, (u32)args->arg);
        }
    } else if (args->kind == KIND_FCHDIR) {
        if (ret == 0) {
            int old_root = 0;
            u64 base = fd_base(ctx, bpf_get_current_cgroup_id(), p, tgid, args->dirfd, &old_root);
            u64 fs = p->fs;
            if (base && !old_root)
                cwd_put(fs, base);
            else
                cwds.delete(&fs);  // an fd from before a chroot: ask /proc
        }
    } else if (args->kind == KIND_SOCKETPAIR && ret == 0) {
        int sv[2] = {};
        if (bpf_probe_read_user(sv, sizeof(sv), (void *)args->arg) == 0) {
            u64 pair = new_serial() << 1;
            fd_put_entry(p->files, sv[0], 0, pair, 0);
            fd_put_entry(p->files, sv[1], 0, pair | 1, 0);
        }
    } else if (args->kind == KIND_RECVMSG && ret >= 0) {
        receive_fds(p, args->dirfd, args->arg);
    } else if (args->kind == KIND_UNSHARE && ret == 0) {
        if (args->arg & (CLONE_FS_BIT | CLONE_NEWNS_BIT | CLONE_FILES_BIT)) {
            if (pid != tgid) {
                p->uncertain = 1;  // one thread of several left the shared state
                return;
            }
            if (args->arg & (CLONE_FS_BIT | CLONE_NEWNS_BIT))
                copy_fs(p);
            if (args->arg & CLONE_FILES_BIT)
                copy_files(p, 0, 1, 0);
        }
    }
}

// At sys_exit the kernel has already copied (and so faulted in) the path's user page,
// which a read at sys_enter cannot do: a new process's first openat often has its path
// in a page that is not resident yet. So paths are read here.
//
// Each hooked syscall has its own exit tracepoint, so a syscall Snoop does not hook
// costs nothing, and the one program every exit runs is this lookup: the work is a tail
// call away, verified once.
static __always_inline int on_sys_exit(void *ctx, s64 ret) {
    u64 pid_tgid = bpf_get_current_pid_tgid();
    if (!traced_now(bpf_get_current_cgroup_id(), pid_tgid >> 32))
        return 0;  // nothing stashed (a verdict changed since the entry: its stash waits)
    u32 tid = (u32)pid_tgid;
    struct stash *entry = inflight.lookup(&tid);
    if (!entry || !entry->live)
        return 0;
    struct stage *st = current_stage();
    entry->live = 0;  // left in place: an update and a delete per syscall cost more
    if (!st)
        return 0;
    st->args = *entry;
    st->ret = ret;
    stage_progs.call(ctx, STAGE_EXIT);
    return 0;
}

int exit_stage(void *ctx) {
    struct stage *st = current_stage();
    if (!st)
        return 0;
    struct stash *args = &st->args;
    s64 ret = st->ret;
    if (args->kind == KIND_CLONE)
        return 0;  // read by sched_process_fork
    if (args->kind >= KIND_FORK) {
        stage_progs.call(ctx, STAGE_MODEL);
        return 0;
    }
    if ((args->opts & STASH_EXEC) && ret >= 0)
        return 0;  // it ran: sched_process_exec has the name
    st->after = AFTER_STASHED;
    st->base_record = ((args->opts & STASH_RETURNS_FD) && ret >= 0) ||
                      (args->kind == KIND_CHDIR && ret == 0);
    if (!prepare_path(ctx, st, bpf_get_current_cgroup_id(), args->kind, args->syscall,
                      args->dirfd, args->path, ret, args->resolve, NULL)) {
        after_stashed(st, 0);  // an open whose path is unknown: its fd is unknown too
        if (args->path2)
            stage_progs.call(ctx, STAGE_PATH2);
        return 0;
    }
    stage_progs.call(ctx, STAGE_MAGIC);
    return 0;
}

int stage_path2(void *ctx) {
    struct stage *st = current_stage();
    if (!st)
        return 0;
    st->after = AFTER_NOTHING;
    st->base_record = 0;
    if (prepare_path(ctx, st, bpf_get_current_cgroup_id(), st->args.kind2, st->args.syscall,
                     st->args.dirfd2, st->args.path2, st->ret, 0, NULL))
        stage_progs.call(ctx, STAGE_MAGIC);
    return 0;
}

int stage_model(void *ctx) {
    struct stage *st = current_stage();
    if (!st)
        return 0;
    struct stash args = st->args;
    model_exit(ctx, &args, st->ret);
    return 0;
}

// Exec paths are read at entry: at exit the old memory is gone, and the record of an
// exec that ran would come too late. Its outcome is not known yet (user space sees ret 0
// from an exec syscall as "not known"): one that ran is sched_process_exec's record, and
// one that failed is sent again at exit with its errno, so a failed PATH lookup shows as
// one. A name unreadable here (its page not yet mapped in a fresh child) is read then too.
static __always_inline int on_exec_enter(void *ctx, u16 syscall, s32 dirfd, u64 path) {
    u64 cgroup_id;
    if (!should_trace(&cgroup_id))
        return 0;
    struct stage *st = current_stage();
    if (!st)
        return 0;
    stash_args(KIND_EXEC, syscall, dirfd, path, STASH_EXEC, 0, 0, 0, 0);
    st->after = AFTER_NOTHING;
    st->base_record = 0;
    int read_failed = 0;
    if (prepare_path(ctx, st, cgroup_id, KIND_EXEC, syscall, dirfd, path, 0, 0, &read_failed))
        stage_progs.call(ctx, STAGE_MAGIC);
    return 0;
}

#define EXIT_PROBE(NAME)                                                               \
    TRACEPOINT_PROBE(syscalls, sys_exit_##NAME) {                                      \
        return on_sys_exit(args, (s64)args->ret);                                      \
    }

// One path: PROBE1(name, kind, dirfd expression, path field, unused).
#define PROBE1(NAME, KIND, DIRFD, PATH, UNUSED)                                        \
    TRACEPOINT_PROBE(syscalls, sys_enter_##NAME) {                                     \
        return stash_path(args, KIND, SYS_IDX_##NAME, (s32)(DIRFD), (u64)args->PATH);  \
    }                                                                                   \
    EXIT_PROBE(NAME)

// Two paths (rename, link): PROBE2(name, kind, dirfd1, path1, kind2, dirfd2, path2).
#define PROBE2(NAME, KIND, DIRFD, PATH, KIND2, DIRFD2, PATH2)                          \
    TRACEPOINT_PROBE(syscalls, sys_enter_##NAME) {                                     \
        return stash_args(KIND, SYS_IDX_##NAME, (s32)(DIRFD), (u64)args->PATH, 0, 0,   \
                          (s32)(DIRFD2), (u64)args->PATH2, KIND2);                     \
    }                                                                                   \
    EXIT_PROBE(NAME)

// Opens: OPEN_PROBE(name, dirfd, path field, open flags, openat2 resolve flags).
#define OPEN_PROBE(NAME, DIRFD, PATH, FLAGS, RESOLVE)                                  \
    TRACEPOINT_PROBE(syscalls, sys_enter_##NAME) {                                     \
        return stash_open(SYS_IDX_##NAME, (s32)(DIRFD), (u64)args->PATH, (u64)(FLAGS), \
                          (u64)(RESOLVE));                                             \
    }                                                                                   \
    EXIT_PROBE(NAME)

#define CWD AT_FDCWD_VALUE

#ifdef HAVE_open
OPEN_PROBE(open, CWD, filename, args->flags, 0)
#endif
#ifdef HAVE_creat
OPEN_PROBE(creat, CWD, pathname, O_CREAT_BIT | O_TRUNC_BIT | 1, 0)
#endif
#ifdef HAVE_openat
OPEN_PROBE(openat, args->dfd, filename, args->flags, 0)
#endif
#ifdef HAVE_openat2
// struct open_how {u64 flags; u64 mode; u64 resolve;} is user memory, not a kernel struct.
static __always_inline u64 open_how_field(const void *how, u32 offset) {
    u64 value = 0;
    bpf_probe_read_user(&value, sizeof(value), (const char *)how + offset);
    return value;
}
OPEN_PROBE(openat2, args->dfd, filename, open_how_field(args->how, 0),
           open_how_field(args->how, 16))
#endif
#ifdef HAVE_execve
TRACEPOINT_PROBE(syscalls, sys_enter_execve) {
    return on_exec_enter(args, SYS_IDX_execve, CWD, (u64)args->filename);
}
EXIT_PROBE(execve)
#endif
#ifdef HAVE_execveat
TRACEPOINT_PROBE(syscalls, sys_enter_execveat) {
    return on_exec_enter(args, SYS_IDX_execveat, (s32)args->fd, (u64)args->filename);
}
EXIT_PROBE(execveat)
#endif
#ifdef HAVE_newstat
PROBE1(newstat, KIND_STAT, CWD, filename, 0)
#endif
#ifdef HAVE_newlstat
PROBE1(newlstat, KIND_STAT, CWD, filename, 0)
#endif
#ifdef HAVE_newfstatat
PROBE1(newfstatat, KIND_STAT, args->dfd, filename, 0)
#endif
#ifdef HAVE_statx
PROBE1(statx, KIND_STAT, args->dfd, filename, 0)
#endif
#ifdef HAVE_access
PROBE1(access, KIND_ACCESS, CWD, filename, 0)
#endif
#ifdef HAVE_faccessat
PROBE1(faccessat, KIND_ACCESS, args->dfd, filename, 0)
#endif
#ifdef HAVE_faccessat2
PROBE1(faccessat2, KIND_ACCESS, args->dfd, filename, 0)
#endif
#ifdef HAVE_readlink
PROBE1(readlink, KIND_READLINK, CWD, path, 0)
#endif
#ifdef HAVE_readlinkat
PROBE1(readlinkat, KIND_READLINK, args->dfd, pathname, 0)
#endif
#ifdef HAVE_chdir
PROBE1(chdir, KIND_CHDIR, CWD, filename, 0)
#endif
#ifdef HAVE_fchdir
TRACEPOINT_PROBE(syscalls, sys_enter_fchdir) {
    return stash_model(KIND_FCHDIR, SYS_IDX_fchdir, (s32)args->fd, 0);
}
EXIT_PROBE(fchdir)
#endif
#ifdef HAVE_chroot
PROBE1(chroot, KIND_STAT, CWD, filename, 0)
#endif
#ifdef HAVE_truncate
PROBE1(truncate, KIND_TRUNCATE, CWD, path, 0)
#endif
#ifdef HAVE_statfs
PROBE1(statfs, KIND_STATFS, CWD, pathname, 0)
#endif
#ifdef HAVE_getxattr
PROBE1(getxattr, KIND_XATTR, CWD, pathname, 0)
#endif
#ifdef HAVE_lgetxattr
PROBE1(lgetxattr, KIND_XATTR, CWD, pathname, 0)
#endif
#ifdef HAVE_listxattr
PROBE1(listxattr, KIND_XATTR, CWD, pathname, 0)
#endif
#ifdef HAVE_llistxattr
PROBE1(llistxattr, KIND_XATTR, CWD, pathname, 0)
#endif
#ifdef HAVE_getxattrat
PROBE1(getxattrat, KIND_XATTR, args->dfd, pathname, 0)
#endif
#ifdef HAVE_listxattrat
PROBE1(listxattrat, KIND_XATTR, args->dfd, pathname, 0)
#endif
#ifdef HAVE_setxattr
PROBE1(setxattr, KIND_XATTR, CWD, pathname, 0)
#endif
#ifdef HAVE_lsetxattr
PROBE1(lsetxattr, KIND_XATTR, CWD, pathname, 0)
#endif
#ifdef HAVE_removexattr
PROBE1(removexattr, KIND_XATTR, CWD, pathname, 0)
#endif
#ifdef HAVE_lremovexattr
PROBE1(lremovexattr, KIND_XATTR, CWD, pathname, 0)
#endif
#ifdef HAVE_mkdir
PROBE1(mkdir, KIND_MKDIR, CWD, pathname, 0)
#endif
#ifdef HAVE_mkdirat
PROBE1(mkdirat, KIND_MKDIR, args->dfd, pathname, 0)
#endif
#ifdef HAVE_rmdir
PROBE1(rmdir, KIND_UNLINK, CWD, pathname, 0)
#endif
#ifdef HAVE_unlink
PROBE1(unlink, KIND_UNLINK, CWD, pathname, 0)
#endif
#ifdef HAVE_unlinkat
PROBE1(unlinkat, KIND_UNLINK, args->dfd, pathname, 0)
#endif
#ifdef HAVE_rename
PROBE2(rename, KIND_RENAME, CWD, oldname, KIND_RENAME, CWD, newname)
#endif
#ifdef HAVE_renameat
PROBE2(renameat, KIND_RENAME, args->olddfd, oldname, KIND_RENAME, args->newdfd, newname)
#endif
#ifdef HAVE_renameat2
PROBE2(renameat2, KIND_RENAME, args->olddfd, oldname, KIND_RENAME, args->newdfd, newname)
#endif
#ifdef HAVE_link
PROBE2(link, KIND_LINK, CWD, oldname, KIND_LINK, CWD, newname)
#endif
#ifdef HAVE_linkat
PROBE2(linkat, KIND_LINK, args->olddfd, oldname, KIND_LINK, args->newdfd, newname)
#endif
// A symlink's target text is not a path the process touched; its new name is.
#ifdef HAVE_symlink
PROBE1(symlink, KIND_LINK, CWD, newname, 0)
#endif
#ifdef HAVE_symlinkat
PROBE1(symlinkat, KIND_LINK, args->newdfd, newname, 0)
#endif
#ifdef HAVE_chmod
PROBE1(chmod, KIND_CHMOD, CWD, filename, 0)
#endif
#ifdef HAVE_fchmodat
PROBE1(fchmodat, KIND_CHMOD, args->dfd, filename, 0)
#endif
#ifdef HAVE_fchmodat2
PROBE1(fchmodat2, KIND_CHMOD, args->dfd, filename, 0)
#endif
#ifdef HAVE_chown
PROBE1(chown, KIND_CHOWN, CWD, filename, 0)
#endif
#ifdef HAVE_lchown
PROBE1(lchown, KIND_CHOWN, CWD, filename, 0)
#endif
#ifdef HAVE_fchownat
PROBE1(fchownat, KIND_CHOWN, args->dfd, filename, 0)
#endif
#ifdef HAVE_utime
PROBE1(utime, KIND_UTIME, CWD, filename, 0)
#endif
#ifdef HAVE_utimes
PROBE1(utimes, KIND_UTIME, CWD, filename, 0)
#endif
#ifdef HAVE_utimensat
PROBE1(utimensat, KIND_UTIME, args->dfd, filename, 0)
#endif
#ifdef HAVE_futimesat
PROBE1(futimesat, KIND_UTIME, args->dfd, filename, 0)
#endif
#ifdef HAVE_mknod
PROBE1(mknod, KIND_MKNOD, CWD, filename, 0)
#endif
#ifdef HAVE_mknodat
PROBE1(mknodat, KIND_MKNOD, args->dfd, filename, 0)
#endif
#ifdef HAVE_name_to_handle_at
PROBE1(name_to_handle_at, KIND_STAT, args->dfd, name, 0)
#endif
#ifdef HAVE_inotify_add_watch
PROBE1(inotify_add_watch, KIND_STAT, CWD, pathname, 0)
#endif
#ifdef HAVE_file_getattr
PROBE1(file_getattr, KIND_STAT, args->dfd, filename, 0)
#endif
#ifdef HAVE_pivot_root
PROBE1(pivot_root, KIND_STAT, CWD, new_root, 0)
#endif
#ifdef HAVE_open_tree
TRACEPOINT_PROBE(syscalls, sys_enter_open_tree) {
    // Its result is an fd (O_PATH-like) that may serve as a dirfd.
    return stash_args(KIND_STAT, SYS_IDX_open_tree, (s32)args->dfd, (u64)args->filename,
                      STASH_RETURNS_FD | ((args->flags & O_CLOEXEC_BIT) ? STASH_CLOEXEC : 0),
                      0, 0, 0, 0);
}
EXIT_PROBE(open_tree)
#endif


// ---------------------------------------------------------------- fd table updates

#define F_DUPFD_CMD 0
#define F_SETFD_CMD 2
#define F_DUPFD_CLOEXEC_CMD 1030
#define FD_CLOEXEC_BIT 1
#ifdef HAVE_fcntl
TRACEPOINT_PROBE(syscalls, sys_enter_fcntl) {
    if (args->cmd == F_DUPFD_CMD || args->cmd == F_DUPFD_CLOEXEC_CMD)
        return stash_model(KIND_DUP, SYS_IDX_fcntl, (s32)args->fd,
                           args->cmd == F_DUPFD_CLOEXEC_CMD);
    if (args->cmd != F_SETFD_CMD)
        return 0;
    struct proc *p = traced_proc();
    if (!p)
        return 0;
    int old_root = 0;
    u64 base = fd_lookup(p, (s32)args->fd, &old_root);
    if (base)
        fd_put(p->files, (s32)args->fd, base, (args->arg & FD_CLOEXEC_BIT) ? 1 : 0);
    return 0;
}
EXIT_PROBE(fcntl)
#endif
#ifdef HAVE_dup
TRACEPOINT_PROBE(syscalls, sys_enter_dup) {
    return stash_model(KIND_DUP, SYS_IDX_dup, (s32)args->fildes, 0);
}
EXIT_PROBE(dup)
#endif
#ifdef HAVE_dup2
TRACEPOINT_PROBE(syscalls, sys_enter_dup2) {
    return stash_model(KIND_DUP, SYS_IDX_dup2, (s32)args->oldfd, 0);
}
EXIT_PROBE(dup2)
#endif
#ifdef HAVE_dup3
TRACEPOINT_PROBE(syscalls, sys_enter_dup3) {
    return stash_model(KIND_DUP, SYS_IDX_dup3, (s32)args->oldfd,
                       (args->flags & O_CLOEXEC_BIT) ? 1 : 0);
}
EXIT_PROBE(dup3)
#endif
// A closed fd number may come back by a way the kernel side does not see (a socket, an
// fd received by SCM_RIGHTS): closing leaves an entry that says "unknown", so a later
// use is minted from /proc rather than taken from a stale table.
#ifdef HAVE_close
TRACEPOINT_PROBE(syscalls, sys_enter_close) {
#ifdef WATCH_CLOSE
    u64 cgroup_id;
    if (!should_trace(&cgroup_id))
        return 0;
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    struct proc *p = get_proc(tgid);
    if (p) {
        int old_root = 0;  // the fd's base if known: /proc cannot tell once it is closed
        send_io(args, cgroup_id, SYS_IDX_close, tgid, (s32)args->fd, 0,
                fd_lookup(p, (s32)args->fd, &old_root));
        fd_put(p->files, (s32)args->fd, 0, 0);
    }
#else
    struct proc *p = traced_proc();
    if (p)
        fd_put(p->files, (s32)args->fd, 0, 0);
#endif
    return 0;
}
#endif
#ifdef HAVE_close_range
TRACEPOINT_PROBE(syscalls, sys_enter_close_range) {
    struct proc *p = traced_proc();
    if (p) {
        u32 hi = args->max_fd > 0x7fffffff ? 0x7fffffff : (u32)args->max_fd;
        copy_files(p, 0, (u32)args->fd, hi);
    }
    return 0;
}
#endif
#ifdef HAVE_socketpair
TRACEPOINT_PROBE(syscalls, sys_enter_socketpair) {
    return stash_model(KIND_SOCKETPAIR, SYS_IDX_socketpair, 0, (u64)args->usockvec);
}
EXIT_PROBE(socketpair)
#endif
#ifdef HAVE_sendmsg
TRACEPOINT_PROBE(syscalls, sys_enter_sendmsg) {
    struct proc *p = traced_proc();
    if (p)
        send_fds(p, (s32)args->fd, (u64)args->msg);
    return 0;
}
#endif
#ifdef HAVE_recvmsg
TRACEPOINT_PROBE(syscalls, sys_enter_recvmsg) {
    return stash_model(KIND_RECVMSG, SYS_IDX_recvmsg, (s32)args->fd, (u64)args->msg);
}
EXIT_PROBE(recvmsg)
#endif
#ifdef HAVE_clone
TRACEPOINT_PROBE(syscalls, sys_enter_clone) {
    return stash_model(KIND_CLONE, SYS_IDX_clone, 0, (u64)args->clone_flags);
}
EXIT_PROBE(clone)
#endif
#ifdef HAVE_clone3
TRACEPOINT_PROBE(syscalls, sys_enter_clone3) {
    u64 flags = 0;  // struct clone_args starts with the flags: user memory
    bpf_probe_read_user(&flags, sizeof(flags), (void *)args->uargs);
    return stash_model(KIND_CLONE, SYS_IDX_clone3, 0, flags);
}
EXIT_PROBE(clone3)
#endif
#ifdef HAVE_unshare
TRACEPOINT_PROBE(syscalls, sys_enter_unshare) {
    return stash_model(KIND_UNSHARE, SYS_IDX_unshare, 0, (u64)args->unshare_flags);
}
EXIT_PROBE(unshare)
#endif

// ---------------------------------------------------------------- processes

// The binary that really ran, with the name the kernel resolved it by.
TRACEPOINT_PROBE(sched, sched_process_exec) {
    u64 cgroup_id;
    if (!should_trace(&cgroup_id))
        return 0;
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    u32 old_tid = (u32)args->old_pid;
    if (old_tid != (u32)args->pid) {
        // A thread other than the leader exec'ed: it now has the leader's tid, and its
        // exec's exit reads the leader's stash. Its own (STASH_EXEC) must not wait live
        // for whoever gets that tid next.
        struct stash *stale = inflight.lookup(&old_tid);
        if (stale)
            stale->live = 0;
    }
    struct stage *st = current_stage();
    struct event_buf *buf = new_event(cgroup_id, KIND_EXEC, SYS_IDX_sched_process_exec,
                                      AT_FDCWD_VALUE, 0);
    if (!st || !buf || !get_proc(tgid))
        return 0;
    buf->hdr.flags = FLAG_FROM_EXEC;
    u32 offset = args->data_loc_filename & 0xFFFF;
    long n = bpf_probe_read_kernel_str(buf->path, SNOOP_PATH_MAX, (char *)args + offset);
    if (n <= 1) {
        if (n <= 0) {
            buf->hdr.flags |= FLAG_READ_FAILED;
            count(STAT_READ_FAILED);
            submit(args, buf, 0);
        }
        after_exec();
        return 0;
    }
    u32 len = (u32)(n - 1) & (SNOOP_PATH_MAX - 1);
    buf->hdr.path_len = len;
    st->len = len;
    st->hash = hash_path(buf, len);
    st->after = AFTER_EXEC;
    st->base_record = 0;
    // execveat names it /dev/fd/N/name: finish_tp looks N up before the exec's copy.
    stage_progs.call(args, STAGE_MAGIC);
    after_exec();  // only reached when the tail call failed
    return 0;
}

TRACEPOINT_PROBE(sched, sched_process_fork) {
    u64 cgroup_id;
    if (!should_trace(&cgroup_id))
        return 0;
    u64 pid_tgid = bpf_get_current_pid_tgid();
    u32 tid = (u32)pid_tgid;
    u32 tgid = pid_tgid >> 32;
    u64 flags = 0;  // fork() and vfork(): a copy of everything
    struct stash *clone = inflight.lookup(&tid);
    if (clone && clone->live && clone->kind == KIND_CLONE)
        flags = clone->arg;
    struct proc *parent = get_proc(tgid);
    if (!parent)
        return 0;
    if (flags & CLONE_THREAD_BIT) {
        if ((flags & (CLONE_FS_BIT | CLONE_FILES_BIT)) != (CLONE_FS_BIT | CLONE_FILES_BIT))
            parent->uncertain = 1;
        return 0;
    }
    // A child that lives a millisecond is gone before /proc could be asked about it;
    // its parent usually lives on: learn the cwd it inherits from the parent.
    int old_root = 0;
    u64 cwd = cwd_base(args, cgroup_id, parent, tgid, &old_root);
    struct proc child = {};
    child.root_stamp = parent->root_stamp;
    child.uncertain = parent->uncertain;
    if (flags & CLONE_FS_BIT) {
        child.fs = parent->fs;
    } else {
        child.fs = new_serial();
        u64 fs = parent->fs;
        struct cwd_entry *entry = cwds.lookup(&fs);
        if (cwd && entry) {
            struct cwd_entry copy = *entry;  // with its stamp: the root may have changed
            cwds.update(&child.fs, &copy);
        }
    }
    if (flags & CLONE_FILES_BIT) {
        child.files = parent->files;
    } else {
        struct files_link link = {};
        link.parent = parent->files;
        link.since = now_ns();
        link.closed_lo = 1;
        child.files = new_serial();
        links.update(&child.files, &link);
    }
    u32 child_pid = args->child_pid;
    procs.update(&child_pid, &child);
    send_note(args, cgroup_id, KIND_FORK, SYS_IDX_sched_process_fork, tgid, AT_FDCWD_VALUE,
              child_pid, new_serial());
    return 0;
}

// Every process's state goes when its last thread does, traced or not: a new process
// that gets the same pid must not inherit it.
TRACEPOINT_PROBE(sched, sched_process_exit) {
    u64 pid_tgid = bpf_get_current_pid_tgid();
    u32 tgid = pid_tgid >> 32;
    u32 tid = (u32)pid_tgid;
    inflight.delete(&tid);  // a thread killed inside a syscall never reached its exit
#ifdef HAVE_GROUP_DEAD
    if (!args->group_dead)
        return 0;
#else
    if ((u32)pid_tgid != tgid)
        return 0;  // a thread; without group_dead the leader's exit stands for the group
#endif
    if (!procs.lookup(&tgid))
        return 0;
    procs.delete(&tgid);
    u64 cgroup_id;
    if (!should_trace(&cgroup_id))
        return 0;
    send_note(args, cgroup_id, KIND_EXIT, SYS_IDX_sched_process_exit, tgid, AT_FDCWD_VALUE, 0,
              new_serial());
    return 0;
}

// ---------------------------------------------------------------- io_uring

#define IORING_OP_OPENAT 18
#define IORING_OP_CLOSE 19
#define IORING_OP_STATX 21
#define IORING_OP_OPENAT2 28
#define IORING_OP_RENAMEAT 35
#define IORING_OP_LINKAT 39
#define IORING_OP_SETXATTR 42
#define IORING_OP_GETXATTR 44
// The request's path is in kernel structs this program may not read: count the requests
// that name paths, per cgroup, so the report can say its list may be incomplete.
static __always_inline int on_uring_submit(u8 op) {
    int names_path = op == IORING_OP_OPENAT || op == IORING_OP_STATX ||
                     op == IORING_OP_OPENAT2 ||
                     (op >= IORING_OP_RENAMEAT && op <= IORING_OP_LINKAT) ||
                     op == IORING_OP_SETXATTR || op == IORING_OP_GETXATTR;
    if (!names_path && op != IORING_OP_CLOSE)
        return 0;
    u64 cgroup_id;
    if (!should_trace(&cgroup_id))
        return 0;
    if (op == IORING_OP_CLOSE) {
        // An fd closed unseen: every entry of the table is in doubt from now on.
        u32 tgid = bpf_get_current_pid_tgid() >> 32;
        struct proc *p = procs.lookup(&tgid);
        if (p)
            copy_files(p, 0, 0, 0x7fffffff);
        return 0;
    }
    u64 *n = uring_path_ops.lookup(&cgroup_id);
    if (n) {
        __sync_fetch_and_add(n, 1);
    } else {
        u64 one = 1;
        uring_path_ops.update(&cgroup_id, &one);
    }
    return 0;
}
#ifdef HAVE_io_uring_submit_req
TRACEPOINT_PROBE(io_uring, io_uring_submit_req) {
    return on_uring_submit(args->opcode);
}
#elif defined(HAVE_io_uring_submit_sqe)
TRACEPOINT_PROBE(io_uring, io_uring_submit_sqe) {  // before 5.19; with an opcode from 5.5
    return on_uring_submit(args->opcode);
}
#endif

// `snoop watch` only: read and write, each with its own exit tracepoint.
#ifdef WATCH_IO
#define WATCH_IO_PROBE(NAME)                                                           \
    TRACEPOINT_PROBE(syscalls, sys_enter_##NAME) {                                     \
        return watch_io_enter(SYS_IDX_##NAME, (s32)args->fd);                          \
    }                                                                                   \
    TRACEPOINT_PROBE(syscalls, sys_exit_##NAME) {                                      \
        return watch_io_exit(args, (s64)args->ret);                                    \
    }
#if defined(WATCH_READ) && defined(HAVE_read)
WATCH_IO_PROBE(read)
#endif
#if defined(WATCH_READ) && defined(HAVE_pread64)
WATCH_IO_PROBE(pread64)
#endif
#if defined(WATCH_READ) && defined(HAVE_readv)
WATCH_IO_PROBE(readv)
#endif
#if defined(WATCH_WRITE) && defined(HAVE_write)
WATCH_IO_PROBE(write)
#endif
#if defined(WATCH_WRITE) && defined(HAVE_pwrite64)
WATCH_IO_PROBE(pwrite64)
#endif
#if defined(WATCH_WRITE) && defined(HAVE_writev)
WATCH_IO_PROBE(writev)
#endif
#endif
