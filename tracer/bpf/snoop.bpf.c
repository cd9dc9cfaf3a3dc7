// Snoop's kernel side: every path-taking syscall of the target cgroups, deduplicated,
// as variable-length records in one ring buffer.
//
// Compiled by bcc at tracer start. The loader passes, with -D:
//   HAVE_<syscall>       for each syscall tracepoint this kernel has (others are skipped)
//   SYS_IDX_<syscall>    the syscall's index in the tracer's syscall table (for metrics)
//   RINGBUF_PAGES, DEDUP_ENTRIES, DEDUP_TTL_NS, MAX_CGROUP_LEVELS, WAKEUP_EVERY
//
// Rules: no kernel struct is ever read (bcc compiles against whatever headers are
// installed, which may not match the running kernel): only tracepoint arguments, user
// memory and BPF helpers. The record layout below is mirrored once in tracer/records.py;
// tests/tracer/test_records.py checks the two agree.

#define SNOOP_PATH_MAX 4096
#define AT_FDCWD_VALUE -100

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
// Process life cycle records, for the tracer's cwd and fd model; never reported as files.
#define KIND_FORK 100
#define KIND_EXIT 101
#define KIND_DUP 102  // ret is a new fd for the same file as dirfd

// Record flags.
#define FLAG_READ_FAILED 1  // the path could not be read from user memory
#define FLAG_TRUNCATED 2    // the string filled SNOOP_PATH_MAX (the kernel rejects it too)
#define FLAG_FROM_EXEC 4    // from sched_process_exec: the binary that really ran

// Counter slots (per CPU).
#define STAT_SUBMITTED 0
#define STAT_RINGBUF_FULL 1
#define STAT_READ_FAILED 2
#define STAT_DEDUP_HITS 3
#define STAT_STASH_FULL 4
#define STAT_SLOTS 8

#define O_ACCMODE_BITS 3
#define O_CREAT_BIT 0100
#define O_TRUNC_BIT 01000
#define O_APPEND_BIT 02000

struct event_hdr {
    u64 cgroup_id;
    u32 pid;       // thread id
    u32 tgid;      // process id
    s64 ret;       // syscall return value (an fd for opens); child pid for KIND_FORK
    s32 dirfd;     // AT_FDCWD (-100) or the fd a relative path is relative to
    u16 path_len;  // bytes of path following the header, without the NUL
    u8 kind;
    u8 flags;
    u16 syscall;   // SYS_IDX_* of the syscall
    u16 reserved;
    u32 reserved2;
};

struct event_buf {
    struct event_hdr hdr;
    char path[SNOOP_PATH_MAX];
};

// Syscall arguments kept from sys_enter to sys_exit, per thread.
struct stash {
    u64 path;
    u64 path2;
    s32 dirfd;
    s32 dirfd2;
    u16 syscall;
    u8 kind;
    u8 kind2;
};

struct dedup_key {
    u64 cgroup_id;
    u64 hash;
    u32 tgid;   // only for relative paths, which mean something else in another process
    u32 gen;    // cwd generation of tgid, for cwd-relative paths
    u16 len;
    u8 kind;
    u8 pad[5];
};

BPF_RINGBUF_OUTPUT(events, RINGBUF_PAGES);
BPF_PERCPU_ARRAY(scratch, struct event_buf, 1);
BPF_PERCPU_ARRAY(counters, u64, STAT_SLOTS);
BPF_PERCPU_ARRAY(wakeup_count, u32, 1);
// Target cgroup ids: 1 = trace it and its descendants, 2 = exclude it and its descendants.
BPF_HASH(targets, u64, u8, 4096);
// Cached verdict per cgroup id: (generation << 8) | verdict. Stale generations recompute.
BPF_TABLE("lru_hash", u64, u64, verdicts, 16384);
BPF_ARRAY(generation, u64, 1);
BPF_HASH(excluded_tgids, u32, u8, 1024);
// control[0] != 0: paused. Detaching a hundred tracepoints takes seconds (an RCU grace
// period each); pausing first makes a stop instant, so the final drain is complete.
BPF_ARRAY(control, u32, 1);
BPF_TABLE("lru_hash", u32, struct stash, inflight, 16384);
BPF_TABLE("lru_hash", u32, u32, cwd_gen, 65536);
BPF_TABLE("lru_hash", struct dedup_key, u64, dedup, DEDUP_ENTRIES);
// Never written: lets the tests read bcc's own view of the record layout.
BPF_ARRAY(event_layout, struct event_hdr, 1);

static __always_inline void count(u32 slot) {
    u64 *value = counters.lookup(&slot);
    if (value)
        *value += 1;
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
    u64 value = (gen << 8) | verdict;
    verdicts.update(&cgroup_id, &value);
    return verdict == 1;
}

static __always_inline int should_trace(u64 *cgroup_id) {
    u32 zero = 0;
    u32 *paused = control.lookup(&zero);
    if (paused && *paused)
        return 0;
    *cgroup_id = bpf_get_current_cgroup_id();
    if (!cgroup_traced(*cgroup_id))
        return 0;
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    return excluded_tgids.lookup(&tgid) == NULL;
}

static __always_inline u8 kind_from_open_flags(u64 flags) {
    if ((flags & O_ACCMODE_BITS) != 0 || (flags & (O_CREAT_BIT | O_TRUNC_BIT | O_APPEND_BIT)))
        return KIND_WRITE;
    return KIND_READ;
}

// FNV-1a over 8-byte words of the len bytes read; bytes past len are masked off.
static __always_inline u64 hash_path(struct event_buf *buf, u32 len) {
    u64 hash = 14695981039346656037ULL;
#pragma clang loop unroll(disable)
    for (u32 i = 0; i < SNOOP_PATH_MAX / 8; i++) {
        u32 offset = i * 8;
        if (offset >= len)
            break;
        u64 word = 0;
        bpf_probe_read_kernel(&word, 8, &buf->path[offset & (SNOOP_PATH_MAX - 8)]);
        u32 remaining = len - offset;
        if (remaining < 8)
            word &= (1ULL << (remaining * 8)) - 1;
        hash ^= word;
        hash *= 1099511628211ULL;
    }
    return hash;
}

// True when this (cgroup, kind, path) was sent less than DEDUP_TTL_NS ago.
static __always_inline int recently_sent(struct event_buf *buf, u32 len) {
    if (buf->hdr.flags & FLAG_READ_FAILED)
        return 0;
    struct dedup_key key = {};
    key.cgroup_id = buf->hdr.cgroup_id;
    key.len = len;
    key.kind = buf->hdr.kind;
    if (buf->path[0] != '/') {
        // A path relative to a dirfd means something else once the fd number is
        // reused, so those are never deduplicated. Cwd-relative ones are, per process
        // and cwd generation (bumped by every successful chdir/fchdir).
        if (buf->hdr.dirfd != AT_FDCWD_VALUE)
            return 0;
        key.tgid = buf->hdr.tgid;
        u32 *gen = cwd_gen.lookup(&key.tgid);
        key.gen = gen ? *gen : 0;
    }
    key.hash = hash_path(buf, len);
    u64 now = bpf_ktime_get_ns();
    u64 *last = dedup.lookup(&key);
    if (last && now - *last < DEDUP_TTL_NS) {
        count(STAT_DEDUP_HITS);
        return 1;
    }
    dedup.update(&key, &now);
    return 0;
}

static __always_inline void submit(struct event_buf *buf, u32 len) {
    u32 size = sizeof(struct event_hdr) + (len & (SNOOP_PATH_MAX - 1));
    if (size > sizeof(struct event_buf))
        return;
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
    if (events.ringbuf_output(buf, size, wake) < 0)
        count(STAT_RINGBUF_FULL);
    else
        count(STAT_SUBMITTED);
}

static __always_inline struct event_buf *new_event(u64 cgroup_id, u8 kind, u16 syscall,
                                                    s32 dirfd, s64 ret) {
    u32 zero = 0;
    struct event_buf *buf = scratch.lookup(&zero);
    if (!buf)
        return NULL;
    u64 pid_tgid = bpf_get_current_pid_tgid();
    buf->hdr.cgroup_id = cgroup_id;
    buf->hdr.pid = (u32)pid_tgid;
    buf->hdr.tgid = pid_tgid >> 32;
    buf->hdr.ret = ret;
    buf->hdr.dirfd = dirfd;
    buf->hdr.path_len = 0;
    buf->hdr.kind = kind;
    buf->hdr.flags = 0;
    buf->hdr.syscall = syscall;
    buf->hdr.reserved = 0;
    buf->hdr.reserved2 = 0;
    return buf;
}

// Copy the user string into the scratch buffer; returns its length without the NUL.
static __always_inline u32 read_user_path(struct event_buf *buf, u64 user_ptr) {
    long n = bpf_probe_read_user_str(buf->path, SNOOP_PATH_MAX, (void *)user_ptr);
    if (n <= 0) {
        buf->hdr.flags |= FLAG_READ_FAILED;
        count(STAT_READ_FAILED);
        return 0;
    }
    if (n >= SNOOP_PATH_MAX)
        buf->hdr.flags |= FLAG_TRUNCATED;
    u32 len = (u32)(n - 1) & (SNOOP_PATH_MAX - 1);
    buf->hdr.path_len = len;
    return len;
}

static __always_inline void emit_path(u64 cgroup_id, u8 kind, u16 syscall, s32 dirfd,
                                      u64 user_ptr, s64 ret) {
    struct event_buf *buf = new_event(cgroup_id, kind, syscall, dirfd, ret);
    if (!buf)
        return;
    u32 len = user_ptr ? read_user_path(buf, user_ptr) : 0;  // fchdir has no path
    if (len == 0 && !(buf->hdr.flags & FLAG_READ_FAILED) && kind != KIND_CHDIR &&
        kind != KIND_DUP) {
        // An empty path with AT_EMPTY_PATH is fstat() and friends on an open fd, whose
        // path was recorded when it was opened. (fexecve is covered by sched_process_exec.)
        return;
    }
    if (len > 0 && recently_sent(buf, len))
        return;
    submit(buf, len);
}

static __always_inline int stash_args(u8 kind, u16 syscall, s32 dirfd, u64 path, u64 flags,
                                      s32 dirfd2, u64 path2, u8 kind2) {
    u64 cgroup_id;
    if (!should_trace(&cgroup_id))
        return 0;
    struct stash entry = {};
    entry.path = path;
    entry.path2 = path2;
    entry.dirfd = dirfd;
    entry.dirfd2 = dirfd2;
    entry.syscall = syscall;
    entry.kind = kind == KIND_FROM_FLAGS ? kind_from_open_flags(flags) : kind;
    entry.kind2 = kind2;
    u32 tid = (u32)bpf_get_current_pid_tgid();
    if (inflight.update(&tid, &entry) != 0)
        count(STAT_STASH_FULL);
    return 0;
}

// At sys_exit the kernel has already copied (and so faulted in) the path's user page,
// which a read at sys_enter cannot do: a new process's first openat often has its path
// in a page that is not resident yet. So paths are read here.
static __always_inline int emit_stashed(s64 ret) {
    u32 tid = (u32)bpf_get_current_pid_tgid();
    struct stash *entry = inflight.lookup(&tid);
    if (!entry)
        return 0;
    struct stash args = *entry;
    inflight.delete(&tid);
    u64 cgroup_id = bpf_get_current_cgroup_id();
    if (args.kind == KIND_CHDIR && ret == 0) {
        u32 tgid = bpf_get_current_pid_tgid() >> 32;
        u32 *gen = cwd_gen.lookup(&tgid);
        u32 next = gen ? *gen + 1 : 1;
        cwd_gen.update(&tgid, &next);
    }
    if (args.kind == KIND_DUP && ret < 0)
        return 0;
    if (args.path || args.kind == KIND_CHDIR || args.kind == KIND_DUP)
        emit_path(cgroup_id, args.kind, args.syscall, args.dirfd, args.path, ret);
    if (args.path2)
        emit_path(cgroup_id, args.kind2, args.syscall, args.dirfd2, args.path2, ret);
    return 0;
}

// Exec paths are read at entry: at exit the old memory is gone. A read that fails here
// is covered by sched_process_exec, which carries the file name in the tracepoint.
static __always_inline int on_exec_enter(u16 syscall, s32 dirfd, u64 path) {
    u64 cgroup_id;
    if (!should_trace(&cgroup_id))
        return 0;
    emit_path(cgroup_id, KIND_EXEC, syscall, dirfd, path, 0);
    return 0;
}

// One path: PROBE1(name, kind, dirfd expression, path field, open-flags expression).
#define PROBE1(NAME, KIND, DIRFD, PATH, FLAGS)                                         \
    TRACEPOINT_PROBE(syscalls, sys_enter_##NAME) {                                     \
        return stash_args(KIND, SYS_IDX_##NAME, (s32)(DIRFD), (u64)args->PATH,         \
                          (u64)(FLAGS), 0, 0, 0);                                      \
    }

// Two paths (rename, link): PROBE2(name, kind, dirfd1, path1, kind2, dirfd2, path2).
#define PROBE2(NAME, KIND, DIRFD, PATH, KIND2, DIRFD2, PATH2)                          \
    TRACEPOINT_PROBE(syscalls, sys_enter_##NAME) {                                     \
        return stash_args(KIND, SYS_IDX_##NAME, (s32)(DIRFD), (u64)args->PATH, 0,      \
                          (s32)(DIRFD2), (u64)args->PATH2, KIND2);                     \
    }

#define CWD AT_FDCWD_VALUE

#ifdef HAVE_open
PROBE1(open, KIND_FROM_FLAGS, CWD, filename, args->flags)
#endif
#ifdef HAVE_creat
PROBE1(creat, KIND_WRITE, CWD, pathname, 0)
#endif
#ifdef HAVE_openat
PROBE1(openat, KIND_FROM_FLAGS, args->dfd, filename, args->flags)
#endif
#ifdef HAVE_openat2
// open_how.flags is the first u64 of a user struct: user memory, not a kernel struct.
static __always_inline u64 openat2_flags(const void *how) {
    u64 flags = 0;
    bpf_probe_read_user(&flags, sizeof(flags), how);
    return flags;
}
PROBE1(openat2, KIND_FROM_FLAGS, args->dfd, filename, openat2_flags(args->how))
#endif
#ifdef HAVE_execve
TRACEPOINT_PROBE(syscalls, sys_enter_execve) {
    return on_exec_enter(SYS_IDX_execve, CWD, (u64)args->filename);
}
#endif
#ifdef HAVE_execveat
TRACEPOINT_PROBE(syscalls, sys_enter_execveat) {
    return on_exec_enter(SYS_IDX_execveat, (s32)args->fd, (u64)args->filename);
}
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
    return stash_args(KIND_CHDIR, SYS_IDX_fchdir, (s32)args->fd, 0, 0, 0, 0, 0);
}
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
PROBE1(open_tree, KIND_STAT, args->dfd, filename, 0)
#endif

// One exit hook for every syscall: a raw tracepoint costs a few ns on syscalls with no
// stashed entry, and one hook instead of one per syscall keeps a stop fast (detaching
// each tracepoint waits for an RCU grace period). Its second argument is the return value.
RAW_TRACEPOINT_PROBE(sys_exit) {
    return emit_stashed((s64)ctx->args[1]);
}

// Duplicated fds: `find` walks with dirfds it copies with fcntl(F_DUPFD_CLOEXEC).
#define F_DUPFD_CMD 0
#define F_DUPFD_CLOEXEC_CMD 1030
#ifdef HAVE_fcntl
TRACEPOINT_PROBE(syscalls, sys_enter_fcntl) {
    if (args->cmd != F_DUPFD_CMD && args->cmd != F_DUPFD_CLOEXEC_CMD)
        return 0;
    return stash_args(KIND_DUP, SYS_IDX_fcntl, (s32)args->fd, 0, 0, 0, 0, 0);
}
#endif
#ifdef HAVE_dup
TRACEPOINT_PROBE(syscalls, sys_enter_dup) {
    return stash_args(KIND_DUP, SYS_IDX_dup, (s32)args->fildes, 0, 0, 0, 0, 0);
}
#endif
#ifdef HAVE_dup2
TRACEPOINT_PROBE(syscalls, sys_enter_dup2) {
    return stash_args(KIND_DUP, SYS_IDX_dup2, (s32)args->oldfd, 0, 0, 0, 0, 0);
}
#endif
#ifdef HAVE_dup3
TRACEPOINT_PROBE(syscalls, sys_enter_dup3) {
    return stash_args(KIND_DUP, SYS_IDX_dup3, (s32)args->oldfd, 0, 0, 0, 0, 0);
}
#endif

// The binary that really ran, with the name the kernel resolved it by.
TRACEPOINT_PROBE(sched, sched_process_exec) {
    u64 cgroup_id;
    if (!should_trace(&cgroup_id))
        return 0;
    struct event_buf *buf = new_event(cgroup_id, KIND_EXEC, SYS_IDX_sched_process_exec,
                                      AT_FDCWD_VALUE, 0);
    if (!buf)
        return 0;
    buf->hdr.flags = FLAG_FROM_EXEC;
    u32 offset = args->data_loc_filename & 0xFFFF;
    long n = bpf_probe_read_kernel_str(buf->path, SNOOP_PATH_MAX, (char *)args + offset);
    if (n <= 0) {
        buf->hdr.flags |= FLAG_READ_FAILED;
        count(STAT_READ_FAILED);
        submit(buf, 0);
        return 0;
    }
    u32 len = (u32)(n - 1) & (SNOOP_PATH_MAX - 1);
    buf->hdr.path_len = len;
    if (len > 0 && recently_sent(buf, len))
        return 0;
    submit(buf, len);
    return 0;
}

TRACEPOINT_PROBE(sched, sched_process_fork) {
    u64 cgroup_id;
    if (!should_trace(&cgroup_id))
        return 0;
    struct event_buf *buf = new_event(cgroup_id, KIND_FORK, SYS_IDX_sched_process_fork,
                                      AT_FDCWD_VALUE, args->child_pid);
    if (buf)
        submit(buf, 0);
    return 0;
}

TRACEPOINT_PROBE(sched, sched_process_exit) {
    u64 pid_tgid = bpf_get_current_pid_tgid();
    if ((u32)pid_tgid != (u32)(pid_tgid >> 32))
        return 0;  // a thread, not the process
    u64 cgroup_id;
    if (!should_trace(&cgroup_id))
        return 0;
    u32 tgid = pid_tgid >> 32;
    cwd_gen.delete(&tgid);
    struct event_buf *buf = new_event(cgroup_id, KIND_EXIT, SYS_IDX_sched_process_exit,
                                      AT_FDCWD_VALUE, 0);
    if (buf)
        submit(buf, 0);
    return 0;
}
