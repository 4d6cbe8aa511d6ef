/* config: the command line and environment every server shares
 * (docs/DESIGN.md), plus the few options one stage adds. --help prints them
 * and exits 0; a bad option prints why and exits 2. config_number, the one
 * reader of a number on a command line, serves the tools (loadgen,
 * main-service) as well. */
#ifndef COMMON_CONFIG_H
#define COMMON_CONFIG_H

#include <stdbool.h>

/* Options only some stages take; a stage passes the ones it uses. */
enum config_extra {
    CONFIG_MAX_CHILDREN = 1 << 0, /* 02: --max-children */
    CONFIG_MAX_THREADS = 1 << 1,  /* 03: --max-threads */
    CONFIG_CORO = 1 << 2,         /* 06: --blocking-bug --cpu-ms --offload
                                         --stack-kb --switch --stack */
    CONFIG_PREFORK = 1 << 3,      /* 02: --prefork --accept-lock */
    CONFIG_POOL = 1 << 4,         /* 03: --pool --queue */
    CONFIG_WORKERS = 1 << 5,      /* 05, 06: --workers --shared-listener */
    CONFIG_BACKEND = 1 << 6,      /* 05, 06: --backend */
};

struct config {
    const char *stage;        /* "01-blocking" */
    const char *host;         /* --host, default 127.0.0.1 */
    int port;                 /* --port, default 800N; 0 = any free port */
    int delay_ms;             /* --delay-ms, default 2000 */
    int jitter_ms;            /* --jitter-ms, default 0 */
    int header_timeout_ms;    /* --header-timeout-ms, default 10000: a
                                 request head must be complete this long
                                 after its first byte (CR/LF count); the
                                 deadline never moves. Past it: 408 */
    int body_timeout_ms;      /* --body-timeout-ms, default 10000: the body
                                 must be complete this long after the head
                                 ends. Past it: 408 */
    int idle_timeout_ms;      /* --idle-timeout-ms, default 10000: a
                                 connection with no byte of a request yet
                                 (new or kept alive), or a client not
                                 reading its answer, is closed after this */
    int max_jobs;             /* --max-jobs, default 256: async jobs accepted
                                 and not yet finished (bills or callback
                                 pending). Checked before answering: past
                                 it, 503 with Retry-After */
    int max_bills;            /* --max-bills, default 4096: bills of those
                                 jobs still waiting; same check, same 503 */
    int callback_deadline_ms; /* --callback-deadline-ms, default 120000: a
                                 callback is retried (backoff with jitter)
                                 until this long after its first try */
    int drain_ms;             /* --drain-ms, default 5000: after SIGINT/
                                 SIGTERM, what is in flight (answers,
                                 bills, callback retries) gets this long;
                                 then, or on a second signal, it is
                                 abandoned, and each job whose callback was
                                 not delivered is named (shutdown.h) */
    const char *outbox;       /* --outbox FILE, default none: async jobs
                                 written down before their ok, replayed at
                                 start (outbox.h) */
    bool outbox_sync;         /* --outbox-sync: and fdatasync'd before it */
    const char *main_service; /* --main-service / MAIN_SERVICE_URL */
    const char *token;        /* SECRET_TOKEN */
    bool token_is_default;
    bool quiet;               /* --quiet */
    const char *trace;        /* --trace FILE, default none: events appended
                                 to FILE (trace.h); opened by config_parse */
    int max_children;         /* 02, default 256 */
    int max_threads;          /* 03, default 1024 */
    bool blocking_bug;        /* 06 */
    int cpu_ms;               /* 06 */
    bool offload;             /* 06 */
    int stack_kb;             /* 06, default 64 */
    int prefork;              /* 02 --prefork N, default 0: a child per
                                 connection; N: N children forked at start,
                                 each accepting (UNP's pre-forked server) */
    bool accept_lock;         /* 02 --accept-lock: one prefork child at a
                                 time waits in poll+accept */
    int pool;                 /* 03 --pool N, default 0: a thread per
                                 connection; N: a fixed pool of N threads */
    int queue;                /* 03 --queue N, default 64: accepted
                                 connections waiting for a pool thread;
                                 past it, 503 */
    int workers;              /* 05, 06 --workers N, default 1: N worker
                                 processes, each with its own loop */
    bool shared_listener;     /* 05, 06 --shared-listener: one listener in
                                 every worker's epoll (EPOLLEXCLUSIVE)
                                 instead of one SO_REUSEPORT listener each */
    const char *coro_switch;  /* 06 --switch: "setjmp" (default) or
                                 "swapcontext" */
    const char *coro_stack;   /* 06 --stack: "separate" (default: a stack
                                 per coroutine) or "shared" (one stack,
                                 parked coroutines' frames copied out) */
    const char *backend;      /* 05, 06 --backend: the event loop's kernel
                                 interface, "epoll" (default) or "uring"
                                 (common/loop.h, loop_open) */
};

/* Fills cfg from defaults, the environment, then argv. Exits on --help or
 * on a bad option. description is one sentence for --help. */
void config_parse(struct config *cfg, int argc, char **argv,
                  const char *stage, int default_port, unsigned extras,
                  const char *description);

/* Reads s, a whole decimal number in [min, max], into *out: an optional
 * minus sign and digits, nothing before or after them. False, *out
 * untouched, for an empty string, trailing or leading junk ("12x", "1.5",
 * " 12", "+12", "0x1f"), a value outside [min, max] (a negative one when
 * min is 0) or one beyond a long (no silent clamp to LONG_MAX). The caller
 * says what was wrong: it knows the option's name. */
bool config_number(const char *s, long min, long max, long *out);

/* Logs the settings and warns when the default SECRET_TOKEN is in use. */
void config_log(const struct config *cfg);

/* One bill's simulated external call: delay_ms plus a random 0..jitter_ms.
 * seed is the caller's own (rand_r), so threads never share it. */
int config_bill_delay_ms(const struct config *cfg, unsigned *seed);

#endif
