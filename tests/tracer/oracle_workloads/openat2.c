/* openat2 resolution flags, relative to a dirfd on "root":
 *   RESOLVE_IN_ROOT: "/doc/x" and "../../doc/y" both stay inside root,
 *   RESOLVE_BENEATH: "doc/x" works; "../outside" and "/doc/x" fail with EXDEV
 *   (never looked up below the dirfd, so not touched).
 * Run in a directory holding root/doc/{x,y} and outside. */
#include <linux/openat2.h>
#include <sys/syscall.h>
#include "oracle.h"

static int open2(int dir, const char *name, unsigned long long resolve) {
    struct open_how how = {.flags = O_RDONLY, .resolve = resolve};
    return syscall(SYS_openat2, dir, name, &how, sizeof how);
}

static void expect(int dir, const char *name, unsigned long long resolve, int err) {
    int fd = open2(dir, name, resolve);
    if (err == 0 && fd < 0)
        die(name);
    if (err && (fd >= 0 || errno != err)) {
        fprintf(stderr, "%s: wanted errno %d, got fd %d errno %d\n", name, err, fd, errno);
        exit(1);
    }
    if (fd >= 0)
        close(fd);
}

int main(void) {
    int root = open("root", O_RDONLY | O_DIRECTORY);
    MUST(root);
    expect(root, "/doc/x", RESOLVE_IN_ROOT, 0);
    expect(root, "../../doc/y", RESOLVE_IN_ROOT, 0);
    expect(root, "/doc/../doc/missing", RESOLVE_IN_ROOT, ENOENT);
    expect(root, "doc/x", RESOLVE_BENEATH, 0);
    expect(root, "doc/missing", RESOLVE_BENEATH, ENOENT);
    expect(root, "../outside", RESOLVE_BENEATH, EXDEV);
    expect(root, "/doc/beneath-abs", RESOLVE_BENEATH, EXDEV);
    return 0;
}
