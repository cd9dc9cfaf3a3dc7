/* Dirfds whose numbers meant other directories before:
 *   a child opens and closes fp/b and fp/c (each stat'ed through the fd), then
 *   receives the parent's fd of fp/a over a socketpair (SCM_RIGHTS): it gets the
 *   same number, and names relative to it are under fp/a;
 *   dup2 of fp/d2's fd over fp/d1's closed number, then names relative to it.
 * Run where fp/{a,b,c,d1,d2} exist. */
#include <sys/socket.h>
#include "oracle.h"

static void stat_at(int dir, const char *name) {
    struct stat st;
    fstatat(dir, name, &st, 0);
}

static void open_at(int dir, const char *name) {
    int fd = openat(dir, name, O_RDONLY);
    if (fd < 0)
        die(name);
    close(fd);
}

static int receive_fd(int sock) {
    char data;
    struct iovec iov = {.iov_base = &data, .iov_len = 1};
    union { struct cmsghdr align; char buf[CMSG_SPACE(sizeof(int))]; } control;
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1,
                         .msg_control = control.buf, .msg_controllen = sizeof control.buf};
    if (recvmsg(sock, &msg, 0) != 1)
        die("recvmsg");
    int fd;
    memcpy(&fd, CMSG_DATA(CMSG_FIRSTHDR(&msg)), sizeof fd);
    return fd;
}

static void send_fd(int sock, int fd) {
    char data = 'x';
    struct iovec iov = {.iov_base = &data, .iov_len = 1};
    union { struct cmsghdr align; char buf[CMSG_SPACE(sizeof(int))]; } control;
    memset(&control, 0, sizeof control);
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1,
                         .msg_control = control.buf, .msg_controllen = sizeof control.buf};
    struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cmsg), &fd, sizeof fd);
    if (sendmsg(sock, &msg, 0) != 1)
        die("sendmsg");
}

static void passing(void) {
    int a = open("fp/a", O_RDONLY | O_DIRECTORY);
    MUST(a);
    int sv[2];
    MUST(socketpair(AF_UNIX, SOCK_STREAM, 0, sv));
    pid_t pid = fork();
    MUST(pid);
    if (pid == 0) {
        close(a);
        close(sv[0]);
        int b = open("fp/b", O_RDONLY | O_DIRECTORY);
        MUST(b);
        stat_at(b, "only-b");
        close(b);
        int c = open("fp/c", O_RDONLY | O_DIRECTORY);
        MUST(c);
        stat_at(c, "only-c");
        close(c);
        int got = receive_fd(sv[1]);
        if (got != b || got != c) {
            fprintf(stderr, "received fd %d, not the reused %d\n", got, b);
            _exit(1);
        }
        stat_at(got, "passed-stat");
        open_at(got, "passed-file");
        _exit(0);
    }
    close(sv[1]);
    send_fd(sv[0], a);
    wait_ok(pid);
    close(a);
    close(sv[0]);
}

static void duplicating(void) {
    int d1 = open("fp/d1", O_RDONLY | O_DIRECTORY);
    MUST(d1);
    int d2 = open("fp/d2", O_RDONLY | O_DIRECTORY);
    MUST(d2);
    stat_at(d1, "one");
    close(d1);
    MUST(dup2(d2, d1));
    stat_at(d1, "two");
    close(d2);
    open_at(d1, "file2");
}

int main(void) {
    passing();
    duplicating();
    return 0;
}
