/* log: see log.h. */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "utf8.h"

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

size_t log_escape(char *out, size_t outlen, const char *in, size_t inlen)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *s = (const unsigned char *)in;
    size_t o = 0;
    if (outlen == 0)
        return 0;
    for (size_t i = 0; i < inlen;) {
        unsigned cp = 0;
        size_t len = utf8_char_len(s + i, inlen - i, &cp);
        char esc[8];
        size_t elen = 0;
        if (len == 0 || cp < 0x20 || cp == 0x7f ||
            (cp >= 0x80 && cp <= 0x9f)) {
            /* A control (C0, DEL, or C1 such as U+009B, which some
             * terminals take for CSI) or a byte that is not UTF-8: shown
             * as \xNN, one per byte, so nothing reaches the terminal raw. */
            size_t n = len ? len : 1;
            if (o + 4 * n >= outlen)
                break;
            for (size_t k = 0; k < n; k++) {
                out[o++] = '\\';
                out[o++] = 'x';
                out[o++] = hex[s[i + k] >> 4];
                out[o++] = hex[s[i + k] & 15];
            }
            i += n;
            continue;
        }
        if (cp == '\\') {
            esc[elen++] = '\\'; /* so "\\x0a" in a request id cannot pass
                                   for an escaped newline */
            esc[elen++] = '\\';
        } else {
            for (size_t k = 0; k < len; k++)
                esc[elen++] = (char)s[i + k];
        }
        if (o + elen >= outlen)
            break; /* cut before a whole character, never inside one */
        for (size_t k = 0; k < elen; k++)
            out[o++] = esc[k];
        i += len;
    }
    out[o] = '\0';
    return o;
}

/* One write(2) per line: concurrent writers never interleave inside a line.
 * The message is escaped (log_escape): a request id with "\n" cannot forge
 * a line, nor "\u001b" paint the instructor's terminal. A line longer than
 * the buffer is cut, never split. */
static void log_write(const char *level, const char *fmt, va_list ap)
{
    char line[1024], msg[1024];
    int saved_errno = errno;
    int n = log_prefix(line, sizeof line, level);
    if (n < 0 || (size_t)n >= sizeof line - 1)
        n = 0;
    int m = vsnprintf(msg, sizeof msg, fmt, ap);
    size_t mlen = m < 0 ? 0 : (size_t)m < sizeof msg ? (size_t)m
                                                      : sizeof msg - 1;
    size_t len = (size_t)n + log_escape(line + n, sizeof line - 1 - (size_t)n,
                                        msg, mlen);
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
