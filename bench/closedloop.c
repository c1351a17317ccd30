/* A second client for bench/router.py: one keep-alive connection, one request at a time, blocking reads.
 *
 *   closedloop PORT PATH SECONDS BODY   ->   "n N rps R p50 MS p90 MS p99 MS p99.9 MS max MS"
 *
 * POSTs BODY to 127.0.0.1:PORT/PATH as fast as answers come for SECONDS and prints the latency quantiles of
 * the answers (CLOCK_MONOTONIC from before the write to the last byte of the body, by Content-Length). It
 * exists because wrk's latencies at one connection, on 2 shared cores, can run past what its own packets
 * show (see the module docstring of bench/router.py); a blocking client is the simplest thing to compare. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: closedloop PORT PATH SECONDS BODY\n");
        return 2;
    }
    int port = atoi(argv[1]);
    const char *path = argv[2], *body = argv[4];
    double seconds = atof(argv[3]);
    char request[8192];
    int length = snprintf(request, sizeof request, "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                          "application/json\r\nContent-Length: %zu\r\n\r\n%s", path, strlen(body), body);
    if (length <= 0 || length >= (int)sizeof request) {
        fprintf(stderr, "closedloop: request too large\n");
        return 2;
    }
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
        perror("closedloop: connect");
        return 1;
    }
    size_t cap = 1 << 22, n = 0;
    double *latency = malloc(cap * sizeof(double));
    static char buf[65536 + 1];
    double end = now() + seconds;
    while (now() < end && n < cap) {
        double start = now();
        if (write(fd, request, length) != length) {
            perror("closedloop: write");
            return 1;
        }
        size_t got = 0;
        long need = -1;
        while (need < 0 || (long)got < need) {
            ssize_t r = read(fd, buf + got, sizeof buf - 1 - got);
            if (r <= 0) {
                fprintf(stderr, "closedloop: connection closed after %zu answers\n", n);
                return 1;
            }
            got += r;
            buf[got] = 0;
            char *head_end = need < 0 ? strstr(buf, "\r\n\r\n") : NULL;
            if (head_end != NULL) {
                char *cl = strcasestr(buf, "content-length:");
                if (cl == NULL || cl > head_end) {
                    fprintf(stderr, "closedloop: answer without content-length\n");
                    return 1;
                }
                need = (head_end + 4 - buf) + atol(cl + 15);
            }
        }
        latency[n++] = (now() - start) * 1e3;
    }
    if (n == 0) {
        fprintf(stderr, "closedloop: no answers\n");
        return 1;
    }
    qsort(latency, n, sizeof(double), by_value);
    printf("n %zu rps %.1f p50 %.4f p90 %.4f p99 %.4f p99.9 %.4f max %.4f\n", n, n / seconds, latency[n / 2],
           latency[n * 90 / 100], latency[n * 99 / 100], latency[n * 999 / 1000], latency[n - 1]);
    return 0;
}
