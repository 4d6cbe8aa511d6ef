/* log: see log.h. */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* Set once in main before any thread starts, read-only afterwards. */
static const char *log_stage = "?";
static bool log_quiet;
static bool log_threads;
static long (*log_coroutine_id)(void);
static struct timespec log_start;

void log_init(const char *stage, bool quiet)
{
    log_stage = stage;
    log_quiet = quiet;
    clock_gettime(CLOCK_MONOTONIC, &log_start);
}

void log_show_threads(bool on) { log_threads = on; }

void log_set_coroutine_id_fn(long (*fn)(void)) { log_coroutine_id = fn; }

double log_elapsed(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - log_start.tv_sec) +
           (double)(now.tv_nsec - log_start.tv_nsec) / 1e9;
}

/* Formats "+   1.234s stage pid N [tid N] [co N] | " into buf. */
static int log_prefix(char *buf, size_t len, const char *level)
{
    int n = snprintf(buf, len, "+%8.3fs %s pid %d", log_elapsed(), log_stage,
                     (int)getpid());
    if (log_threads && n >= 0 && (size_t)n < len)
        n += snprintf(buf + n, len - (size_t)n, " tid %ld",
                      (long)syscall(SYS_gettid));
    long co = log_coroutine_id ? log_coroutine_id() : -1;
    if (co >= 0 && n >= 0 && (size_t)n < len)
        n += snprintf(buf + n, len - (size_t)n, " co %ld", co);
    if (n >= 0 && (size_t)n < len)
        n += snprintf(buf + n, len - (size_t)n, " | %s", level);
    return n;
}

/* One write(2) per line: concurrent writers never interleave inside a line.
 * A line longer than the buffer is cut, never split. */
static void log_write(const char *level, const char *fmt, va_list ap)
{
    char line[1024];
    int saved_errno = errno;
    int n = log_prefix(line, sizeof line, level);
    if (n < 0 || (size_t)n >= sizeof line - 1)
        n = 0;
    int m = vsnprintf(line + n, sizeof line - 1 - (size_t)n, fmt, ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof line - 2)
        len = sizeof line - 2;
    line[len++] = '\n';
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(STDERR_FILENO, line + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break; /* nowhere to report a failing stderr */
        off += (size_t)w;
    }
    errno = saved_errno; /* logging must not disturb the caller's errno */
}

void log_info(const char *fmt, ...)
{
    if (log_quiet)
        return;
    va_list ap;
    va_start(ap, fmt);
    log_write("", fmt, ap);
    va_end(ap);
}

void log_warn(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_write("WARNING: ", fmt, ap);
    va_end(ap);
}
