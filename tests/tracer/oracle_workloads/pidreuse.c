/* pidreuse COUNT REUSES: short-lived children, each chdir'ing to a directory of its
 * own and stat'ing the same relative name "probe":
 *   COUNT plain forks (pr/n<i>), then
 *   REUSES pairs where the second child is made (clone3 set_tid) with the pid of
 *   the first, already reaped one (pr/r<k>a, then pr/r<k>b).
 * If the kernel refuses a pid, that child is forked plainly: the same paths are
 * touched either way. Prints how many pids were reused. */
#include <linux/sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include "oracle.h"

static void child(const char *dir) {
    if (chdir(dir) < 0)
        _exit(1);
    probe("probe");
    _exit(0);
}

static pid_t spawn(const char *dir, pid_t wanted) {
    pid_t pid = -1;
    if (wanted > 0) {
        struct clone_args args = {.exit_signal = SIGCHLD, .set_tid = (unsigned long)&wanted,
                                  .set_tid_size = 1};
        pid = syscall(SYS_clone3, &args, sizeof args);
    }
    if (pid < 0)
        pid = fork();
    MUST(pid);
    if (pid == 0)
        child(dir);
    wait_ok(pid);
    return pid;
}

int main(int argc, char **argv) {
    if (argc != 3)
        return 2;
    int count = atoi(argv[1]), reuses = atoi(argv[2]);
    char dir[64];
    for (int i = 0; i < count; i++) {
        snprintf(dir, sizeof dir, "pr/n%d", i);
        spawn(dir, 0);
    }
    int reused = 0;
    for (int k = 0; k < reuses; k++) {
        snprintf(dir, sizeof dir, "pr/r%da", k);
        pid_t first = spawn(dir, 0);
        snprintf(dir, sizeof dir, "pr/r%db", k);
        reused += spawn(dir, first) == first;
    }
    printf("reused %d of %d\n", reused, reuses);
    return 0;
}
