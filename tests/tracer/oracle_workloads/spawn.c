/* Children started without fork():
 *   chain N     open "f" and stat a missing name in the inherited cwd, chdir "lvl",
 *               then vfork + execve self with N-1 (N levels deep).
 *   spawnp      posix_spawnp "probe" through a PATH of relative and absolute misses
 *               (relative entries resolve in the cwd chdir'd to before), once plain
 *               and once with a chdir file action run by the child.
 * Run in a directory holding lvl/lvl/lvl/f, lvl/f, ... and sp/{miss1,pbin/probe,sub}. */
#include "oracle.h"
#include <spawn.h>

extern char **environ;

static int chain(const char *self, int level) {
    char name[32];
    read_file("f");
    snprintf(name, sizeof name, "missing-%d", level);
    probe(name);
    if (level == 0)
        return 0;
    MUST(chdir("lvl"));
    char next[16];
    snprintf(next, sizeof next, "%d", level - 1);
    pid_t pid = vfork();
    if (pid == 0) {
        char *args[] = {(char *)self, "chain", next, NULL};
        execve(self, args, environ);
        _exit(127);
    }
    MUST(pid);
    wait_ok(pid);
    probe("after-child");
    return 0;
}

static void spawn(posix_spawn_file_actions_t *actions, char **args) {
    pid_t pid;
    int err = posix_spawnp(&pid, "probe", actions, NULL, args, environ);
    if (err) {
        errno = err;
        die("posix_spawnp");
    }
    wait_ok(pid);
}

static int spawnp(void) {
    MUST(chdir("sp"));
    MUST(setenv("PATH", "/nonexistent-snoop-dir:miss1:pbin:miss2", 1));
    char *plain[] = {"probe", "+pbin/probe", "plain-missing", NULL};
    spawn(NULL, plain);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addchdir_np(&actions, "sub");
    char *moved[] = {"probe", "+data", "moved-missing", NULL};
    /* The child chdirs before its PATH search: relative entries resolve under sub. */
    MUST(setenv("PATH", "/nonexistent-snoop-dir:../miss3:../pbin", 1));
    spawn(&actions, moved);
    posix_spawn_file_actions_destroy(&actions);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "chain") == 0)
        return chain(argv[0], atoi(argv[2]));
    if (argc == 2 && strcmp(argv[1], "spawnp") == 0)
        return spawnp();
    return 2;
}
