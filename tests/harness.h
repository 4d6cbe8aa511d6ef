/* harness: what the Check tests use to start servers and talk to them,
 * the one table of stages and their traits, the runner every test's main
 * ends with, and a scriptable fake main service. Servers are started on port 0 and their port read from the one stdout
 * line they print ("listening on http://HOST:PORT"). A started server gets
 * PR_SET_PDEATHSIG, so a crashed test never leaves one behind.
 * Binaries come from $STAGE_BIN_DIR (set by make: build, build/asan, ...;
 * make test-cross sets build/arm64/run, where each program is a wrapper
 * that execs qemu-user on the real one in place, so a started server's
 * pid is still the server's: tests/cross/run.sh). */
#ifndef TESTS_HARNESS_H
#define TESTS_HARNESS_H

#include <check.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct proc {
    pid_t pid;
    int port;
    int log_fd;          /* read end of the server's stderr, or -1 */
    char name[64];
};

/* ---- the stages, and what each model promises ---- */

/* One row per stage. The integration tests loop over this table with Check
 * loop tests (tcase_add_loop_test(tc, t, 0, HARNESS_NUM_STAGES)), _i being
 * the row, so a new stage is one new row here. A trait says where a model
 * differs by design; every test reads the same answer for the same stage. */
struct stage_traits {
    const char *name;   /* folder, binary in build/, and "stage" in GET / */
    /* Serves others while a request waits, a callback is retried or a
     * client stalls: concurrent requests overlap (01 queues them). */
    bool overlaps;
    bool keep_alive;    /* serves several requests per connection (01 closes) */
    /* 100 held clients reach a 64-descriptor limit. 01 holds one
     * connection (the rest wait in the backlog, which costs no descriptor);
     * 02's parent closes its copy of each socket right after fork. */
    bool exhausts;
    /* Takes --backend (an event loop on epoll or io_uring): with
     * STAGE_BACKEND=uring in the environment, harness_stage_start runs it
     * on io_uring (make test-uring). */
    bool backends;
};

#define HARNESS_NUM_STAGES 6
extern const struct stage_traits harness_stages[HARNESS_NUM_STAGES];

/* harness_stage_selected for row `row` of harness_stages. */
bool harness_row_selected(int row);

/* Whether the tests should run stage `name` (a row of a stage table): its
 * folder is in the tree (then its binary must be built and pass), and
 * $STAGES, if set (STAGES=02-fork,03-threads), names it. make test leaves
 * STAGES unset, so every stage in the tree runs. */
bool harness_stage_selected(const char *name);

/* Path of a built program: "$STAGE_BIN_DIR/name" (default "build/name"). */
const char *harness_bin(const char *name);

/* The whole of a text file, NUL-terminated (malloc'd; NULL if it cannot
 * be read). */
char *harness_read_file(const char *path);

/* Reads a just-started server's stdout (fd) until its "listening on
 * http://HOST:PORT" line and returns PORT; -1 if pid exits first, the
 * line is something else, or 20 s pass (sanitizer builds start slowly). */
int harness_wait_listening(int fd, pid_t pid);

/* "Threads:" of /proc/pid/status; -1 if pid is gone. Safe to call from
 * a test's helper threads (it asserts nothing). */
int harness_thread_count(pid_t pid);

/* The children of pid, from /proc: returns how many there are, stores the
 * first max of their pids in kids (may be NULL when max is 0) and counts
 * the zombies (state Z) among them in *zombies. */
int harness_children_of(pid_t pid, pid_t *kids, int max, int *zombies);

/* Sends all n bytes (MSG_NOSIGNAL, EINTR retried) or fails the test. */
void harness_send_all(int fd, const void *data, size_t n);
/* The same for a NUL-terminated text. */
void harness_send_text(int fd, const char *text);

/* Reads until the peer closes or timeout_ms pass; returns what came
 * (malloc'd). *reset: the end was a reset (ECONNRESET), not a FIN;
 * *timed_out: the time ran out first. Either may be NULL. */
char *harness_read_to_end(int fd, int timeout_ms, bool *reset,
                          bool *timed_out);

/* Appends printf-style text to the malloc'd string *buf (NULL: empty);
 * out of memory, *buf is left as it was. For messages built line by line. */
void harness_appendf(char **buf, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Starts program `name` with "--port 0" and args (NULL-terminated list, may
 * be NULL), extra environment entries env ("K=V", NULL-terminated, may be
 * NULL). Waits for the listening line; fails the test if it never comes.
 * stderr (the log) is kept readable through harness_read_log. */
void proc_start(struct proc *p, const char *name, const char *const *args,
                const char *const *env);

/* proc_start, with RLIMIT_NOFILE (soft and hard) set to max_fds in the
 * started program before it runs (0: inherited). A limit set from outside
 * once a server runs (prlimit) would not reach an io_uring multishot
 * accept it had already submitted: the kernel copies the limit into the
 * request when it is submitted. */
void proc_start_limited(struct proc *p, const char *name,
                        const char *const *args, const char *const *env,
                        int max_fds);

/* How a test starts a stage (harness_stage_start). A field left 0 or NULL
 * adds no option, so the stage's own default holds. */
struct stage_opts {
    int delay_ms;             /* --delay-ms, each bill's wait (for none,
                                 put "--delay-ms", "0" in args) */
    int client_timeout_ms;    /* --idle-, --header- and --body-timeout-ms */
    const char *main_url;     /* --main-service */
    int callback_deadline_ms; /* --callback-deadline-ms */
    const char *const *args;  /* then these, NULL-ended; an option given
                                 twice takes its last value */
    int max_fds;              /* > 0: the stage starts with at most this
                                 many descriptors (RLIMIT_NOFILE, soft and
                                 hard, as a low `ulimit -n` in its shell) */
};

/* The token every stage started by harness_stage_start checks callbacks
 * with (SECRET_TOKEN): give a main service the same one. */
#define HARNESS_TOKEN "test-token"

/* Starts stage `name` (its folder: "03-threads") as proc_start does, with
 * SECRET_TOKEN=HARNESS_TOKEN and the options of o (NULL: none); a stage
 * that takes --backend gets --backend $STAGE_BACKEND first when that is
 * set (o's args may still say otherwise). The words of
 * $HARNESS_STAGE_ARGS, if set, come before o's args too: the same tests
 * against another mode of a stage (STAGES=06-coroutines
 * HARNESS_STAGE_ARGS='--stack shared'). Fails the test if it does not
 * start. */
void harness_stage_start(struct proc *p, const char *name,
                         const struct stage_opts *o);

/* SIGTERM, then proc_wait. A stage that has had a SIGTERM already takes
 * this second one as "stop now" (shutdown.h): to let it finish its drain,
 * call proc_wait instead. */
int proc_stop(struct proc *p, int timeout_ms);

/* Waits up to timeout_ms for p to exit, without a signal; SIGKILL after
 * that. Returns the exit status (0..255), 128+signal if killed by a
 * signal, -1 on timeout. */
int proc_wait(struct proc *p, int timeout_ms);

/* Everything the server logged so far (drains the pipe into a buffer kept
 * in p); the returned string stays valid until the next call. */
const char *harness_read_log(struct proc *p);

/* The whole log of the last server proc_wait (or proc_stop) saw exit, its
 * last lines included; valid until the next proc_wait. */
const char *harness_exit_log(void);

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

/* ---- one HTTP response, read off a raw connection ----
 *
 * A response is its head (status line and headers through the blank
 * line), then as many bytes of body as its Content-Length says; a 1xx
 * interim answer has none. Every server here frames its answers so. */

struct harness_response {
    int status;        /* the status line's code */
    char *text;        /* the whole response, NUL-terminated (malloc'd) */
    size_t head_len;   /* text[0..head_len) is the head */
    const char *body;  /* text + head_len: body_len bytes, then a NUL */
    size_t body_len;
    bool close;        /* its Connection header says close */
    bool keep_alive;   /* its Connection header says keep-alive */
};

/* How harness_read_response ended. */
enum harness_read {
    HARNESS_READ_OK,      /* a whole response */
    HARNESS_READ_CLOSED,  /* the peer closed (FIN or reset) before a byte */
    HARNESS_READ_GARBAGE, /* not an HTTP response (or a head over 64 KiB),
                             or one cut short by the close */
    HARNESS_READ_TIMEOUT, /* no whole response within the time */
};

/* Reads one response from fd (blocking or not) within timeout_ms, and not
 * a byte past it: what follows (a pipelined answer, the close) stays in
 * the socket for the next read. On HARNESS_READ_OK *r holds the response
 * (harness_response_free); otherwise *r is empty. Fails no test itself. */
enum harness_read harness_read_response(int fd, int timeout_ms,
                                        struct harness_response *r);

/* The whole text of the next response on fd (malloc'd), or NULL if none
 * came whole within timeout_ms: harness_read_response for tests that look
 * at an answer as text. */
char *harness_read_response_text(int fd, int timeout_ms);

void harness_response_free(struct harness_response *r);

/* A harness_read result in words, for messages ("timed out"...). */
const char *harness_read_name(enum harness_read how);

/* For a reader that keeps its own buffer: the size of the response at the
 * start of buf[0..len) once its head has come (compare it with len: the
 * body may still be on its way), 0 while the head has not, -1 if buf does
 * not hold an HTTP response. *head_len and *status, either may be NULL,
 * get the head's size and the status code. */
long harness_response_frame(const char *buf, size_t len, size_t *head_len,
                            int *status);

/* The value of header `name` (any case) in a head of head_len bytes, its
 * leading blanks skipped; it runs to the next "\r\n". NULL if absent. */
const char *harness_header(const char *head, size_t head_len,
                           const char *name);

/* Microsecond-free sleep helper. */
void harness_sleep_ms(int ms);

/* A listening TCP socket on 127.0.0.1, on a free port (*port gets it).
 * Nobody accepts from it until the caller does: connections complete in
 * the kernel's backlog, requests are sent and no answer ever comes. */
int harness_listen(int *port);

/* Every test program's main ends here: runs suite s with Check's runner
 * (CK_NORMAL prints the "N%: Checks: X, Failures: Y, Errors: Z" line),
 * frees it, and returns main's exit status: 0 if every test passed. */
int harness_run(Suite *s);

/* True if $HARNESS_SKIP (test names, separated by spaces) names test; it
 * then prints that the test is skipped. For what an environment cannot do
 * at all: make test-cross names the few tests qemu-user cannot run and
 * prints why (tests/cross/run.sh). A test that calls it begins with
 *   if (harness_skip("its_name")) return; */
bool harness_skip(const char *test);

/* ---- a scriptable fake main service (tests/fake_main.c) ----
 *
 * What a stage calls back when the test needs the main service to
 * misbehave. It listens at once (so a stage can be given its URL); once
 * running, a thread of the test accepts one connection at a time, reads
 * one request (head and Content-Length body), records it, waits delay_ms
 * (cut short by fake_main_close), answers the next status of its script
 * with "Connection: close" and closes. Never run, it is a main service
 * that hangs: connections wait in the backlog and get no answer.
 *
 * Run it only after the test's proc_start calls: a fork copies only the
 * calling thread, so a child of a process with a second thread running
 * could inherit a lock that nobody will ever release. */
#define FAKE_MAIN_MAX_STATUSES 8
#define FAKE_MAIN_MAX_REQUESTS 16  /* recorded; more are counted only */

struct fake_main {
    int port;                /* 127.0.0.1:port, to give to a stage */
    /* The rest is the fake's own: read it through the functions below. */
    int lfd;
    int delay_ms;
    int statuses[FAKE_MAIN_MAX_STATUSES];
    const char *headers[FAKE_MAIN_MAX_STATUSES]; /* an extra header line */
    int num_statuses;
    pthread_t thread;
    bool running;
    pthread_mutex_t lock;    /* guards what follows */
    bool stop;
    int requests;
    double at[FAKE_MAIN_MAX_REQUESTS];
    char *heads[FAKE_MAIN_MAX_REQUESTS];
    char *bodies[FAKE_MAIN_MAX_REQUESTS];
};

/* Listens; request k will get statuses[min(k, n - 1)] (n >= 1; 2xx answers
 * carry {"status":"ok"}, others a {"detail"}), each after delay_ms. */
void fake_main_listen(struct fake_main *f, int delay_ms, const int *statuses,
                      int n);

/* Adds one header line (no CRLF: "Retry-After: 2") to the answer with
 * statuses[k]; call between fake_main_listen and fake_main_run. header
 * must outlive the fake. */
void fake_main_set_header(struct fake_main *f, int k, const char *header);

/* Starts the thread that serves. */
void fake_main_run(struct fake_main *f);

/* fake_main_listen, then fake_main_run, for tests that fork nothing after. */
void fake_main_start(struct fake_main *f, int delay_ms, const int *statuses,
                     int n);

/* Requests received (read whole) so far. */
int fake_main_requests(struct fake_main *f);

/* Waits until the fake has received n requests; fails the test after
 * timeout_ms. */
void fake_main_wait_requests(struct fake_main *f, int n, int timeout_ms);

/* What request k (0-based, < FAKE_MAIN_MAX_REQUESTS) was: its head (request
 * line and headers, up to and including the blank line), its body, and
 * when it was read (harness_now()); NULL / 0 if it has not come. The
 * strings stay valid until fake_main_close. */
const char *fake_main_head(struct fake_main *f, int k);
const char *fake_main_body(struct fake_main *f, int k);
double fake_main_at(struct fake_main *f, int k);

/* Stops the thread (a delayed answer is cut short), closes the listening
 * socket (a never-run fake resets what waits in its backlog) and frees
 * what was recorded. */
void fake_main_close(struct fake_main *f);

#endif
