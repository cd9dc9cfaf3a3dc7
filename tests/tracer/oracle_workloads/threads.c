/* Threads share one cwd. Modes:
 *   join        main chdirs, starts threads, chdirs again while they wait at a barrier;
 *               each thread opens and stats its own names before and after.
 *   main-exits  main calls pthread_exit(); the other threads go on with relative
 *               names (and one chdir) after it is gone.
 *   exec        a non-main thread execs PROBE: the process continues under the
 *               main thread's pid, in the same cwd.
 * Run in a directory holding t/a and t/b with files f0..f3 and g0..g3. */
#include <pthread.h>
#include "oracle.h"

#define THREADS 4

static pthread_barrier_t before, after;
static const char *probe_path;

static void first_batch(long i) {
    char name[32];
    snprintf(name, sizeof name, "f%ld", i);
    read_file(name);
    snprintf(name, sizeof name, "missing-a%ld", i);
    probe(name);
}

static void second_batch(long i) {
    char name[32];
    snprintf(name, sizeof name, "g%ld", i);
    read_file(name);
    snprintf(name, sizeof name, "missing-b%ld", i);
    probe(name);
}

static void *joined(void *arg) {
    first_batch((long)arg);
    pthread_barrier_wait(&before);
    pthread_barrier_wait(&after); /* main chdir'd in between */
    second_batch((long)arg);
    return NULL;
}

static void *orphaned(void *arg) {
    long i = (long)arg;
    usleep(100 * 1000); /* main is gone by now */
    first_batch(i);
    if (pthread_barrier_wait(&before) == PTHREAD_BARRIER_SERIAL_THREAD)
        MUST(chdir("../b"));
    pthread_barrier_wait(&after);
    second_batch(i);
    return NULL;
}

static void *execer(void *arg) {
    (void)arg;
    first_batch(0);
    char *args[] = {"probe", "+f1", "after-exec", "cd:../b", "+g1", NULL};
    execv(probe_path, args);
    die("execv");
    return NULL;
}

static pthread_t threads[THREADS];

static void start(void *(*body)(void *), long count) {
    for (long i = 0; i < count; i++)
        if (pthread_create(&threads[i], NULL, body, (void *)i))
            die("pthread_create");
}

int main(int argc, char **argv) {
    if (argc < 2)
        return 2;
    MUST(chdir("t/a"));
    if (strcmp(argv[1], "join") == 0) {
        pthread_barrier_init(&before, NULL, THREADS + 1);
        pthread_barrier_init(&after, NULL, THREADS + 1);
        start(joined, THREADS);
        pthread_barrier_wait(&before);
        MUST(chdir("../b"));
        pthread_barrier_wait(&after);
        for (int i = 0; i < THREADS; i++)
            pthread_join(threads[i], NULL);
        probe("main-done");
        return 0;
    }
    if (strcmp(argv[1], "main-exits") == 0) {
        pthread_barrier_init(&before, NULL, THREADS);
        pthread_barrier_init(&after, NULL, THREADS);
        start(orphaned, THREADS);
        pthread_exit(NULL);
    }
    if (strcmp(argv[1], "exec") == 0 && argc == 3) {
        probe_path = argv[2];
        start(execer, 1);
        pause();
    }
    return 2;
}
