// Syscall loops for bench/overhead.py, compiled with gcc at bench time.
//
//   filebench open-same PATH N      open(PATH) + close, N times
//   filebench open-unique PREFIX N  open(PREFIX/i) N times (each fails: ENOENT)
//   filebench stat-unique PREFIX N  stat(PREFIX/i) N times (each fails: ENOENT)
//   filebench getppid - N           getppid() N times: a syscall no tracer hooks
//   filebench write-4k PATH N       N writes of 4 KiB to PATH (rewound every 256)
//   filebench read-4k PATH N        N reads of 4 KiB from PATH (rewound at its end)
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
                    "stat-unique PREFIX N | getppid - N | write-4k PATH N | read-4k PATH N\n");
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
    } else if (strcmp(mode, "write-4k") == 0 || strcmp(mode, "read-4k") == 0) {
        int writing = mode[0] == 'w';
        static char block[4096];
        int fd = open(base, writing ? O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC
                                    : O_RDONLY | O_CLOEXEC, 0644);
        if (fd < 0) {
            perror(base);
            return 1;
        }
        for (long i = 0; i < n; i++) {
            ssize_t done = writing ? write(fd, block, sizeof(block))
                                   : read(fd, block, sizeof(block));
            if (done < 0) {
                perror(base);
                return 1;
            }
            if ((writing && i % 256 == 255) || (!writing && done == 0))
                lseek(fd, 0, SEEK_SET);
        }
        close(fd);
    } else {
        return usage();
    }
    return 0;
}
