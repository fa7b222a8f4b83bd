/*
 * spop-load: a SPOP 2.0 load generator that plays HAProxy 3.1+ against an SPOE agent, written in C so that it is
 * never the bottleneck of the benchmark it drives (a Node generator saturates near 500k frames/s).
 *
 *   spop-load --host 127.0.0.1 --port N [--connections C] [--inflight W] [--duration-ms D] [--warmup-ms M]
 *             [--threads T] [--expect-var NAME] [--traced-every N [--propagate-all]]
 *
 * Opens C connections (split over T threads, one epoll loop each), does the HELLO handshake on each, then keeps W
 * NOTIFY in flight per connection (closed loop), one stream-id per in-flight slot, frame-ids incrementing per send.
 * With --traced-every N, every Nth NOTIFY of a connection carries a 5th argument, `traceparent` (a W3C trace
 * context, sampled), as HAProxy sends `args … traceparent=req.hdr(traceparent)` for a request an edge traced; with
 * --propagate-all too, the other NOTIFY carry one as well, not sampled (trace-flags 00): behind an edge that hands on
 * every request's trace context and samples 1 request in N.
 * Every ACK is checked (type, FIN, ids, action list, and with --expect-var the first action is set-var NAME); any
 * violation, unexpected frame or close prints an error on stderr and exits 2. After the warm-up, frames and latency
 * (send -> ACK read, log-linear histogram, < 0.4% error) are counted for D ms; then no more NOTIFY are sent, the
 * outstanding ACKs are awaited (2 s at most) and each connection ends with HAPROXY-DISCONNECT.
 *
 * Prints one JSON line: frames, seconds, framesPerSecond, p50Us, p99Us, p999Us, maxUs, connections, inflight,
 * threads, and the generator's own CPU over the measured period (cpuUserS, cpuSysS, cpuPercent: 100 = one core).
 *
 * Fast path: the NOTIFY payload is encoded once; a read takes everything available (256 kB); the k ACKs of one read
 * are answered by k NOTIFY in one write(); timestamps are taken once per read and once per write, not per frame;
 * nothing is allocated after the setup.
 *
 * Build: cc -O2 -pthread -o spop-load spop-load.c   (C11, libc + pthreads, Linux epoll)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>

#define MAX_FRAME_SIZE 16380
#define READ_BUF_SIZE (256 * 1024)
#define DRAIN_NS 2000000000ULL
#define HELLO_TIMEOUT_S 5

enum { HAPROXY_HELLO = 1, HAPROXY_DISCONNECT = 2, NOTIFY = 3, AGENT_HELLO = 101, AGENT_DISCONNECT = 102, ACK = 103 };
enum { FLAG_FIN = 1 };
enum { T_NULL, T_BOOL, T_INT32, T_UINT32, T_INT64, T_UINT64, T_IPV4, T_IPV6, T_STRING, T_BINARY };
enum { RUNNING, DRAINING, DISCONNECTING, CLOSED };

/* ---------------------------------------------------------------- errors */

static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("spop-load: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    fflush(stderr);
    _exit(2);
}

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* ---------------------------------------------------------------- SPOP encoding (SPOE.txt 3.1) */

static size_t put_varint(uint8_t *p, uint64_t v) {
    size_t n = 0;
    if (v < 240) {
        p[0] = (uint8_t)v;
        return 1;
    }
    p[n++] = (uint8_t)v | 240;
    v = (v - 240) >> 4;
    while (v >= 128) {
        p[n++] = (uint8_t)v | 128;
        v = (v - 128) >> 7;
    }
    p[n++] = (uint8_t)v;
    return n;
}

/* Reads a varint at p[*pos] (bounded by len); false when truncated or longer than 10 bytes. */
static bool get_varint(const uint8_t *p, size_t len, size_t *pos, uint64_t *out) {
    if (*pos >= len) return false;
    uint64_t v = p[(*pos)++];
    if (v < 240) {
        *out = v;
        return true;
    }
    unsigned shift = 4;
    for (int i = 1; i < 10; i++) {
        if (*pos >= len) return false;
        uint8_t b = p[(*pos)++];
        v += (uint64_t)b << shift;
        shift += 7;
        if (b < 128) {
            *out = v;
            return true;
        }
    }
    return false;
}

static size_t put_string(uint8_t *p, const char *s) {
    size_t len = strlen(s), n = put_varint(p, len);
    memcpy(p + n, s, len);
    return n + len;
}

static void put_u32be(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint32_t get_u32be(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Frame header (length filled later): type, flags, stream-id, frame-id. Returns the header size. */
static size_t put_header(uint8_t *p, uint8_t type, uint64_t stream_id, uint64_t frame_id) {
    size_t n = 4;
    p[n++] = type;
    put_u32be(p + n, FLAG_FIN);
    n += 4;
    n += put_varint(p + n, stream_id);
    n += put_varint(p + n, frame_id);
    return n;
}

/* One TYPED-DATA as read: its type, an integer value, or where its bytes are. */
typedef struct {
    int type;
    uint64_t u;
    const uint8_t *bytes;
    size_t len;
} tdata_t;

static bool get_typed(const uint8_t *p, size_t len, size_t *pos, tdata_t *out) {
    if (*pos >= len) return false;
    uint8_t byte = p[(*pos)++];
    out->type = byte & 15;
    if ((byte >> 4) && out->type != T_BOOL) return false;
    switch (out->type) {
    case T_NULL:
        return true;
    case T_BOOL:
        out->u = (byte >> 4) & 1;
        return true;
    case T_INT32: case T_UINT32: case T_INT64: case T_UINT64:
        return get_varint(p, len, pos, &out->u);
    case T_IPV4: case T_IPV6: {
        size_t n = out->type == T_IPV4 ? 4 : 16;
        if (len - *pos < n) return false;
        out->bytes = p + *pos;
        out->len = n;
        *pos += n;
        return true;
    }
    case T_STRING: case T_BINARY: {
        uint64_t n;
        if (!get_varint(p, len, pos, &n) || n > len - *pos) return false;
        out->bytes = p + *pos;
        out->len = (size_t)n;
        *pos += (size_t)n;
        return true;
    }
    }
    return false;
}

/* Finds `key` in a KV-LIST payload; false when absent. Dies on a malformed list. */
static bool kv_find(const uint8_t *p, size_t len, const char *key, tdata_t *out, const char *what) {
    size_t pos = 0, klen = strlen(key);
    while (pos < len) {
        tdata_t name, value;
        uint64_t n;
        if (!get_varint(p, len, &pos, &n) || n > len - pos) die("%s: malformed KV-LIST", what);
        name.bytes = p + pos;
        name.len = (size_t)n;
        pos += (size_t)n;
        if (!get_typed(p, len, &pos, &value)) die("%s: malformed KV-LIST item", what);
        if (name.len == klen && memcmp(name.bytes, key, klen) == 0) {
            *out = value;
            return true;
        }
    }
    return false;
}

/* Dies with the status and message of an AGENT-DISCONNECT payload. */
static void die_disconnect(int conn, const uint8_t *p, size_t len, const char *when) {
    tdata_t status = {0}, message = {0};
    bool has_status = kv_find(p, len, "status-code", &status, "AGENT-DISCONNECT");
    bool has_message = kv_find(p, len, "message", &message, "AGENT-DISCONNECT");
    die("connection %d: AGENT-DISCONNECT %s: status %lld, message \"%.*s\"", conn, when, has_status ? (long long)status.u : -1LL,
        has_message ? (int)message.len : 0, has_message ? (const char *)message.bytes : "");
}

/* ---------------------------------------------------------------- latency histogram */

/* Nanoseconds, exact below 256 ns, then 128 sub-buckets per power of two (bucket width / value <= 1/128; the midpoint
 * is reported, so the error is <= 0.4%). Values are clamped to 10 s; 1 us .. 10 s is covered. */
#define SUB 128
#define HIST_BUCKETS (SUB * 30)
#define HIST_MAX_NS 10000000000ULL

typedef struct {
    uint64_t counts[HIST_BUCKETS];
    uint64_t total;
    uint64_t max_ns;
} hist_t;

static inline void hist_record(hist_t *h, uint64_t ns) {
    if (ns > h->max_ns) h->max_ns = ns;
    if (ns > HIST_MAX_NS) ns = HIST_MAX_NS;
    size_t index;
    if (ns < 2 * SUB) {
        index = (size_t)ns;
    } else {
        unsigned shift = (unsigned)(63 - __builtin_clzll(ns)) - 7;
        index = (size_t)(shift + 1) * SUB + (size_t)((ns >> shift) - SUB);
    }
    h->counts[index]++;
    h->total++;
}

static double bucket_mid_ns(size_t index) {
    if (index < 2 * SUB) return (double)index;
    unsigned shift = (unsigned)(index / SUB) - 1;
    uint64_t low = (uint64_t)(index % SUB + SUB) << shift;
    return (double)low + (double)((1ULL << shift) - 1) / 2.0;
}

static double hist_percentile_us(const hist_t *h, double q) {
    if (h->total == 0) return 0;
    uint64_t rank = (uint64_t)(q * (double)h->total + 0.999999), seen = 0;
    if (rank < 1) rank = 1;
    for (size_t i = 0; i < HIST_BUCKETS; i++) {
        seen += h->counts[i];
        if (seen >= rank) return bucket_mid_ns(i) / 1000.0;
    }
    return (double)h->max_ns / 1000.0;
}

/* ---------------------------------------------------------------- configuration and shared state */

static struct {
    const char *host;
    const char *port;
    int connections, inflight, threads;
    long duration_ms, warmup_ms;
    const char *expect_var;
    long traced_every;
    bool propagate_all;
} opt = {.host = "127.0.0.1", .connections = 1, .inflight = 1, .threads = 1, .duration_ms = 5000, .warmup_ms = 1000};

/* Set before the threads start, read-only afterwards. */
static uint64_t measure_start_ns, measure_end_ns;
static uint8_t notify_payload[512], traced_payload[512], unsampled_payload[512];
static size_t notify_payload_len, traced_payload_len, unsampled_payload_len, notify_frame_max;
static uint8_t disconnect_frame[128];
static size_t disconnect_frame_len;

typedef struct {
    int fd, index, state;
    uint64_t next_frame_id;
    uint64_t *slot_frame_id; /* frame-id outstanding on the slot; 0 = idle (frame-ids start at 1) */
    uint64_t *slot_sent_ns;
    int outstanding;
    uint8_t *out; /* bytes not yet written: [out_off, out_len); room for every slot's NOTIFY */
    size_t out_off, out_len, out_cap;
    bool want_write;
    uint8_t carry[4 + MAX_FRAME_SIZE]; /* an incomplete frame left by the previous read */
    size_t carry_len;
} conn_t;

typedef struct {
    pthread_t id;
    int epfd;
    conn_t **conns;
    int nconns, open;
    int *batch; /* slots whose NOTIFY was queued by the current read */
    int nbatch;
    uint8_t *rbuf;
    uint64_t frames;
    hist_t hist;
} worker_t;

/* ---------------------------------------------------------------- setup: HELLO handshake (blocking) */

static void encode_static_frames(void) {
    static const char *ua = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101";
    static const char *host = "shop.example.com.internal-load-balancer.example.org";
    static const char *path = "/api/v2/catalog/items/1234567890?expand=price,stock";
    uint8_t *p = notify_payload;
    size_t n = put_string(p, "check-client-ip");
    p[n++] = 4;
    n += put_string(p + n, "ip");
    p[n++] = T_IPV4;
    memcpy(p + n, (const uint8_t[]){192, 0, 2, 44}, 4); /* 192.0.2.44 */
    n += 4;
    n += put_string(p + n, "ua");
    p[n++] = T_STRING;
    n += put_string(p + n, ua);
    n += put_string(p + n, "host");
    p[n++] = T_STRING;
    n += put_string(p + n, host);
    n += put_string(p + n, "path");
    p[n++] = T_STRING;
    n += put_string(p + n, path);
    notify_payload_len = n;
    /* The same message with a traceparent: nb-args 5, then the same arguments and one more. */
    memcpy(traced_payload, notify_payload, n);
    size_t name_len = put_string(traced_payload, "check-client-ip");
    traced_payload[name_len] = 5;
    size_t t = n;
    t += put_string(traced_payload + t, "traceparent");
    traced_payload[t++] = T_STRING;
    t += put_string(traced_payload + t, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
    traced_payload_len = t;
    /* And with that traceparent not sampled: its last byte, trace-flags 01 -> 00. */
    memcpy(unsampled_payload, traced_payload, t);
    unsampled_payload[t - 1] = '0';
    unsampled_payload_len = t;
    notify_frame_max = 4 + 1 + 4 + 10 + 10 + t;

    uint8_t *d = disconnect_frame;
    size_t m = put_header(d, HAPROXY_DISCONNECT, 0, 0);
    m += put_string(d + m, "status-code");
    d[m++] = T_UINT32;
    m += put_varint(d + m, 0);
    m += put_string(d + m, "message");
    d[m++] = T_STRING;
    m += put_string(d + m, "normal");
    put_u32be(d, (uint32_t)(m - 4));
    disconnect_frame_len = m;
}

static void read_exact(int fd, uint8_t *p, size_t len, int conn) {
    for (size_t got = 0; got < len;) {
        ssize_t n = read(fd, p + got, len - got);
        if (n == 0) die("connection %d: closed by the agent during the HELLO handshake", conn);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("connection %d: HELLO handshake: %s", conn, errno == EAGAIN ? "no AGENT-HELLO within 5 s" : strerror(errno));
        }
        got += (size_t)n;
    }
}

static int open_connection(const struct addrinfo *ai, int index) {
    int fd = socket(ai->ai_family, SOCK_STREAM, 0);
    if (fd < 0) die("socket: %s", strerror(errno));
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) die("connection %d: connect to %s:%s: %s", index, opt.host, opt.port, strerror(errno));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct timeval tv = {HELLO_TIMEOUT_S, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);

    uint8_t hello[256];
    size_t n = put_header(hello, HAPROXY_HELLO, 0, 0);
    n += put_string(hello + n, "supported-versions");
    hello[n++] = T_STRING;
    n += put_string(hello + n, "2.0");
    n += put_string(hello + n, "max-frame-size");
    hello[n++] = T_UINT32;
    n += put_varint(hello + n, MAX_FRAME_SIZE);
    n += put_string(hello + n, "capabilities");
    hello[n++] = T_STRING;
    n += put_string(hello + n, "pipelining");
    n += put_string(hello + n, "engine-id");
    hello[n++] = T_STRING;
    n += put_string(hello + n, "spop-load");
    put_u32be(hello, (uint32_t)(n - 4));
    if (write(fd, hello, n) != (ssize_t)n) die("connection %d: sending HAPROXY-HELLO: %s", index, strerror(errno));

    static uint8_t frame[4 + MAX_FRAME_SIZE];
    read_exact(fd, frame, 4, index);
    uint32_t len = get_u32be(frame);
    if (len > MAX_FRAME_SIZE || len < 9) die("connection %d: HELLO answer of %u bytes (max-frame-size %d)", index, len, MAX_FRAME_SIZE);
    read_exact(fd, frame + 4, len, index);
    const uint8_t *f = frame + 4;
    size_t pos = 5;
    uint64_t sid, fid;
    if (!get_varint(f, len, &pos, &sid) || !get_varint(f, len, &pos, &fid)) die("connection %d: malformed HELLO answer header", index);
    const uint8_t *payload = f + pos;
    size_t plen = len - pos;
    if (f[0] == AGENT_DISCONNECT) die_disconnect(index, payload, plen, "instead of AGENT-HELLO");
    if (f[0] != AGENT_HELLO) die("connection %d: expected AGENT-HELLO (101), got frame type %u", index, f[0]);

    tdata_t v;
    if (!kv_find(payload, plen, "version", &v, "AGENT-HELLO") || v.type != T_STRING || v.len != 3 || memcmp(v.bytes, "2.0", 3) != 0)
        die("connection %d: AGENT-HELLO without version \"2.0\"", index);
    if (!kv_find(payload, plen, "max-frame-size", &v, "AGENT-HELLO") || v.type != T_UINT32 || v.u < 256 || v.u > MAX_FRAME_SIZE)
        die("connection %d: AGENT-HELLO max-frame-size missing or outside [256, %d]", index, MAX_FRAME_SIZE);
    if (v.u < notify_frame_max) die("connection %d: agent max-frame-size %llu is too small for the NOTIFY", index, (unsigned long long)v.u);
    if (!kv_find(payload, plen, "capabilities", &v, "AGENT-HELLO") || v.type != T_STRING) die("connection %d: AGENT-HELLO without capabilities", index);
    if (opt.inflight > 1 && !memmem(v.bytes, v.len, "pipelining", 10))
        die("connection %d: the agent did not accept \"pipelining\": cannot keep %d NOTIFY in flight", index, opt.inflight);

    int flags = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, flags | O_NONBLOCK);
    return fd;
}

/* ---------------------------------------------------------------- the loop */

static void set_want_write(worker_t *w, conn_t *c, bool want) {
    if (c->want_write == want) return;
    c->want_write = want;
    struct epoll_event ev = {.events = EPOLLIN | (want ? EPOLLOUT : 0), .data.ptr = c};
    if (epoll_ctl(w->epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0) die("epoll_ctl: %s", strerror(errno));
}

/* Writes what is pending; on EAGAIN keeps the rest and waits for EPOLLOUT. */
static void flush(worker_t *w, conn_t *c) {
    while (c->out_off < c->out_len) {
        ssize_t n = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            die("connection %d: write: %s", c->index, strerror(errno));
        }
        c->out_off += (size_t)n;
    }
    if (c->out_off == c->out_len) c->out_off = c->out_len = 0;
    set_want_write(w, c, c->out_len > 0);
}

static void reserve_out(conn_t *c, size_t need) {
    if (c->out_len + need <= c->out_cap) return;
    memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
    c->out_len -= c->out_off;
    c->out_off = 0;
    if (c->out_len + need > c->out_cap) die("internal: output buffer overflow");
}

/* Queues the NOTIFY of `slot` (stream-id slot+1, the next frame-id); the caller stamps and writes the batch. */
static void queue_notify(worker_t *w, conn_t *c, int slot) {
    reserve_out(c, notify_frame_max);
    uint8_t *p = c->out + c->out_len;
    uint64_t frame_id = c->next_frame_id++;
    size_t n = put_header(p, NOTIFY, (uint64_t)slot + 1, frame_id);
    if (opt.traced_every > 0 && frame_id % (uint64_t)opt.traced_every == 0) {
        memcpy(p + n, traced_payload, traced_payload_len);
        n += traced_payload_len;
    } else if (opt.propagate_all) {
        memcpy(p + n, unsampled_payload, unsampled_payload_len);
        n += unsampled_payload_len;
    } else {
        memcpy(p + n, notify_payload, notify_payload_len);
        n += notify_payload_len;
    }
    put_u32be(p, (uint32_t)(n - 4));
    c->out_len += n;
    c->slot_frame_id[slot] = frame_id;
    c->outstanding++;
    w->batch[w->nbatch++] = slot;
}

static void send_batch(worker_t *w, conn_t *c) {
    if (w->nbatch == 0) return;
    uint64_t t = now_ns();
    for (int i = 0; i < w->nbatch; i++) c->slot_sent_ns[w->batch[i]] = t;
    w->nbatch = 0;
    if (!c->want_write) flush(w, c);
}

static void close_conn(worker_t *w, conn_t *c) {
    epoll_ctl(w->epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->state = CLOSED;
    w->open--;
}

static void start_disconnect(worker_t *w, conn_t *c) {
    reserve_out(c, disconnect_frame_len);
    memcpy(c->out + c->out_len, disconnect_frame, disconnect_frame_len);
    c->out_len += disconnect_frame_len;
    c->state = DISCONNECTING;
    if (!c->want_write) flush(w, c);
}

/* Checks a LIST-OF-ACTIONS; with --expect-var the first action must be set-var of that name. */
static void check_actions(const conn_t *c, const uint8_t *p, size_t len, uint64_t sid, uint64_t fid) {
    size_t pos = 0;
    for (int i = 0; pos < len; i++) {
        if (len - pos < 3) die("connection %d: ACK %llu/%llu: truncated action", c->index, (unsigned long long)sid, (unsigned long long)fid);
        uint8_t type = p[pos], nargs = p[pos + 1], scope = p[pos + 2];
        pos += 3;
        uint64_t nlen;
        if (scope > 4 || !get_varint(p, len, &pos, &nlen) || nlen > len - pos)
            die("connection %d: ACK %llu/%llu: malformed action %d", c->index, (unsigned long long)sid, (unsigned long long)fid, i);
        const uint8_t *name = p + pos;
        pos += (size_t)nlen;
        tdata_t value;
        if (type == 1 && nargs == 3) {
            if (!get_typed(p, len, &pos, &value))
                die("connection %d: ACK %llu/%llu: malformed set-var value", c->index, (unsigned long long)sid, (unsigned long long)fid);
        } else if (!(type == 2 && nargs == 2)) {
            die("connection %d: ACK %llu/%llu: action type %u with %u arguments", c->index, (unsigned long long)sid, (unsigned long long)fid, type, nargs);
        }
        if (i == 0 && opt.expect_var && (type != 1 || nlen != strlen(opt.expect_var) || memcmp(name, opt.expect_var, nlen) != 0))
            die("connection %d: ACK %llu/%llu: first action is not set-var %s (type %u, name \"%.*s\")", c->index, (unsigned long long)sid,
                (unsigned long long)fid, opt.expect_var, type, (int)nlen, (const char *)name);
    }
    if (opt.expect_var && len == 0)
        die("connection %d: ACK %llu/%llu: no action, expected set-var %s", c->index, (unsigned long long)sid, (unsigned long long)fid, opt.expect_var);
}

static void on_frame(worker_t *w, conn_t *c, const uint8_t *f, size_t len, uint64_t now, bool sending) {
    if (len < 7) die("connection %d: frame of %zu bytes", c->index, len);
    uint8_t type = f[0];
    uint32_t flags = get_u32be(f + 1);
    size_t pos = 5;
    uint64_t sid, fid;
    if (!get_varint(f, len, &pos, &sid) || !get_varint(f, len, &pos, &fid)) die("connection %d: malformed frame header", c->index);
    if (type == AGENT_DISCONNECT) {
        if (c->state == DISCONNECTING && c->outstanding == 0) {
            close_conn(w, c);
            return;
        }
        die_disconnect(c->index, f + pos, len - pos, c->outstanding ? "with NOTIFY outstanding" : "while running");
    }
    if (type != ACK) die("connection %d: unexpected frame type %u (stream-id %llu, frame-id %llu)", c->index, type, (unsigned long long)sid, (unsigned long long)fid);
    if (!(flags & FLAG_FIN)) die("connection %d: ACK %llu/%llu without FIN (flags 0x%x)", c->index, (unsigned long long)sid, (unsigned long long)fid, flags);
    if (sid < 1 || sid > (uint64_t)opt.inflight) die("connection %d: ACK for unknown stream-id %llu (frame-id %llu)", c->index, (unsigned long long)sid, (unsigned long long)fid);
    int slot = (int)sid - 1;
    if (c->slot_frame_id[slot] != fid)
        die("connection %d: ACK stream-id %llu frame-id %llu, but the NOTIFY outstanding on that stream has frame-id %llu%s", c->index,
            (unsigned long long)sid, (unsigned long long)fid, (unsigned long long)c->slot_frame_id[slot], c->slot_frame_id[slot] ? "" : " (none)");
    check_actions(c, f + pos, len - pos, sid, fid);
    c->slot_frame_id[slot] = 0;
    c->outstanding--;
    if (now >= measure_start_ns && now < measure_end_ns) {
        w->frames++;
        hist_record(&w->hist, now - c->slot_sent_ns[slot]);
    }
    if (sending) queue_notify(w, c, slot);
}

/* Reads everything available, handles whole frames, answers the ACKs with one write. */
static void on_readable(worker_t *w, conn_t *c) {
    for (;;) {
        uint8_t *buf = w->rbuf;
        size_t len = c->carry_len;
        memcpy(buf, c->carry, len);
        c->carry_len = 0;
        ssize_t n = read(c->fd, buf + len, READ_BUF_SIZE - len);
        if (n == 0) {
            if (c->state == DISCONNECTING && c->outstanding == 0) {
                close_conn(w, c);
                return;
            }
            die("connection %d: closed by the agent (%d NOTIFY outstanding)", c->index, c->outstanding);
        }
        if (n < 0) {
            memcpy(c->carry, buf, len);
            c->carry_len = len;
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) break;
            die("connection %d: read: %s", c->index, strerror(errno));
        }
        bool full = (size_t)n == READ_BUF_SIZE - len;
        len += (size_t)n;
        uint64_t now = now_ns();
        bool sending = c->state == RUNNING && now < measure_end_ns;
        size_t pos = 0;
        while (len - pos >= 4) {
            uint32_t flen = get_u32be(buf + pos);
            if (flen > MAX_FRAME_SIZE) die("connection %d: frame of %u bytes exceeds max-frame-size %d", c->index, flen, MAX_FRAME_SIZE);
            if (len - pos - 4 < flen) break;
            on_frame(w, c, buf + pos + 4, flen, now, sending);
            if (c->state == CLOSED) return;
            pos += 4 + flen;
        }
        memcpy(c->carry, buf + pos, len - pos);
        c->carry_len = len - pos;
        send_batch(w, c);
        if (!full) break;
    }
}

/* After the measured period: no more NOTIFY; once a connection has no outstanding ACK it says HAPROXY-DISCONNECT. */
static void wind_down(worker_t *w, uint64_t now) {
    for (int i = 0; i < w->nconns; i++) {
        conn_t *c = w->conns[i];
        if (c->state == RUNNING) c->state = DRAINING;
        if (c->state == DRAINING && c->outstanding == 0) start_disconnect(w, c);
        if (c->state != CLOSED && now >= measure_end_ns + DRAIN_NS) {
            if (c->outstanding > 0) die("connection %d: %d ACKs still missing 2 s after the end: the agent lost NOTIFY frames", c->index, c->outstanding);
            close_conn(w, c); /* HAPROXY-DISCONNECT sent, no AGENT-DISCONNECT: close anyway */
        }
    }
}

static void *worker_main(void *arg) {
    worker_t *w = arg;
    struct epoll_event events[256];
    for (int i = 0; i < w->nconns; i++) {
        conn_t *c = w->conns[i];
        for (int s = 0; s < opt.inflight; s++) queue_notify(w, c, s);
        send_batch(w, c);
    }
    while (w->open > 0) {
        uint64_t now = now_ns();
        if (now >= measure_end_ns) wind_down(w, now);
        if (w->open == 0) break;
        uint64_t next = now < measure_end_ns ? measure_end_ns : measure_end_ns + DRAIN_NS;
        int timeout_ms = next > now ? (int)((next - now) / 1000000 + 1) : 0;
        if (timeout_ms > 100) timeout_ms = 100;
        int n = epoll_wait(w->epfd, events, 256, timeout_ms);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait: %s", strerror(errno));
        }
        for (int i = 0; i < n; i++) {
            conn_t *c = events[i].data.ptr;
            if (c->state == CLOSED) continue;
            if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) on_readable(w, c);
            if (c->state != CLOSED && (events[i].events & EPOLLOUT)) flush(w, c);
        }
    }
    return NULL;
}

/* ---------------------------------------------------------------- main */

static void usage(void) {
    fputs("usage: spop-load --host H --port N [--connections C] [--inflight W] [--duration-ms D] [--warmup-ms M] [--threads T] "
          "[--expect-var NAME] [--traced-every N [--propagate-all]]\n",
          stderr);
    exit(1);
}

static long parse_long(const char *s, long min, long max, const char *name) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || end == s || v < min || v > max) {
        fprintf(stderr, "spop-load: --%s must be an integer in [%ld, %ld], got \"%s\"\n", name, min, max, s);
        exit(1);
    }
    return v;
}

static void parse_args(int argc, char **argv) {
    static const struct option longs[] = {
        {"host", required_argument, 0, 'h'},        {"port", required_argument, 0, 'p'},     {"connections", required_argument, 0, 'c'},
        {"inflight", required_argument, 0, 'w'},    {"duration-ms", required_argument, 0, 'd'}, {"warmup-ms", required_argument, 0, 'm'},
        {"threads", required_argument, 0, 't'},     {"expect-var", required_argument, 0, 'e'},
        {"traced-every", required_argument, 0, 'r'}, {"propagate-all", no_argument, 0, 'a'}, {0, 0, 0, 0},
    };
    int ch;
    while ((ch = getopt_long(argc, argv, "", longs, NULL)) != -1) {
        switch (ch) {
        case 'h': opt.host = optarg; break;
        case 'p': parse_long(optarg, 1, 65535, "port"), opt.port = optarg; break;
        case 'c': opt.connections = (int)parse_long(optarg, 1, 10000, "connections"); break;
        case 'w': opt.inflight = (int)parse_long(optarg, 1, 100000, "inflight"); break;
        case 'd': opt.duration_ms = parse_long(optarg, 1, 86400000, "duration-ms"); break;
        case 'm': opt.warmup_ms = parse_long(optarg, 0, 86400000, "warmup-ms"); break;
        case 't': opt.threads = (int)parse_long(optarg, 1, 256, "threads"); break;
        case 'e': opt.expect_var = optarg; break;
        case 'r': opt.traced_every = parse_long(optarg, 0, 1000000000, "traced-every"); break;
        case 'a': opt.propagate_all = true; break;
        default: usage();
        }
    }
    if (!opt.port || optind != argc) usage();
    if (opt.propagate_all && opt.traced_every == 0) {
        fputs("spop-load: --propagate-all needs --traced-every N (1 NOTIFY in N sampled)\n", stderr);
        exit(1);
    }
    if (opt.threads > opt.connections) opt.threads = opt.connections;
}

static double cpu_seconds(const struct timeval *tv) {
    return (double)tv->tv_sec + (double)tv->tv_usec / 1e6;
}

static void sleep_until(uint64_t ns) {
    struct timespec ts = {(time_t)(ns / 1000000000ULL), (long)(ns % 1000000000ULL)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
    }
}

int main(int argc, char **argv) {
    parse_args(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    encode_static_frames();

    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai;
    int rc = getaddrinfo(opt.host, opt.port, &hints, &ai);
    if (rc != 0) die("cannot resolve %s: %s", opt.host, gai_strerror(rc));

    worker_t *workers = calloc((size_t)opt.threads, sizeof *workers);
    for (int t = 0; t < opt.threads; t++) {
        worker_t *w = &workers[t];
        w->epfd = epoll_create1(0);
        w->conns = calloc((size_t)opt.connections, sizeof *w->conns);
        w->batch = calloc((size_t)opt.inflight, sizeof *w->batch);
        w->rbuf = malloc(READ_BUF_SIZE);
        if (w->epfd < 0 || !w->conns || !w->batch || !w->rbuf) die("out of memory");
    }
    for (int i = 0; i < opt.connections; i++) {
        conn_t *c = calloc(1, sizeof *c);
        if (!c) die("out of memory");
        c->index = i;
        c->fd = open_connection(ai, i);
        c->next_frame_id = 1;
        c->slot_frame_id = calloc((size_t)opt.inflight, sizeof(uint64_t));
        c->slot_sent_ns = calloc((size_t)opt.inflight, sizeof(uint64_t));
        c->out_cap = (size_t)opt.inflight * notify_frame_max + disconnect_frame_len;
        c->out = malloc(c->out_cap);
        if (!c->slot_frame_id || !c->slot_sent_ns || !c->out) die("out of memory");
        worker_t *w = &workers[i % opt.threads];
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0) die("epoll_ctl: %s", strerror(errno));
        w->conns[w->nconns++] = c;
        w->open++;
    }
    freeaddrinfo(ai);

    uint64_t t0 = now_ns();
    measure_start_ns = t0 + (uint64_t)opt.warmup_ms * 1000000ULL;
    measure_end_ns = measure_start_ns + (uint64_t)opt.duration_ms * 1000000ULL;
    for (int t = 0; t < opt.threads; t++)
        if (pthread_create(&workers[t].id, NULL, worker_main, &workers[t]) != 0) die("pthread_create failed");

    struct rusage r0, r1;
    sleep_until(measure_start_ns);
    getrusage(RUSAGE_SELF, &r0);
    sleep_until(measure_end_ns);
    getrusage(RUSAGE_SELF, &r1);
    for (int t = 0; t < opt.threads; t++) pthread_join(workers[t].id, NULL);

    static hist_t total;
    uint64_t frames = 0;
    for (int t = 0; t < opt.threads; t++) {
        const hist_t *h = &workers[t].hist;
        for (size_t i = 0; i < HIST_BUCKETS; i++) total.counts[i] += h->counts[i];
        total.total += h->total;
        if (h->max_ns > total.max_ns) total.max_ns = h->max_ns;
        frames += workers[t].frames;
    }
    double seconds = (double)(measure_end_ns - measure_start_ns) / 1e9;
    double user = cpu_seconds(&r1.ru_utime) - cpu_seconds(&r0.ru_utime);
    double sys = cpu_seconds(&r1.ru_stime) - cpu_seconds(&r0.ru_stime);
    printf("{\"frames\":%llu,\"seconds\":%.6f,\"framesPerSecond\":%.1f,\"p50Us\":%.1f,\"p99Us\":%.1f,\"p999Us\":%.1f,\"maxUs\":%.1f,"
           "\"connections\":%d,\"inflight\":%d,\"threads\":%d,\"cpuUserS\":%.3f,\"cpuSysS\":%.3f,\"cpuPercent\":%.1f}\n",
           (unsigned long long)frames, seconds, (double)frames / seconds, hist_percentile_us(&total, 0.50), hist_percentile_us(&total, 0.99),
           hist_percentile_us(&total, 0.999), (double)total.max_ns / 1000.0, opt.connections, opt.inflight, opt.threads, user, sys,
           100.0 * (user + sys) / seconds);
    return 0;
}
