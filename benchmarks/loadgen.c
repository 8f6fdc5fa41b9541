/*
 * loadgen.c - a small single-threaded epoll load generator for the benchmark suite.
 *
 * Built at run time by benchmarks/run.py with the system's C compiler (with -DWITH_TLS and
 * -lssl -lcrypto when OpenSSL's headers are present).  benchmarks/loadgen.py speaks the same
 * command line and prints the same JSON, so the suite still runs where there is no compiler.
 *
 * Why C: a Python client on the other core would need about as much CPU per message as the
 * server under test, and would then measure itself.  This one spends a few hundred
 * nanoseconds per message, so its CPU use (reported next to the server's) stays well below
 * 100% and the server is the bottleneck.
 *
 * Modes (all against one echo server on --host/--port):
 *   pingpong  --conns N            each connection keeps one line in flight
 *   pipeline  --conns N --depth K  each connection keeps K lines in flight
 *   bulk      --conns N            each connection streams --chunk bytes per send, keeping at
 *                                  most --window bytes unechoed; throughput counts echoed bytes
 *   connrate  --conns C            C slots, each: connect, (TLS handshake,) one line, close
 *   idle      --conns N            open N connections (one line echoed on each so the server
 *                                  handler is parked in its read), print "READY n", then hold
 *                                  them until stdin reaches EOF
 *
 * Timing: connections are set up first (not measured), then --warmup seconds of load that
 * are thrown away, then --duration seconds that are measured.  --max-time bounds the whole
 * run (SIGALRM).  With --server-pid the server's CPU time over the measured window is read
 * from /proc/PID/task/ (star)/schedstat, so both CPU figures cover exactly the same window.
 *
 * Output: one JSON object on stdout.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifdef WITH_TLS
#include <openssl/err.h>
#include <openssl/ssl.h>
#endif

enum mode { M_PINGPONG, M_PIPELINE, M_BULK, M_CONNRATE, M_IDLE };
enum state { S_FREE, S_CONNECTING, S_HANDSHAKE, S_RUNNING };
enum phase { P_SETUP, P_WARMUP, P_MEASURE, P_DONE };

#define RBUF 65536

struct conn {
    int fd;
    int state;
    int established; /* idle mode: its first line came back */
    unsigned mask;   /* events currently registered with epoll */
    uint64_t sent;   /* bytes written so far (stream offset) */
    uint64_t target; /* line modes: bytes we want written in total */
    uint64_t recvd;  /* bytes read so far */
    int tls_retry;   /* length of an SSL_write that must be retried as is, or 0 */
    double t_open;   /* connrate: when connect() was called */
    double *ring;    /* send times of the lines in flight (capacity: depth) */
    int head, count;
#ifdef WITH_TLS
    SSL *ssl;
#endif
};

static struct {
    int mode;
    const char *host;
    int port;
    int conns;
    int depth;
    int size;
    int chunk;
    int window;
    double duration;
    double warmup;
    double max_time;
    int tls;
    const char *ca;
    const char *sni;
    int server_pid;
} opt = {M_PINGPONG, "127.0.0.1", 0, 1, 1, 64, 65536, 262144, 3.0, 0.5, 60.0, 0, NULL, "localhost", 0};

static int epfd;
static int phase = P_SETUP;
static struct conn *conns;
static char *pattern; /* lines of opt.size bytes, long enough for any send */
static char rbuf[RBUF];
static struct sockaddr_in addr;
#ifdef WITH_TLS
static SSL_CTX *ssl_ctx;
#endif

/* Results of the measured window. */
static uint64_t n_msgs, n_bytes, n_conns, n_errors, n_ready;
static uint32_t *lat; /* latencies in nanoseconds */
static size_t lat_n, lat_cap;
static char last_error[160];

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double self_cpu(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec * 1e-6;
}

/* CPU seconds used so far by every thread of the server, or -1 when it cannot be read. */
static double server_cpu(void) {
    if (!opt.server_pid) return -1;
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task", opt.server_pid);
    DIR *d = opendir(path);
    if (!d) return -1;
    double total = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char p[320];
        snprintf(p, sizeof p, "/proc/%d/task/%s/schedstat", opt.server_pid, e->d_name);
        FILE *f = fopen(p, "r");
        if (!f) continue;
        unsigned long long ns = 0;
        if (fscanf(f, "%llu", &ns) == 1) total += ns * 1e-9;
        fclose(f);
    }
    closedir(d);
    return total;
}

static void note_error(const char *what, int err) {
    n_errors++;
    snprintf(last_error, sizeof last_error, "%s: %s", what, strerror(err));
}

static void record_latency(double seconds) {
    if (lat_n == lat_cap) {
        size_t cap = lat_cap ? lat_cap * 2 : 1 << 16;
        uint32_t *p = realloc(lat, cap * sizeof *p);
        if (!p) return; /* keep what we have rather than die mid-run */
        lat = p;
        lat_cap = cap;
    }
    double ns = seconds * 1e9;
    lat[lat_n++] = ns > 4e9 ? 4000000000u : (uint32_t)ns;
}

static void set_mask(struct conn *c, unsigned mask) {
    if (mask == c->mask) return;
    struct epoll_event ev = {.events = mask, .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
    c->mask = mask;
}

static void conn_close(struct conn *c) {
#ifdef WITH_TLS
    if (c->ssl) {
        if (c->state == S_RUNNING) SSL_shutdown(c->ssl); /* send close_notify; don't wait for the reply */
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
#endif
    if (c->fd >= 0) close(c->fd); /* also removes it from the epoll set */
    c->fd = -1;
    c->state = S_FREE;
    c->mask = 0;
}

static void conn_open(struct conn *c) {
    memset(c, 0, offsetof(struct conn, ring));
    c->head = c->count = 0;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        note_error("socket", errno);
        c->state = S_FREE;
        return;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->t_open = now();
    c->state = S_CONNECTING;
    if (connect(c->fd, (struct sockaddr *)&addr, sizeof addr) < 0 && errno != EINPROGRESS) {
        note_error("connect", errno);
        close(c->fd);
        c->fd = -1;
        c->state = S_FREE;
        return;
    }
    c->mask = EPOLLOUT;
    struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev);
}

static void push_line(struct conn *c, double t) {
    c->target += opt.size;
    if (c->count < opt.depth) {
        c->ring[(c->head + c->count) % opt.depth] = t;
        c->count++;
    }
}

static double pop_line(struct conn *c) {
    if (!c->count) return 0;
    double t = c->ring[c->head];
    c->head = (c->head + 1) % opt.depth;
    c->count--;
    return t;
}

/* How many bytes this connection wants to write now. */
static uint64_t wanted(struct conn *c) {
    if (opt.mode == M_BULK) {
        if (phase == P_DONE) return 0;
        uint64_t limit = c->recvd + opt.window;
        return c->sent < limit ? limit - c->sent : 0;
    }
    return c->target - c->sent;
}

/* Write what is wanted until done or the socket is full; returns -1 on a fatal error. */
static int conn_flush(struct conn *c) {
    int blocked = 0;
    uint64_t want;
    while ((want = wanted(c)) > 0) {
        size_t len = want < (uint64_t)opt.chunk ? (size_t)want : (size_t)opt.chunk;
        const char *p = pattern + (c->sent % opt.size);
        ssize_t n;
#ifdef WITH_TLS
        if (c->ssl) {
            if (c->tls_retry) len = c->tls_retry;
            n = SSL_write(c->ssl, p, (int)len);
            if (n <= 0) {
                int err = SSL_get_error(c->ssl, (int)n);
                if (err == SSL_ERROR_WANT_WRITE || err == SSL_ERROR_WANT_READ) {
                    c->tls_retry = (int)len;
                    blocked = err == SSL_ERROR_WANT_WRITE;
                    break;
                }
                note_error("SSL_write", EPROTO);
                return -1;
            }
            c->tls_retry = 0;
        } else
#endif
        {
            n = send(c->fd, p, len, MSG_NOSIGNAL);
            if (n < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK) {
                    blocked = 1;
                    break;
                }
                if (errno == EINTR) continue;
                note_error("send", errno);
                return -1;
            }
        }
        c->sent += (uint64_t)n;
    }
    set_mask(c, EPOLLIN | (blocked ? EPOLLOUT : 0));
    return 0;
}

static void conn_start(struct conn *c) {
    c->state = S_RUNNING;
    double t = now();
    int lines = (opt.mode == M_PINGPONG || opt.mode == M_PIPELINE) ? opt.depth : (opt.mode == M_BULK ? 0 : 1);
    for (int i = 0; i < lines; i++) push_line(c, t);
    if (conn_flush(c) < 0) conn_close(c);
}

#ifdef WITH_TLS
static void conn_handshake(struct conn *c) {
    int r = SSL_connect(c->ssl);
    if (r == 1) {
        conn_start(c);
        return;
    }
    int err = SSL_get_error(c->ssl, r);
    if (err == SSL_ERROR_WANT_READ) {
        set_mask(c, EPOLLIN);
    } else if (err == SSL_ERROR_WANT_WRITE) {
        set_mask(c, EPOLLOUT);
    } else {
        unsigned long e = ERR_get_error();
        n_errors++;
        snprintf(last_error, sizeof last_error, "TLS handshake: %s", e ? ERR_error_string(e, NULL) : "failed");
        conn_close(c);
    }
}
#endif

static void conn_connected(struct conn *c) {
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err) {
        note_error("connect", err);
        conn_close(c);
        return;
    }
#ifdef WITH_TLS
    if (opt.tls) {
        c->ssl = SSL_new(ssl_ctx);
        SSL_set_fd(c->ssl, c->fd);
        SSL_set_tlsext_host_name(c->ssl, opt.sni);
        SSL_set1_host(c->ssl, opt.sni);
        c->state = S_HANDSHAKE;
        conn_handshake(c);
        return;
    }
#endif
    conn_start(c);
}

/* Account for n echoed bytes; returns 1 when the connection was closed here. */
static int consume(struct conn *c, const char *buf, size_t n) {
    c->recvd += n;
    int measuring = phase == P_MEASURE;
    if (opt.mode == M_BULK) {
        if (measuring) n_bytes += n;
        return 0;
    }
    if (measuring) n_bytes += n;
    const char *p = buf, *end = buf + n;
    int lines = 0;
    while (p < end && (p = memchr(p, '\n', (size_t)(end - p)))) {
        p++;
        lines++;
    }
    if (!lines) return 0;
    double t = now();
    if (opt.mode == M_CONNRATE) {
        if (measuring) {
            n_conns++;
            n_msgs++;
            record_latency(t - c->t_open);
        }
        conn_close(c);
        if (phase != P_DONE) conn_open(c);
        return 1;
    }
    if (opt.mode == M_IDLE) {
        if (!c->established) {
            c->established = 1;
            n_ready++;
        }
        return 0;
    }
    for (int i = 0; i < lines; i++) {
        double sent_at = pop_line(c);
        if (measuring) {
            n_msgs++;
            record_latency(t - sent_at);
        }
        if (phase != P_DONE) push_line(c, t);
    }
    return 0;
}

static void conn_readable(struct conn *c) {
#ifdef WITH_TLS
    if (c->ssl) {
        for (;;) {
            int n = SSL_read(c->ssl, rbuf, RBUF);
            if (n > 0) {
                if (consume(c, rbuf, (size_t)n)) return;
                continue;
            }
            int err = SSL_get_error(c->ssl, n);
            if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) break;
            note_error("SSL_read", err == SSL_ERROR_ZERO_RETURN ? ECONNRESET : EPROTO);
            conn_close(c);
            return;
        }
    } else
#endif
    {
        /* A few reads per wake-up at most, so one busy bulk connection can't starve the rest. */
        for (int i = 0; i < 4; i++) {
            ssize_t n = recv(c->fd, rbuf, RBUF, 0);
            if (n > 0) {
                if (consume(c, rbuf, (size_t)n)) return;
                if (n < RBUF) break;
                continue;
            }
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
            if (n < 0 && errno == EINTR) continue;
            note_error("recv", n == 0 ? ECONNRESET : errno);
            conn_close(c);
            if (opt.mode == M_CONNRATE && phase != P_DONE) conn_open(c);
            return;
        }
    }
    if (conn_flush(c) < 0) conn_close(c);
}

static void on_event(struct conn *c, unsigned ev) {
    switch (c->state) {
    case S_CONNECTING:
        conn_connected(c);
        break;
#ifdef WITH_TLS
    case S_HANDSHAKE:
        conn_handshake(c);
        break;
#endif
    case S_RUNNING:
        if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP))
            conn_readable(c);
        else if (ev & EPOLLOUT && c->state == S_RUNNING && conn_flush(c) < 0)
            conn_close(c);
        break;
    default:
        break;
    }
    if (opt.mode == M_CONNRATE && c->state == S_FREE && phase != P_DONE && c->fd < 0) conn_open(c);
}

static void on_alarm(int sig) {
    (void)sig;
    static const char msg[] = "{\"error\": \"max-time reached\"}\n";
    ssize_t r = write(1, msg, sizeof msg - 1);
    (void)r;
    _exit(2);
}

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static double pct(double q) {
    if (!lat_n) return -1;
    size_t i = (size_t)(q * (double)(lat_n - 1) + 0.5);
    return lat[i] / 1000.0; /* microseconds */
}

static void usage(void) {
    fprintf(stderr,
            "usage: loadgen --mode pingpong|pipeline|bulk|connrate|idle --port P [--host H] [--conns N]\n"
            "       [--depth K] [--size B] [--chunk B] [--window B] [--duration S] [--warmup S]\n"
            "       [--max-time S] [--tls --ca FILE [--sni NAME]] [--server-pid PID]\n");
    exit(64);
}

static void parse(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--tls")) {
            opt.tls = 1;
            continue;
        }
        if (!v) usage();
        i++;
        if (!strcmp(a, "--mode")) {
            if (!strcmp(v, "pingpong")) opt.mode = M_PINGPONG;
            else if (!strcmp(v, "pipeline")) opt.mode = M_PIPELINE;
            else if (!strcmp(v, "bulk")) opt.mode = M_BULK;
            else if (!strcmp(v, "connrate")) opt.mode = M_CONNRATE;
            else if (!strcmp(v, "idle")) opt.mode = M_IDLE;
            else usage();
        } else if (!strcmp(a, "--host")) opt.host = v;
        else if (!strcmp(a, "--port")) opt.port = atoi(v);
        else if (!strcmp(a, "--conns")) opt.conns = atoi(v);
        else if (!strcmp(a, "--depth")) opt.depth = atoi(v);
        else if (!strcmp(a, "--size")) opt.size = atoi(v);
        else if (!strcmp(a, "--chunk")) opt.chunk = atoi(v);
        else if (!strcmp(a, "--window")) opt.window = atoi(v);
        else if (!strcmp(a, "--duration")) opt.duration = atof(v);
        else if (!strcmp(a, "--warmup")) opt.warmup = atof(v);
        else if (!strcmp(a, "--max-time")) opt.max_time = atof(v);
        else if (!strcmp(a, "--ca")) opt.ca = v;
        else if (!strcmp(a, "--sni")) opt.sni = v;
        else if (!strcmp(a, "--server-pid")) opt.server_pid = atoi(v);
        else usage();
    }
    if (opt.port <= 0 || opt.conns <= 0 || opt.size < 2 || opt.chunk <= 0) usage();
    if (opt.mode != M_PIPELINE) opt.depth = 1;
    if (opt.depth < 1) opt.depth = 1;
#ifndef WITH_TLS
    if (opt.tls) {
        printf("{\"error\": \"built without TLS\"}\n");
        exit(65);
    }
#endif
}

static void raise_fd_limit(void) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

int main(int argc, char **argv) {
    parse(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGALRM, on_alarm);
    alarm((unsigned)(opt.max_time + 0.999));
    raise_fd_limit();

    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)opt.port);
    if (inet_pton(AF_INET, opt.host, &addr.sin_addr) != 1) usage();

#ifdef WITH_TLS
    if (opt.tls) {
        ssl_ctx = SSL_CTX_new(TLS_client_method());
        SSL_CTX_set_mode(ssl_ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
        SSL_CTX_set_session_cache_mode(ssl_ctx, SSL_SESS_CACHE_OFF); /* every handshake is a full one */
        SSL_CTX_set_verify(ssl_ctx, SSL_VERIFY_PEER, NULL);
        if (!opt.ca || SSL_CTX_load_verify_locations(ssl_ctx, opt.ca, NULL) != 1) {
            printf("{\"error\": \"cannot load CA file\"}\n");
            return 65;
        }
    }
#endif

    /* Pattern: lines of opt.size bytes ("xxx...\n"), one chunk plus one line long, so a send
       starting at any stream offset can take a whole chunk from it. */
    size_t plen = (size_t)opt.chunk + (size_t)opt.size;
    pattern = malloc(plen);
    for (size_t i = 0; i < plen; i++) pattern[i] = (i % opt.size == (size_t)opt.size - 1) ? '\n' : 'x';

    epfd = epoll_create1(EPOLL_CLOEXEC);
    conns = calloc((size_t)opt.conns, sizeof *conns);
    for (int i = 0; i < opt.conns; i++) {
        conns[i].fd = -1;
        conns[i].ring = calloc((size_t)opt.depth, sizeof(double));
    }
    if (opt.mode == M_IDLE) {
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
        epoll_ctl(epfd, EPOLL_CTL_ADD, 0, &ev); /* stdin: EOF means "close everything now" */
    }

    struct epoll_event events[256];
    double t_begin = now(), t_phase = t_begin, t_measure = 0, t_end = 0;
    double cpu0 = 0, cpu1 = 0, scpu0 = -1, scpu1 = -1;
    int opened = 0;
    /* Connections still in their setup (idle mode opens at most this many at once, so a listen
       backlog of a few hundred never overflows into SYN retransmits). */
    const int setup_batch = 200;

    if (opt.mode == M_CONNRATE) {
        for (int i = 0; i < opt.conns; i++) conn_open(&conns[i]);
        opened = opt.conns;
        phase = P_WARMUP;
    } else if (opt.mode != M_IDLE) {
        for (int i = 0; i < opt.conns; i++) conn_open(&conns[i]);
        opened = opt.conns;
    }

    while (phase != P_DONE) {
        int n = epoll_wait(epfd, events, 256, 5);
        double t = now();
        for (int i = 0; i < n; i++) {
            struct conn *c = events[i].data.ptr;
            if (!c) { /* stdin readable: EOF or anything else ends the idle hold */
                char b[64];
                ssize_t r = read(0, b, sizeof b);
                if (r <= 0) phase = P_DONE;
                continue;
            }
            on_event(c, events[i].events);
        }
        if (n_errors > 0 && opt.mode != M_CONNRATE) break;
        if (n_errors > 1000) break;
        if (phase == P_SETUP) {
            if (opt.mode == M_IDLE) {
                while (opened < opt.conns && opened - (int)n_ready < setup_batch) conn_open(&conns[opened++]);
                if ((int)n_ready == opt.conns) {
                    printf("READY %d\n", opt.conns);
                    fflush(stdout);
                    phase = P_MEASURE; /* holds until stdin EOF */
                    t_measure = t;
                }
            } else {
                int running = 0;
                for (int i = 0; i < opt.conns; i++) running += conns[i].state == S_RUNNING;
                if (running == opt.conns) {
                    phase = P_WARMUP;
                    t_phase = t;
                }
            }
        } else if (phase == P_WARMUP && t - t_phase >= opt.warmup) {
            phase = P_MEASURE;
            n_msgs = n_bytes = n_conns = 0;
            lat_n = 0;
            cpu0 = self_cpu();
            scpu0 = server_cpu();
            t_measure = now();
        } else if (phase == P_MEASURE && opt.mode != M_IDLE && t - t_measure >= opt.duration) {
            t_end = now();
            cpu1 = self_cpu();
            scpu1 = server_cpu();
            phase = P_DONE;
        }
    }
    if (!t_end) {
        t_end = now();
        cpu1 = self_cpu();
        scpu1 = server_cpu();
    }
    double elapsed = t_measure ? t_end - t_measure : 0;
    qsort(lat, lat_n, sizeof *lat, cmp_u32);

    printf("{\"mode\": \"%s\", \"impl\": \"c\", \"tls\": %s, \"conns\": %d, \"depth\": %d, \"size\": %d,"
           " \"elapsed\": %.6f, \"msgs\": %llu, \"bytes\": %llu, \"connections\": %llu, \"errors\": %llu,"
           " \"ready\": %llu, \"lat_us\": {\"p50\": %.2f, \"p99\": %.2f, \"p999\": %.2f, \"n\": %zu},"
           " \"cpu_s\": %.6f, \"server_cpu_s\": %.6f, \"setup_s\": %.4f, \"last_error\": \"%s\"}\n",
           opt.mode == M_PINGPONG ? "pingpong" : opt.mode == M_PIPELINE ? "pipeline" : opt.mode == M_BULK ? "bulk"
           : opt.mode == M_CONNRATE ? "connrate" : "idle",
           opt.tls ? "true" : "false", opt.conns, opt.depth, opt.size, elapsed, (unsigned long long)n_msgs,
           (unsigned long long)n_bytes, (unsigned long long)n_conns, (unsigned long long)n_errors,
           (unsigned long long)n_ready, pct(0.5), pct(0.99), pct(0.999), lat_n, cpu1 - cpu0,
           (scpu0 >= 0 && scpu1 >= 0) ? scpu1 - scpu0 : -1.0, t_phase - t_begin, last_error);
    for (int i = 0; i < opt.conns; i++)
        if (conns[i].fd >= 0) conn_close(&conns[i]);
    return n_errors && opt.mode != M_CONNRATE ? 1 : 0;
}
