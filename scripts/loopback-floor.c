// The loopback floor: what a bare sender and receiver cost on this machine, with no WebSocket, HTTP,
// JSON or runtime in the way. It is not part of rtctl; it tells how much of a `rtctl bench` figure is
// the hub and how much is the machine (scripts/floor.sh runs it; docs/performance.md has the figures).
//
// One process accepts N loopback TCP connections and sends every one of them a 120-byte message per
// broadcast (`send` per socket, TCP_NODELAY, SEND_THREADS threads splitting the sockets, as rtctl
// splits a large broadcast); a forked child connects them (spread over 127.0.0.1-127.0.0.8) and reads
// with epoll and `recv` on RECV_THREADS threads, as the bench does. Broadcasts go out open-loop at
// RATE/s for SECS seconds; latency is receive time minus intended send time on one monotonic clock.
//
// By default sender thread i writes sockets i, i+T, i+2T... and receiver thread i watches every R-th
// one from i, so with as many senders as receivers (the rows floor.sh runs) a sender only ever wakes
// one receiver's epoll. SEND_CONTIGUOUS=1 gives each sender a contiguous
// range instead, as rtctl's hub splits a broadcast into chunks of members, and RECV_CONTIGUOUS=1 does
// the same for the receivers (rtctl's bench deals its sockets out one by one, like the default).
//
//   cc -O2 -pthread scripts/loopback-floor.c -o /tmp/loopback-floor
//   RATE=10 SECS=10 [SEND_CONTIGUOUS=1] [RECV_CONTIGUOUS=1] /tmp/loopback-floor N SEND_THREADS RECV_THREADS
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

struct msg {
    uint64_t intended_ns;
    uint32_t seq;
    char pad[108];
};

static int n = 10000, rate = 10, secs = 10, send_threads = 2, recv_threads = 2;
static int send_contiguous, recv_contiguous;

// The sockets thread `index` of `threads` handles: every threads-th one from `index`, or one contiguous
// range; `i` runs from socket_first() while below socket_end(), stepping with socket_next().
static int socket_first(int index, int threads, int contiguous) {
    return contiguous ? (int)((long)n * index / threads) : index;
}

static int socket_end(int index, int threads, int contiguous) {
    return contiguous ? (int)((long)n * (index + 1) / threads) : n;
}

static int socket_next(int i, int threads, int contiguous) {
    return contiguous ? i + 1 : i + threads;
}
static int *server_fds, *client_fds;
static uint64_t start_ns;
static uint64_t *latencies, *completions;
static long latency_count;
static pthread_mutex_t merge = PTHREAD_MUTEX_INITIALIZER;

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000ull + t.tv_nsec;
}

static void die(const char *what) {
    perror(what);
    exit(1);
}

static void *sender(void *arg) {
    long first = (long)arg;
    for (int seq = 0; seq < rate * secs; seq++) {
        uint64_t intended = start_ns + (uint64_t)seq * 1000000000ull / rate;
        for (uint64_t now = now_ns(); now < intended; now = now_ns()) {
            struct timespec wait = {0, (long)(intended - now)};
            nanosleep(&wait, 0);
        }
        struct msg m;
        memset(&m, 'x', sizeof m);
        m.intended_ns = intended;
        m.seq = seq;
        int end = socket_end(first, send_threads, send_contiguous);
        for (int i = socket_first(first, send_threads, send_contiguous); i < end;
             i = socket_next(i, send_threads, send_contiguous))
            if (send(server_fds[i], &m, sizeof m, MSG_DONTWAIT) != sizeof m) die("send");
    }
    return 0;
}

static void *receiver(void *arg) {
    long first = (long)arg, expected = 0, count = 0;
    int ep = epoll_create1(0);
    int end = socket_end(first, recv_threads, recv_contiguous);
    for (int i = socket_first(first, recv_threads, recv_contiguous); i < end;
         i = socket_next(i, recv_threads, recv_contiguous)) {
        struct epoll_event e = {.events = EPOLLIN | EPOLLET, .data.fd = client_fds[i]};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, client_fds[i], &e)) die("epoll_ctl");
        expected += (long)rate * secs;
    }
    uint64_t *mine = malloc(expected * sizeof *mine), *slowest = calloc(rate * secs, sizeof *slowest);
    struct epoll_event events[256];
    char buf[4096];
    while (count < expected) {
        int ready = epoll_wait(ep, events, 256, 2000);
        if (ready <= 0) break;  // 2 s without a delivery: the rest is lost
        for (int j = 0; j < ready; j++) {
            for (;;) {
                ssize_t got = recv(events[j].data.fd, buf, sizeof buf, 0);
                uint64_t now = now_ns();
                if (got <= 0) break;
                for (ssize_t at = 0; at + (ssize_t)sizeof(struct msg) <= got; at += sizeof(struct msg)) {
                    struct msg *m = (struct msg *)(buf + at);  // loopback keeps 120-byte frames whole
                    uint64_t latency = now - m->intended_ns;
                    mine[count++] = latency;
                    if (latency > slowest[m->seq]) slowest[m->seq] = latency;
                }
                if (got < (ssize_t)sizeof buf) break;
            }
        }
    }
    pthread_mutex_lock(&merge);
    memcpy(latencies + latency_count, mine, count * sizeof *mine);
    latency_count += count;
    for (int s = 0; s < rate * secs; s++)
        if (slowest[s] > completions[s]) completions[s] = slowest[s];
    pthread_mutex_unlock(&merge);
    return 0;
}

static int by_value(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double ms_at(uint64_t *sorted, long count, double quantile) {
    return sorted[(long)(quantile * (count - 1))] / 1e6;
}

int main(int argc, char **argv) {
    if (getenv("RATE")) rate = atoi(getenv("RATE"));
    if (getenv("SECS")) secs = atoi(getenv("SECS"));
    send_contiguous = getenv("SEND_CONTIGUOUS") && atoi(getenv("SEND_CONTIGUOUS"));
    recv_contiguous = getenv("RECV_CONTIGUOUS") && atoi(getenv("RECV_CONTIGUOUS"));
    if (argc > 1) n = atoi(argv[1]);
    if (argc > 2) send_threads = atoi(argv[2]);
    if (argc > 3) recv_threads = atoi(argv[3]);
    int one = 1, listener = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof addr;
    if (bind(listener, (void *)&addr, sizeof addr) || listen(listener, 4096)) die("listen");
    getsockname(listener, (void *)&addr, &len);
    int ready_pipe[2], go_pipe[2];
    if (pipe(ready_pipe) || pipe(go_pipe)) die("pipe");
    char byte = 0;

    if (fork() == 0) {
        client_fds = malloc(n * sizeof *client_fds);
        for (int i = 0; i < n; i++) {
            client_fds[i] = socket(AF_INET, SOCK_STREAM, 0);
            setsockopt(client_fds[i], IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
            struct sockaddr_in source = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK + i % 8)};
            if (bind(client_fds[i], (void *)&source, sizeof source)) die("bind");
            if (connect(client_fds[i], (void *)&addr, sizeof addr)) die("connect");
            fcntl(client_fds[i], F_SETFL, O_NONBLOCK);
        }
        latencies = malloc((size_t)n * rate * secs * sizeof *latencies);
        completions = calloc(rate * secs, sizeof *completions);
        if (write(ready_pipe[1], &byte, 1) != 1 || read(go_pipe[0], &byte, 1) != 1) die("pipe");
        pthread_t threads[64];
        for (long k = 0; k < recv_threads; k++) pthread_create(&threads[k], 0, receiver, (void *)k);
        for (int k = 0; k < recv_threads; k++) pthread_join(threads[k], 0);
        qsort(latencies, latency_count, sizeof *latencies, by_value);
        qsort(completions, rate * secs, sizeof *completions, by_value);
        printf("floor %d sockets x %d/s (%d send%s, %d receive threads%s): %ld/%ld received, latency p50 %.2f "
               "p99 %.2f max %.2f ms, completion p50 %.2f ms\n",
               n, rate, send_threads, send_contiguous ? " contiguous" : "", recv_threads,
               recv_contiguous ? " contiguous" : "", latency_count, (long)n * rate * secs,
               ms_at(latencies, latency_count, 0.5), ms_at(latencies, latency_count, 0.99),
               ms_at(latencies, latency_count, 1.0), ms_at(completions, rate * secs, 0.5));
        exit(0);
    }
    server_fds = malloc(n * sizeof *server_fds);
    for (int i = 0; i < n; i++) {
        if ((server_fds[i] = accept(listener, 0, 0)) < 0) die("accept");
        setsockopt(server_fds[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    if (read(ready_pipe[0], &byte, 1) != 1) die("pipe");
    start_ns = now_ns() + 200000000ull;
    if (write(go_pipe[1], &byte, 1) != 1) die("pipe");
    pthread_t threads[64];
    for (long k = 0; k < send_threads; k++) pthread_create(&threads[k], 0, sender, (void *)k);
    for (int k = 0; k < send_threads; k++) pthread_join(threads[k], 0);
    int status = 1;
    wait(&status);
    return status == 0 ? 0 : 1;
}
