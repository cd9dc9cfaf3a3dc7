/* Inside a chroot names are the process's own view: after chroot("jail") and
 * chdir("/"), "/data/x" is jail/data/x, and '..' stops at the new root. A dirfd
 * opened before the chroot on jail/data serves after it too. */
#include "oracle.h"

int main(void) {
    int before = open("jail/data", O_RDONLY | O_DIRECTORY);
    MUST(before);
    MUST(chroot("jail"));
    MUST(chdir("/"));
    read_file("/data/x");
    probe("data/y");
    probe("/data/missing");
    read_file("/../../data/x");
    int data = open("/data", O_RDONLY | O_DIRECTORY);
    MUST(data);
    int fd = openat(data, "y", O_RDONLY);
    MUST(fd);
    close(fd);
    struct stat st;
    MUST(fstatat(before, "z", &st, 0));
    MUST(chdir("data"));
    probe("../etc/conf");
    probe("../../../etc/conf");
    read_file("x");
    return 0;
}
