/*
 * The benchmark's worker: the smallest process that tells the harness when it began to run.
 *
 *   bench-worker FILE ID [sleep|exit]
 *
 * Its very first action reads CLOCK_REALTIME; it then appends `START <pid> <ns> <id>\n` to FILE
 * with a single O_APPEND write (atomic for a line this short, so a thousand workers can share
 * one file). `sleep` (the default) then blocks in pause() until a signal ends it; `exit` exits 0
 * at once. It writes nothing to stdout or stderr.
 *
 * Compiled by the harness (bench/supervision/main.rs) with the system C compiler, so that the
 * restart latency measured is the supervisor's, not a language runtime's start-up.
 */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (argc < 3) {
        return 2;
    }
    char line[128];
    int len = snprintf(line, sizeof line, "START %d %lld %s\n", (int)getpid(),
                       (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec, argv[2]);
    if (len <= 0 || len >= (int)sizeof line) {
        return 3;
    }
    int fd = open(argv[1], O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0 || write(fd, line, (size_t)len) != len) {
        return 4;
    }
    close(fd);
    if (argc > 3 && strcmp(argv[3], "exit") == 0) {
        return 0;
    }
    for (;;) {
        pause();
    }
}
