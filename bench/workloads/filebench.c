// Syscall loops for bench/overhead.py, compiled with gcc at bench time.
//
//   filebench open-same PATH N      open(PATH) + close, N times
//   filebench open-unique PREFIX N  open(PREFIX/i) N times (each fails: ENOENT)
//   filebench stat-unique PREFIX N  stat(PREFIX/i) N times (each fails: ENOENT)
//   filebench getppid - N           getppid() N times: a syscall no tracer hooks
//
// The loops call libc directly so that the syscall, not the language, is what is timed.
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int usage(void) {
    fprintf(stderr, "usage: filebench open-same PATH N | open-unique PREFIX N | "
                    "stat-unique PREFIX N | getppid - N\n");
    return 2;
}

int main(int argc, char **argv) {
    if (argc != 4)
        return usage();
    const char *mode = argv[1], *base = argv[2];
    long n = strtol(argv[3], NULL, 10);
    char path[4096];
    struct stat st;
    if (strcmp(mode, "open-same") == 0) {
        for (long i = 0; i < n; i++) {
            int fd = open(base, O_RDONLY | O_CLOEXEC);
            if (fd < 0) {
                perror(base);
                return 1;
            }
            close(fd);
        }
    } else if (strcmp(mode, "open-unique") == 0) {
        for (long i = 0; i < n; i++) {
            snprintf(path, sizeof(path), "%s/%ld", base, i);
            int fd = open(path, O_RDONLY | O_CLOEXEC);
            if (fd >= 0)
                close(fd);
        }
    } else if (strcmp(mode, "stat-unique") == 0) {
        for (long i = 0; i < n; i++) {
            snprintf(path, sizeof(path), "%s/%ld", base, i);
            stat(path, &st);
        }
    } else if (strcmp(mode, "getppid") == 0) {
        for (long i = 0; i < n; i++)
            getppid();
    } else {
        return usage();
    }
    return 0;
}
