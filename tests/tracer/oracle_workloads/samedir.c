/* Two processes at once, each opening the same absolute directory DIR (so both get
 * the same fd number for it) and stat'ing its own names relative to that fd. */
#include "oracle.h"

static void names(const char *dir, int who) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0)
        _exit(1);
    char name[32];
    struct stat st;
    for (int i = 0; i < 3; i++) {
        snprintf(name, sizeof name, "c%d-%d", who, i);
        fstatat(fd, name, &st, 0);
    }
    _exit(0);
}

int main(int argc, char **argv) {
    if (argc != 2)
        return 2;
    pid_t pids[2];
    for (int who = 0; who < 2; who++) {
        pids[who] = fork();
        MUST(pids[who]);
        if (pids[who] == 0)
            names(argv[1], who);
    }
    wait_ok(pids[0]);
    wait_ok(pids[1]);
    return 0;
}
