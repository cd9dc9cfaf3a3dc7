/* O_PATH directory fds as cwd and as dirfds: fchdir to one, then relative names;
 * openat and fstatat relative to another. Run where od/{f,sub/g,sub/h} exist. */
#include "oracle.h"

int main(void) {
    int top = open("od", O_PATH | O_DIRECTORY);
    MUST(top);
    MUST(fchdir(top));
    read_file("f");
    probe("sub/g");
    access("missing", F_OK);
    int sub = openat(top, "sub", O_PATH | O_DIRECTORY);
    MUST(sub);
    int fd = openat(sub, "g", O_RDONLY);
    MUST(fd);
    struct stat st;
    MUST(fstatat(sub, "h", &st, 0));
    fstatat(sub, "missing-h", &st, 0);
    MUST(chdir("sub"));
    read_file("h");
    return 0;
}
