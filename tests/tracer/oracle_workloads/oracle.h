/* Shared by the oracle workloads: fail loudly, so a workload that did not do what the
 * test expects (a call that should have worked, an errno that should have come) exits
 * non-zero instead of silently touching other paths. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

static inline void die(const char *what) {
    fprintf(stderr, "%s: %s\n", what, strerror(errno));
    exit(1);
}

#define MUST(call) do { if ((call) < 0) die(#call); } while (0)

/* A stat whose target may or may not exist: the probe itself is the access. */
static inline void probe(const char *name) {
    struct stat st;
    stat(name, &st);
}

static inline void read_file(const char *name) {
    int fd = open(name, O_RDONLY);
    if (fd < 0)
        die(name);
    close(fd);
}

static inline void wait_ok(pid_t pid) {
    int status;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "child %d failed (status %#x)\n", pid, status);
        exit(1);
    }
}
