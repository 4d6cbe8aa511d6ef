/* trace: see trace.h. */
#include "trace.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

int trace_fd = -1;
static long (*coro_source)(void);

static const struct {
    const char *name;
    char ph;
} kinds[TRACE_NUM_KINDS] = {
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
};

uint64_t trace_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* gettid is a system call: each thread asks once. The pid it was asked
 * under comes along, because a forked child inherits the cache of the
 * thread that forked (02's children): a new pid means ask again. */
static _Thread_local long cached_tid, cached_pid;

static long current_tid(long pid)
{
    if (cached_pid != pid) {
        cached_tid = (long)syscall(SYS_gettid);
        cached_pid = pid;
    }
    return cached_tid;
}

int trace_format(char *buf, uint64_t t_us, long pid, long tid, long co,
                 enum trace_kind kind, uint64_t id, const char *label)
{
    const char *name = label ? "stage" : kinds[kind].name;
    char ph = label ? 'M' : kinds[kind].ph;
    int n = snprintf(buf, TRACE_LINE_MAX, "%llu %ld %ld %ld %s %c %llu%s%.*s\n",
                     (unsigned long long)t_us, pid, tid, co, name, ph,
                     (unsigned long long)id, label ? " " : "", 64,
                     label ? label : "");
    return n < TRACE_LINE_MAX ? n : TRACE_LINE_MAX - 1;
}

/* One write with O_APPEND: the line lands whole at the file's end. A
 * failing write (disk full) is reported once; tracing stays on, because
 * turning it off would be a write to trace_fd racing every reader. */
static atomic_flag write_failed = ATOMIC_FLAG_INIT;

static void trace_write(const char *line, size_t len)
{
    ssize_t n;
    do
        n = write(trace_fd, line, len);
    while (n < 0 && errno == EINTR);
    if ((n < 0 || (size_t)n != len) && !atomic_flag_test_and_set(&write_failed))
        fprintf(stderr, "trace: writing the trace failed (%s); events are "
                        "missing from it\n",
                n < 0 ? strerror(errno) : "short write");
}

void trace_event(enum trace_kind kind, const void *obj, uint64_t i)
{
    trace_event_at(kind, obj, i, trace_now_us());
}

void trace_event_at(enum trace_kind kind, const void *obj, uint64_t i,
                    uint64_t t_us)
{
    if (trace_fd < 0 || (unsigned)kind >= TRACE_NUM_KINDS)
        return;
    char line[TRACE_LINE_MAX];
    long pid = (long)getpid();
    long co = coro_source ? coro_source() : -1;
    int n = trace_format(line, t_us, pid, current_tid(pid), co, kind,
                         (uint64_t)(uintptr_t)obj + i, NULL);
    trace_write(line, (size_t)n);
}

int trace_open(const char *path, const char *label)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0)
        return -1;
    trace_close();
    trace_fd = fd;
    char line[TRACE_LINE_MAX];
    long pid = (long)getpid();
    int n = trace_format(line, trace_now_us(), pid, current_tid(pid), -1,
                         TRACE_ACCEPT, 0, label ? label : "?");
    trace_write(line, (size_t)n);
    return 0;
}

void trace_close(void)
{
    if (trace_fd >= 0)
        close(trace_fd);
    trace_fd = -1;
}

void trace_set_coro_source(long (*current_id)(void))
{
    coro_source = current_id;
}
