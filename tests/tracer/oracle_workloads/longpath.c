/* Paths longer than PATH_MAX once resolved: a chain of DEPTH directories with
 * 200-byte names, made with mkdirat relative to the previous directory's fd, entered
 * with one relative chdir per level; at the bottom, relative names are created,
 * opened and stat'ed, and opened relative to the deepest dirfd. The whole chain is
 * left in place (the test's fixture removes it before each run). */
#include "oracle.h"

#define DEPTH 24
#define NAME 200

static void level_name(char *name, int level) {
    memset(name, 'd', NAME);
    snprintf(name + NAME - 4, 5, "%04d", level);
}

int main(void) {
    char name[NAME + 1];
    int dir = open("long", O_RDONLY | O_DIRECTORY);
    MUST(dir);
    for (int i = 0; i < DEPTH; i++) {
        level_name(name, i);
        MUST(mkdirat(dir, name, 0755));
        int next = openat(dir, name, O_RDONLY | O_DIRECTORY);
        MUST(next);
        close(dir);
        dir = next;
    }
    MUST(chdir("long"));
    for (int i = 0; i < DEPTH; i++) {
        level_name(name, i);
        MUST(chdir(name));
    }
    int fd = open("leaf", O_WRONLY | O_CREAT, 0644);
    MUST(fd);
    close(fd);
    read_file("leaf");
    probe("missing-leaf");
    MUST(mkdir("sub", 0755));
    fd = openat(dir, "sub/inner", O_WRONLY | O_CREAT, 0644);
    MUST(fd);
    close(fd);
    struct stat st;
    MUST(fstatat(dir, "sub/inner", &st, 0));
    MUST(chdir(".."));
    probe("leaf-from-parent");
    return 0;
}
