/* Exec without a plain path, each from a fresh child:
 *   fexecve of xbin/probe opened with O_PATH (glibc: execveat(fd, "", AT_EMPTY_PATH)),
 *   execveat(dirfd of xdir, "bin/probe", 0),
 *   execvp of "lastonly", found only in the last of three PATH directories.
 * Each exec'd probe then stats and opens names relative to the cwd. */
#include <sys/syscall.h>
#include "oracle.h"

extern char **environ;

static void run(void (*exec)(char **), char **args) {
    pid_t pid = fork();
    if (pid == 0) {
        exec(args);
        die("exec");
    }
    MUST(pid);
    wait_ok(pid);
}

static void by_fd(char **args) {
    int fd = open("xbin/probe", O_PATH);
    MUST(fd);
    fexecve(fd, args, environ);
}

static void by_dirfd(char **args) {
    int dir = open("xdir", O_RDONLY | O_DIRECTORY);
    MUST(dir);
    syscall(SYS_execveat, dir, "bin/probe", args, environ, 0);
}

static void by_path(char **args) {
    char cwd[4096], path[3 * 4096 + 16];
    if (!getcwd(cwd, sizeof cwd))
        die("getcwd");
    snprintf(path, sizeof path, "%s/p1:%s/p2:%s/p3", cwd, cwd, cwd);
    MUST(setenv("PATH", path, 1));
    execvp("lastonly", args);
}

int main(void) {
    char *fd_args[] = {"probe", "+data/one", "fexecve-missing", NULL};
    char *dirfd_args[] = {"probe", "+data/two", "execveat-missing", NULL};
    char *path_args[] = {"lastonly", "+data/three", "execvp-missing", NULL};
    run(by_fd, fd_args);
    run(by_dirfd, dirfd_args);
    run(by_path, path_args);
    return 0;
}
