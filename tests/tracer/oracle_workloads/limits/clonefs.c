/* Processes (not threads) sharing what fork() would copy:
 *   CLONE_FS     the child chdirs to cf/x; the parent, told over a pipe, opens a
 *                relative name (under cf/x); the child opens one too, chdirs to ../y
 *                and exits; the parent's next relative name is under cf/y.
 *   CLONE_FILES  the child opens cf/d as a dirfd and writes its number to a pipe; the
 *                parent opens and stats names relative to that number; the child closes
 *                it and opens cf/e, which takes the same number; the parent opens a name
 *                relative to it again.
 * Both children are clone(2)s with a stack of their own and SIGCHLD, no CLONE_THREAD.
 * Run in a directory holding cf/{x,y,d,e} with the files named below. */
#include "oracle.h" /* first: it defines _GNU_SOURCE */
#include <sched.h>

#define STACK_SIZE (256 * 1024)

static int to_parent[2], to_child[2];

static void tell(int fd, int value) {
    if (write(fd, &value, sizeof value) != sizeof value)
        die("write");
}

static int hear(int fd) {
    int value;
    if (read(fd, &value, sizeof value) != sizeof value)
        die("read");
    return value;
}

static int fs_child(void *arg) {
    (void)arg;
    MUST(chdir("cf/x"));
    tell(to_parent[1], 0);
    hear(to_child[0]);
    read_file("child-file");
    MUST(chdir("../y"));
    return 0;
}

static int files_child(void *arg) {
    (void)arg;
    int d = open("cf/d", O_RDONLY | O_DIRECTORY);
    MUST(d);
    tell(to_parent[1], d);
    hear(to_child[0]);
    close(d);
    int e = open("cf/e", O_RDONLY | O_DIRECTORY);
    MUST(e);
    tell(to_parent[1], e);
    return 0;
}

static pid_t start(int (*body)(void *), int flags) {
    static char stack[STACK_SIZE] __attribute__((aligned(16)));
    MUST(pipe(to_parent));
    MUST(pipe(to_child));
    pid_t pid = clone(body, stack + STACK_SIZE, flags | SIGCHLD, NULL);
    MUST(pid);
    return pid;
}

static void finish(pid_t pid) {
    wait_ok(pid);
    close(to_parent[0]);
    close(to_parent[1]);
    close(to_child[0]);
    close(to_child[1]);
}

static void open_at(int dir, const char *name) {
    int fd = openat(dir, name, O_RDONLY);
    if (fd < 0)
        die(name);
    close(fd);
}

int main(void) {
    pid_t pid = start(fs_child, CLONE_FS);
    hear(to_parent[0]);
    read_file("parent-file"); /* cf/x, where the child went */
    tell(to_child[1], 0);
    finish(pid);
    read_file("after-child"); /* cf/y */
    MUST(chdir("../.."));

    pid = start(files_child, CLONE_FILES);
    int d = hear(to_parent[0]);
    open_at(d, "in-d");
    struct stat st;
    fstatat(d, "missing-d", &st, 0);
    tell(to_child[1], 0);
    int e = hear(to_parent[0]);
    if (e != d) {
        fprintf(stderr, "cf/e got fd %d, not the reused %d\n", e, d);
        return 1;
    }
    open_at(e, "in-e");
    finish(pid);
    close(e);
    return 0;
}
