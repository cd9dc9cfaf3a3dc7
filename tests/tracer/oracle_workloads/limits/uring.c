/* io_uring requests that name paths, which the tracer can count but not see:
 *   uring N   opens ur/f0..f(N-1) with IORING_OP_OPENAT and statx's each of them with
 *             IORING_OP_STATX (2N requests, one submission, every one must succeed),
 *             closes the fds with close(2) (an IORING_OP_CLOSE would put the tracer's
 *             fd table in doubt), then opens ur/plain with openat(2).
 * Prints "requests K" (the path-naming requests submitted), then "uring NAME" for each
 * name passed to io_uring and "plain NAME" for the openat(2) one.
 * Run in a directory holding ur/f0..f(N-1) and ur/plain. */
#include "oracle.h" /* first: it defines _GNU_SOURCE */
#include <liburing.h>

#define MAX_FILES 64

int main(int argc, char **argv) {
    int n = argc == 2 ? atoi(argv[1]) : 0;
    if (n < 1 || n > MAX_FILES)
        return 2;
    static char names[MAX_FILES][32];
    static struct statx stx[MAX_FILES];
    struct io_uring ring;
    int err = io_uring_queue_init(2 * n, &ring, 0);
    if (err < 0) {
        errno = -err;
        die("io_uring_queue_init");
    }
    for (int i = 0; i < n; i++) {
        snprintf(names[i], sizeof names[i], "ur/f%d", i);
        struct io_uring_sqe *open_sqe = io_uring_get_sqe(&ring);
        struct io_uring_sqe *statx_sqe = io_uring_get_sqe(&ring);
        if (!open_sqe || !statx_sqe)
            die("io_uring_get_sqe");
        io_uring_prep_openat(open_sqe, AT_FDCWD, names[i], O_RDONLY, 0);
        io_uring_sqe_set_data64(open_sqe, 2 * i);
        io_uring_prep_statx(statx_sqe, AT_FDCWD, names[i], 0, STATX_BASIC_STATS, &stx[i]);
        io_uring_sqe_set_data64(statx_sqe, 2 * i + 1);
    }
    int submitted = io_uring_submit(&ring);
    if (submitted != 2 * n) {
        errno = submitted < 0 ? -submitted : EAGAIN;
        die("io_uring_submit");
    }
    for (int done = 0; done < submitted; done++) {
        struct io_uring_cqe *cqe;
        err = io_uring_wait_cqe(&ring, &cqe);
        if (err < 0) {
            errno = -err;
            die("io_uring_wait_cqe");
        }
        if (cqe->res < 0) {
            errno = -cqe->res;
            die(names[cqe->user_data / 2]);
        }
        if (cqe->user_data % 2 == 0)
            close(cqe->res);
        io_uring_cqe_seen(&ring, cqe);
    }
    io_uring_queue_exit(&ring);
    read_file("ur/plain");
    printf("requests %d\n", submitted);
    for (int i = 0; i < n; i++)
        printf("uring %s\n", names[i]);
    printf("plain ur/plain\n");
    return 0;
}
