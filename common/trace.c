/* trace: see trace.h. */
#include "trace.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "symtab.h"

int trace_fd = -1;
static long (*coro_source)(void);

static const struct {
    const char *name;
    char ph;
} kinds[TRACE_NUM_KINDS + 1] = {
    [TRACE_ACCEPT] = {"accept", 'I'},
    [TRACE_REQ_BEGIN] = {"request", 'B'},
    [TRACE_REQ_END] = {"request", 'E'},
    [TRACE_BILL_BEGIN] = {"bill", 'B'},
    [TRACE_BILL_END] = {"bill", 'E'},
    [TRACE_CB_BEGIN] = {"callback", 'B'},
    [TRACE_CB_END] = {"callback", 'E'},
    [TRACE_CLIENT_BEGIN] = {"client", 'B'},
    [TRACE_CLIENT_FIRST] = {"first_byte", 'I'},
    [TRACE_CLIENT_END] = {"client", 'E'},
    [TRACE_BLOCKED_BEGIN] = {"blocked", 'B'},
    [TRACE_BLOCKED_END] = {"blocked", 'E'},
    [TRACE_RUN_BEGIN] = {"run", 'B'},
    [TRACE_RUN_END] = {"run", 'E'},
    [TRACE_CO_BEGIN] = {"co", 'B'},
    [TRACE_CO_END] = {"co", 'E'},
    [TRACE_CO_WAKE] = {"wake", 'I'},
    [TRACE_CO_SPAWN] = {"spawn", 'I'},
    [TRACE_COUNT_READY] = {"ready", 'C'},
    [TRACE_COUNT_CONNS] = {"conns", 'C'},
    [TRACE_COUNT_JOBS] = {"jobs", 'C'},
    [TRACE_NUM_KINDS] = {"stage", 'M'},
};

const char *trace_kind_name(enum trace_kind kind)
{
    return (unsigned)kind <= TRACE_NUM_KINDS ? kinds[kind].name : "?";
}

char trace_kind_phase(enum trace_kind kind)
{
    return (unsigned)kind <= TRACE_NUM_KINDS ? kinds[kind].ph : '?';
}

uint64_t trace_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* ---- who writes: pid and tid, asked once ----
 * getpid and gettid are system calls. Each thread asks for its tid once,
 * and the pid is asked once per process: a fork (02's children) bumps
 * fork_gen in the child, so the thread that forked asks again. */
static atomic_long cached_pid;
static atomic_uint fork_gen;
static _Thread_local long cached_tid;
static _Thread_local unsigned cached_gen;

static void trace_after_fork(void)
{
    atomic_store(&cached_pid, 0);
    atomic_fetch_add(&fork_gen, 1);
}

/* Once per process, at the first trace_open: a forked child asks for its
 * pid again, and an exit writes what the loop thread still holds. */
static void trace_register_hooks(void)
{
    pthread_atfork(NULL, NULL, trace_after_fork);
    atexit(trace_flush);
}

static long current_pid(void)
{
    long pid = atomic_load_explicit(&cached_pid, memory_order_relaxed);
    if (pid == 0) {
        pid = (long)getpid();
        atomic_store_explicit(&cached_pid, pid, memory_order_relaxed);
    }
    return pid;
}

static long current_tid(void)
{
    unsigned gen = atomic_load_explicit(&fork_gen, memory_order_relaxed) + 1;
    if (cached_gen != gen) {
        cached_tid = (long)syscall(SYS_gettid);
        cached_gen = gen;
    }
    return cached_tid;
}

/* ---- one line ---- */

/* Writes n in decimal at p; returns the end. snprintf would do, at four
 * times the cost, and a busy loop writes a dozen lines per request. */
static char *put_u64(char *p, uint64_t n)
{
    char tmp[20];
    int len = 0;
    do
        tmp[len++] = (char)('0' + n % 10);
    while ((n /= 10) > 0);
    while (len > 0)
        *p++ = tmp[--len];
    return p;
}

static char *put_long(char *p, long n)
{
    if (n < 0) {
        *p++ = '-';
        return put_u64(p, -(uint64_t)n);
    }
    return put_u64(p, (uint64_t)n);
}

/* Copies s (at most max bytes, up to its end) to p; returns the end. */
static char *put_str(char *p, const char *s, size_t max)
{
    size_t n = strnlen(s, max);
    memcpy(p, s, n);
    return p + n;
}

#define TRACE_LABEL_MAX 64

int trace_format(char *buf, uint64_t t_us, long pid, long tid, long co,
                 enum trace_kind kind, uint64_t id, const char *label)
{
    /* At most 20+1 + 3*(20+1) + 16+1 + 2 + 20 + 1+64 + 1+1 = 190 bytes,
     * within TRACE_LINE_MAX; test_trace writes the longest line. */
    char *p = buf;
    p = put_u64(p, t_us);
    *p++ = ' ';
    p = put_long(p, pid);
    *p++ = ' ';
    p = put_long(p, tid);
    *p++ = ' ';
    p = put_long(p, co);
    *p++ = ' ';
    p = put_str(p, trace_kind_name(kind), 16);
    *p++ = ' ';
    *p++ = trace_kind_phase(kind);
    *p++ = ' ';
    p = put_u64(p, id);
    if (label && *label) {
        *p++ = ' ';
        char *start = p;
        p = put_str(p, label, TRACE_LABEL_MAX);
        for (char *q = start; q < p; q++) /* one line, seven fields */
            if (*q == '\n' || *q == '\r')
                *q = ' ';
    }
    *p++ = '\n';
    *p = '\0';
    return (int)(p - buf);
}

/* ---- writing ---- */

/* A failing write (disk full) is reported once; tracing stays on, because
 * turning it off would be a write to trace_fd racing every reader. */
static atomic_flag write_failed = ATOMIC_FLAG_INIT;

static void trace_write(const char *text, size_t len)
{
    ssize_t n;
    do
        n = write(trace_fd, text, len);
    while (n < 0 && errno == EINTR);
    if ((n < 0 || (size_t)n != len) && !atomic_flag_test_and_set(&write_failed))
        fprintf(stderr, "trace: writing the trace failed (%s); events are "
                        "missing from it\n",
                n < 0 ? strerror(errno) : "short write");
}

/* A counter's line is written only when its value changed (per process:
 * a forked child starts from its parent's last values). */
static atomic_uint_least64_t counter_last[TRACE_NUM_KINDS];

static bool counter_unchanged(enum trace_kind kind, uint64_t value)
{
    /* Stored as value + 1, so that 0, the initial state, is "none yet". */
    return atomic_exchange_explicit(&counter_last[kind], value + 1,
                                    memory_order_relaxed) == value + 1;
}

/* The loop thread's buffer (see trace.h, "How lines are written"). One
 * thread per process gathers, the first whose loop blocks: 05 and 06 run
 * one loop per process, and a second loop (a test's) writes directly. */
#define TRACE_BATCH_SIZE 16384
static char batch[TRACE_BATCH_SIZE];
static size_t batch_len;
static atomic_bool batch_claimed;
static _Thread_local bool batching;

void trace_flush(void)
{
    if (batching && batch_len > 0 && trace_fd >= 0)
        trace_write(batch, batch_len);
    if (batching)
        batch_len = 0;
}

static void trace_put(enum trace_kind kind, uint64_t id, const char *label,
                      uint64_t t_us)
{
    if (trace_fd < 0 || (unsigned)kind >= TRACE_NUM_KINDS)
        return;
    if (kinds[kind].ph == 'C' && counter_unchanged(kind, id))
        return;
    if (kind == TRACE_BLOCKED_BEGIN && !batching &&
        !atomic_exchange(&batch_claimed, true))
        batching = true;
    char line[TRACE_LINE_MAX];
    long co = coro_source ? coro_source() : -1;
    int n = trace_format(line, t_us, current_pid(), current_tid(), co, kind,
                         id, label);
    if (!batching) {
        trace_write(line, (size_t)n);
        return;
    }
    if (batch_len + (size_t)n > sizeof batch)
        trace_flush();
    memcpy(batch + batch_len, line, (size_t)n);
    batch_len += (size_t)n;
    if (kind == TRACE_BLOCKED_BEGIN)
        trace_flush(); /* the thread sleeps now: its turn goes out */
}

/* "what n", "what" (n < 0) or nothing (what NULL) into buf. */
static const char *label_of(char *buf, const char *what, long n)
{
    if (!what)
        return NULL;
    if (n < 0)
        return what;
    char *p = put_str(buf, what, TRACE_LABEL_MAX - 22);
    *p++ = ' ';
    p = put_long(p, n);
    *p = '\0';
    return buf;
}

/* ---- the clients' ports ----
 * An accept asks the peer's port once and keeps it by fd, so the request
 * events that follow on the connection can carry it (the tool matches
 * them to loadgen's requests from that port). A fixed table, no lock:
 * the thread (or child) that serves a connection got its fd from the
 * acceptor after the accept, which orders the store before its loads. */
#define TRACE_PORTS 65536
static _Atomic uint16_t peer_port[TRACE_PORTS];

static long port_of(enum trace_kind kind, uint64_t fd)
{
    if (fd >= TRACE_PORTS)
        return -1;
    if (kind == TRACE_ACCEPT) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof ss;
        uint16_t port = 0;
        if (getpeername((int)fd, (struct sockaddr *)&ss, &len) == 0)
            port = ntohs(ss.ss_family == AF_INET6
                             ? ((struct sockaddr_in6 *)&ss)->sin6_port
                             : ((struct sockaddr_in *)&ss)->sin_port);
        atomic_store_explicit(&peer_port[fd], port, memory_order_relaxed);
    }
    uint16_t port = atomic_load_explicit(&peer_port[fd], memory_order_relaxed);
    return port ? port : -1;
}

void trace_event(enum trace_kind kind, const void *obj, uint64_t i)
{
    uint64_t id = (uint64_t)(uintptr_t)obj + i;
    long port = -1;
    if (kind == TRACE_ACCEPT || kind == TRACE_REQ_BEGIN)
        port = port_of(kind, id);
    char buf[TRACE_LABEL_MAX];
    trace_put(kind, id, label_of(buf, port >= 0 ? "port" : NULL, port),
              trace_now_us());
}

void trace_event_at(enum trace_kind kind, uint64_t id, const char *what,
                    long n, uint64_t t_us)
{
    char buf[TRACE_LABEL_MAX];
    trace_put(kind, id, label_of(buf, what, n), t_us);
}

void trace_note(enum trace_kind kind, uint64_t id, const char *what, long n)
{
    trace_event_at(kind, id, what, n, trace_now_us());
}

void trace_fn(enum trace_kind kind, uint64_t id, void (*fn)(void), int fd)
{
    char buf[TRACE_LABEL_MAX];
    const char *name = symtab_name((uintptr_t)fn);
    char *p = name ? put_str(buf, name, 40)
                   : buf + sprintf(buf, "%#lx", (unsigned long)(uintptr_t)fn);
    if (fd >= 0)
        p = put_long(put_str(p, " fd ", 4), fd);
    *p = '\0';
    trace_put(kind, id, buf, trace_now_us());
}

/* ---- on and off ---- */

int trace_open(const char *path, const char *label)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0)
        return -1;
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, trace_register_hooks);
    trace_close();
    trace_fd = fd;
    char line[TRACE_LINE_MAX];
    int n = trace_format(line, trace_now_us(), current_pid(), current_tid(),
                         -1, TRACE_NUM_KINDS, 0, label ? label : "?");
    trace_write(line, (size_t)n);
    return 0;
}

void trace_close(void)
{
    trace_flush();
    if (trace_fd >= 0)
        close(trace_fd);
    trace_fd = -1;
}

void trace_set_coro_source(long (*current_id)(void))
{
    coro_source = current_id;
}
