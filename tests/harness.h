/* harness: what the Check tests use to start servers and talk to them.
 * Servers are started on port 0 and their port read from the one stdout
 * line they print ("listening on http://HOST:PORT"). A started server gets
 * PR_SET_PDEATHSIG, so a crashed test never leaves one behind.
 * Binaries come from $STAGE_BIN_DIR (set by make: build, build/asan, ...). */
#ifndef TESTS_HARNESS_H
#define TESTS_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct proc {
    pid_t pid;
    int port;
    int log_fd;          /* read end of the server's stderr, or -1 */
    char name[64];
};

/* Whether the tests should run stage `name` (a row of a stage table): its
 * folder is in the tree (then its binary must be built and pass), and
 * $STAGES, if set (STAGES=02-fork,03-threads), names it. make test leaves
 * STAGES unset, so every stage in the tree runs. */
bool harness_stage_selected(const char *name);

/* Path of a built program: "$STAGE_BIN_DIR/name" (default "build/name"). */
const char *harness_bin(const char *name);

/* Starts program `name` with "--port 0" and args (NULL-terminated list, may
 * be NULL), extra environment entries env ("K=V", NULL-terminated, may be
 * NULL). Waits for the listening line; fails the test if it never comes.
 * stderr (the log) is kept readable through harness_read_log. */
void proc_start(struct proc *p, const char *name, const char *const *args,
                const char *const *env);

/* SIGTERM, then waits up to timeout_ms; SIGKILL after that. Returns the
 * exit status (0..255), 128+signal if killed by a signal, -1 on timeout. */
int proc_stop(struct proc *p, int timeout_ms);

/* Everything the server logged so far (drains the pipe into a buffer kept
 * in p); the returned string stays valid until the next call. */
const char *harness_read_log(struct proc *p);

struct http_result {
    long status;         /* 0 if the transfer failed */
    char *body;          /* malloc'd, NUL-terminated ("" if none) */
    double seconds;      /* wall time of the transfer */
    double start, end;   /* harness_now() at start and end */
};

/* Seconds on CLOCK_MONOTONIC. */
double harness_now(void);

/* One request with libcurl to 127.0.0.1:port. body may be NULL. */
void http_request(const char *method, int port, const char *path,
                  const char *body, struct http_result *r);

/* n identical requests started together (curl multi), each on its own
 * connection; out[] gets their results in start order. */
void http_parallel(const char *method, int port, const char *path,
                   const char *body, int n, struct http_result *out);

void http_result_free(struct http_result *r);

/* Raw socket to 127.0.0.1:port (blocking), or -1. */
int raw_connect(int port);

/* Sends len raw bytes on a new connection, then reads until the server
 * closes or timeout_ms passes. Returns what arrived (malloc'd). */
char *raw_exchange(int port, const void *bytes, size_t len, int timeout_ms);

/* Status code of the first response in raw text, or 0. */
int raw_status(const char *response);

/* Microsecond-free sleep helper. */
void harness_sleep_ms(int ms);

#endif
