/*
 * wsload.c - the WebSocket echo load generator of the HTTP scenarios (benchmarks/run.py builds it
 * with the system's C compiler; benchmarks/http_loadgen.py --mode ws is the same client in Python,
 * used where there is no compiler).
 *
 * Why C: the Python client spends about as much CPU per message as tornado_lite's server does; this
 * one spends well under a microsecond, so the server is the bottleneck.
 *
 * --conns N connections each upgrade to a WebSocket on --path (blocking, not measured), then keep
 * one --size byte text message in flight: a masked frame (precomputed once; a fixed mask key) goes
 * out, the unmasked echo must come back byte for byte, the next goes out.  --warmup seconds are
 * thrown away, --duration seconds are measured; --max-time bounds the run (SIGALRM).  With
 * --server-pid the server's CPU time over the measured window is read from
 * /proc/PID/task/(star)/schedstat.  Output: one JSON object on stdout, with the keys of
 * benchmarks/loadgen.c (msgs = echoed messages).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define RBUF 4096

struct conn {
    int fd;
    size_t have; /* bytes of the current echo received */
    double t_sent;
    unsigned char buf[RBUF];
};

static struct {
    const char *host, *path;
    int port, conns, size, server_pid;
    double duration, warmup, max_time;
} opt = {"127.0.0.1", "/ws", 0, 10, 64, 0, 2.0, 0.3, 60.0};

static unsigned char frame[2 + 4 + 125], reply[2 + 125];
static size_t frame_len, reply_len;
static double *lat;
static size_t nlat, cap_lat;
static char last_error[200];

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double self_cpu(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
}

static double server_cpu(void) {
    if (!opt.server_pid) return -1;
    char dir[64], p[384];
    snprintf(dir, sizeof dir, "/proc/%d/task", opt.server_pid);
    DIR *d = opendir(dir);
    if (!d) return -1;
    double total = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        snprintf(p, sizeof p, "%s/%s/schedstat", dir, e->d_name);
        FILE *f = fopen(p, "r");
        unsigned long long ns;
        if (f && fscanf(f, "%llu", &ns) == 1) total += ns * 1e-9;
        if (f) fclose(f);
    }
    closedir(d);
    return total;
}

static void on_alarm(int sig) {
    (void)sig;
    const char msg[] = "{\"error\": \"max-time reached\"}\n";
    if (write(1, msg, sizeof msg - 1) < 0) _exit(3);
    _exit(2);
}

static void fail(const char *what) {
    printf("{\"error\": \"%s\"}\n", what);
    exit(1);
}

/* Blocking connect + upgrade; returns the fd, non-blocking, ready for frames. */
static int open_ws(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(opt.port)};
    if (fd < 0 || inet_pton(AF_INET, opt.host, &a.sin_addr) != 1) fail("socket");
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) fail("connect refused");
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    char req[512], resp[1024];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: dG9ybmFkb19saXRlLWJlbg==\r\nSec-WebSocket-Version: 13\r\n\r\n",
                     opt.path, opt.host, opt.port);
    if (send(fd, req, n, 0) != n) fail("send upgrade");
    size_t have = 0;
    while (!memmem(resp, have, "\r\n\r\n", 4)) {
        ssize_t r = recv(fd, resp + have, sizeof resp - 1 - have, 0);
        if (r <= 0) fail("upgrade: connection closed");
        have += r;
        if (have >= sizeof resp - 1) fail("upgrade: answer too long");
    }
    resp[have] = 0;
    if (!strstr(resp, " 101 ")) fail("upgrade refused");
    /* The answer ends at the blank line: the server sends nothing more until our first frame. */
    if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0) fail("fcntl");
    return fd;
}

static void build_frames(void) {
    static const unsigned char mask[4] = {0x12, 0x34, 0x56, 0x78};
    frame[0] = 0x81; /* FIN, text */
    frame[1] = 0x80 | opt.size;
    memcpy(frame + 2, mask, 4);
    reply[0] = 0x81;
    reply[1] = opt.size;
    for (int i = 0; i < opt.size; i++) {
        frame[6 + i] = 'x' ^ mask[i % 4];
        reply[2 + i] = 'x';
    }
    frame_len = 6 + opt.size;
    reply_len = 2 + opt.size;
}

static int send_frame(struct conn *c) {
    c->t_sent = now();
    c->have = 0;
    return send(c->fd, frame, frame_len, 0) == (ssize_t)frame_len ? 0 : -1;
}

static void note_latency(double s) {
    if (nlat == cap_lat) {
        cap_lat = cap_lat ? cap_lat * 2 : 65536;
        lat = realloc(lat, cap_lat * sizeof *lat);
        if (!lat) fail("out of memory");
    }
    lat[nlat++] = s;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(double q) {
    return nlat ? lat[(size_t)(q * (nlat - 1) + 0.5)] * 1e6 : -1;
}

int main(int argc, char **argv) {
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (!strcmp(k, "--host")) opt.host = v;
        else if (!strcmp(k, "--port")) opt.port = atoi(v);
        else if (!strcmp(k, "--path")) opt.path = v;
        else if (!strcmp(k, "--conns")) opt.conns = atoi(v);
        else if (!strcmp(k, "--size")) opt.size = atoi(v);
        else if (!strcmp(k, "--duration")) opt.duration = atof(v);
        else if (!strcmp(k, "--warmup")) opt.warmup = atof(v);
        else if (!strcmp(k, "--max-time")) opt.max_time = atof(v);
        else if (!strcmp(k, "--server-pid")) opt.server_pid = atoi(v);
        else if (!strcmp(k, "--mode")) { if (strcmp(v, "ws")) fail("wsload: --mode ws only"); }
        else fail("wsload: unknown option");
    }
    if (!opt.port || opt.conns < 1 || opt.size < 1 || opt.size > 125) fail("wsload: bad options");
    signal(SIGALRM, on_alarm);
    signal(SIGPIPE, SIG_IGN);
    struct itimerval it = {.it_value = {(long)opt.max_time, (long)((opt.max_time - (long)opt.max_time) * 1e6)}};
    setitimer(ITIMER_REAL, &it, NULL);
    build_frames();
    struct conn *conns = calloc(opt.conns, sizeof *conns);
    int ep = epoll_create1(0);
    if (!conns || ep < 0) fail("setup");
    for (int i = 0; i < opt.conns; i++) {
        conns[i].fd = open_ws();
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &conns[i]};
        epoll_ctl(ep, EPOLL_CTL_ADD, conns[i].fd, &ev);
    }
    double t_start = now(), t_measure = 0, t_end = 0, cpu0 = 0, cpu1 = 0, s0 = -1, s1 = -1;
    long long msgs = 0, bytes = 0, errors = 0;
    int measuring = 0;
    for (int i = 0; i < opt.conns; i++)
        if (send_frame(&conns[i]) < 0) fail("send");
    struct epoll_event evs[256];
    while (!t_end) {
        int n = epoll_wait(ep, evs, 256, 5);
        double t = now();
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            ssize_t r = recv(c->fd, c->buf + c->have, RBUF - c->have, 0);
            if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
            if (r <= 0) {
                errors++;
                snprintf(last_error, sizeof last_error, "%s", r == 0 ? "the server closed a connection" : strerror(errno));
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                continue;
            }
            c->have += r;
            if (c->have < reply_len) continue;
            if (c->have > reply_len || memcmp(c->buf, reply, reply_len)) {
                errors++;
                snprintf(last_error, sizeof last_error, "unexpected WebSocket frame");
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                continue;
            }
            if (measuring) {
                msgs++;
                bytes += reply_len;
                note_latency(t - c->t_sent);
            }
            if (send_frame(c) < 0) {
                errors++;
                snprintf(last_error, sizeof last_error, "send: %s", strerror(errno));
            }
        }
        if (errors) break;
        if (!measuring && t - t_start >= opt.warmup) {
            measuring = 1;
            cpu0 = self_cpu();
            s0 = server_cpu();
            t_measure = now();
        } else if (measuring && t - t_measure >= opt.duration) {
            t_end = now();
            cpu1 = self_cpu();
            s1 = server_cpu();
        }
    }
    if (!t_end) {
        t_end = now();
        cpu1 = self_cpu();
        s1 = server_cpu();
    }
    for (int i = 0; i < opt.conns; i++) close(conns[i].fd);
    qsort(lat, nlat, sizeof *lat, cmp_double);
    printf("{\"mode\": \"ws\", \"impl\": \"c\", \"conns\": %d, \"elapsed\": %.6f, \"msgs\": %lld, \"bytes\": %lld,"
           " \"errors\": %lld, \"lat_us\": {\"p50\": %.2f, \"p99\": %.2f, \"p999\": %.2f, \"n\": %zu},"
           " \"cpu_s\": %.6f, \"server_cpu_s\": %.6f, \"last_error\": \"%s\"}\n",
           opt.conns, t_measure ? t_end - t_measure : 0.0, msgs, bytes, errors, pct(0.5), pct(0.99), pct(0.999), nlat,
           cpu1 - cpu0, s0 >= 0 && s1 >= 0 ? s1 - s0 : -1.0, last_error);
    return errors ? 1 : 0;
}
