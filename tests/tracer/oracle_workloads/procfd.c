/* Magic links as path prefixes: with pf/d0..d3 open as fds, each "file" is reached
 * as /proc/self/fd/N/file, /dev/fd/N/file, /proc/thread-self/fd/N/file and
 * /proc/<pid>/fd/N/file; the directory itself as /proc/self/fd/N; the cwd's
 * "cwdfile" as /proc/self/cwd/cwdfile. */
#include "oracle.h"

int main(void) {
    char path[128], dir[16];
    int fds[4];
    for (int i = 0; i < 4; i++) {
        snprintf(dir, sizeof dir, "pf/d%d", i);
        fds[i] = open(dir, O_RDONLY | O_DIRECTORY);
        MUST(fds[i]);
    }
    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "/proc/self/fd/%d/file", fds[i]);
        read_file(path);
        snprintf(path, sizeof path, "/dev/fd/%d/file", fds[i]);
        probe(path);
        snprintf(path, sizeof path, "/proc/self/fd/%d/missing", fds[i]);
        probe(path);
        snprintf(path, sizeof path, "/proc/thread-self/fd/%d/file", fds[i]);
        probe(path);
        snprintf(path, sizeof path, "/proc/%d/fd/%d/file", (int)getpid(), fds[i]);
        probe(path);
        snprintf(path, sizeof path, "/proc/self/fd/%d", fds[i]);
        int again = open(path, O_RDONLY | O_DIRECTORY);
        MUST(again);
        close(again);
    }
    read_file("/proc/self/cwd/cwdfile");
    probe("/proc/self/cwd/missing-cwdfile");
    return 0;
}
