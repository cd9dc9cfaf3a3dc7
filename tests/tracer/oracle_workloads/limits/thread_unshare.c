/* A thread that stops sharing its process's cwd (unshare(CLONE_FS), with MODE "fs"),
 * or its cwd and fd table (CLONE_FS | CLONE_FILES, with MODE "fs-files"):
 *   main opens tu/before, then starts the thread and waits for it;
 *   the thread unshares, chdirs to tu/a, opens a0..a3 and stats missing0..3 there,
 *   then opens ABS (an absolute path); main, after the join, opens tu/main-after and
 *   stats tu/main-missing (relative: its cwd was never changed), then opens ABS2.
 * Prints "relative NAME" for every relative name used after the unshare, in order, and
 * "absolute PATH" for the absolute ones.
 * Usage: thread_unshare MODE ABS ABS2, in a directory holding tu/before,
 * tu/main-after and tu/a/a0..a3. */
#include "oracle.h" /* first: it defines _GNU_SOURCE */
#include <pthread.h>
#include <sched.h>

#define NAMES 4

static int flags;
static const char *thread_abs;
static char used[2 * NAMES + 3][32];
static int nused;

static const char *note(const char *name) {
    snprintf(used[nused++], sizeof used[0], "%s", name);
    return name;
}

static void *body(void *arg) {
    (void)arg;
    MUST(unshare(flags));
    MUST(chdir(note("tu/a")));
    char name[32];
    for (int i = 0; i < NAMES; i++) {
        snprintf(name, sizeof name, "a%d", i);
        read_file(note(name));
        snprintf(name, sizeof name, "missing%d", i);
        probe(note(name));
    }
    read_file(thread_abs);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 4)
        return 2;
    if (strcmp(argv[1], "fs") == 0)
        flags = CLONE_FS;
    else if (strcmp(argv[1], "fs-files") == 0)
        flags = CLONE_FS | CLONE_FILES;
    else
        return 2;
    thread_abs = argv[2];
    read_file("tu/before");
    pthread_t thread;
    if (pthread_create(&thread, NULL, body, NULL))
        die("pthread_create");
    pthread_join(thread, NULL);
    read_file(note("tu/main-after"));
    probe(note("tu/main-missing"));
    read_file(argv[3]);
    for (int i = 0; i < nused; i++)
        printf("relative %s\n", used[i]);
    printf("absolute %s\nabsolute %s\n", argv[2], argv[3]);
    return 0;
}
