/* log: one line per event on stderr, with a relative timestamp and who
 * handled it, so a student can read concurrency straight off the log.
 *
 *   +   2.004s 03-threads pid 4121 tid 4130 | bill 1: 3775.00 RUB
 *
 * Every message is escaped (log_escape) before it is written: whatever a
 * client sends, one event stays one line and no terminal control gets out.
 *
 * Thread-safe: each line is formatted into a local buffer and written with a
 * single write(2), so lines from threads and processes never interleave. */
#ifndef COMMON_LOG_H
#define COMMON_LOG_H

#include <stdbool.h>
#include <stddef.h>

/* Sets the stage name shown on every line and starts the relative clock.
 * quiet=true silences log_info (errors and warnings still print). */
void log_init(const char *stage, bool quiet);

/* Adds "tid N" to every line: for stages where threads do the work (03). */
void log_show_threads(bool on);

/* Adds "co N" to every line when fn returns a value >= 0: stage 06 passes a
 * function that returns the id of the running coroutine. */
void log_set_coroutine_id_fn(long (*fn)(void));

/* An ordinary event: a connection, a request, a bill computed. */
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Something went wrong but the server goes on; shown even with --quiet. */
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Copies in[0..inlen) into out (outlen bytes, NUL-terminated) for a log
 * line: valid UTF-8 text stays as it is, a backslash becomes "\\", and
 * control characters (C0, DEL, C1) and bytes that are not UTF-8 become
 * "\xNN" per byte. Cut at a character boundary when out is full. Returns
 * the length written. */
size_t log_escape(char *out, size_t outlen, const char *in, size_t inlen);

/* Seconds since log_init, on CLOCK_MONOTONIC. */
double log_elapsed(void);

#endif
