/* soak: minutes of mixed traffic with hostile connections against every
 * stage and the main service at once (make soak; issue 12). Private header
 * of tests/soak/: soak.c runs the schedule and reports, soak_traffic.c
 * drives the connections, soak_http.c writes and reads HTTP, soak_proc.c
 * starts processes and reads /proc. */
#ifndef SOAK_H
#define SOAK_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* ---- processes (soak_proc.c) ---- */

struct soak_proc {
    const char *name;     /* "05-epoll-callbacks", "main-service" */
    char log_path[512];   /* its stderr, kept for the verdict */
    pid_t pid;            /* 0 once it has exited and been reaped */
    int port;
    bool crashed;         /* exited while it should have been running */
    int exit_status;      /* as harness's proc_stop: 128+signal, -1 hung */
};

/* Seconds on CLOCK_MONOTONIC. */
double soak_now(void);

/* Starts bin (the path) with argv args (NULL-terminated, argv[0] excluded),
 * stderr appended to p->log_path, and waits for its listening line.
 * Returns false (and says why on stderr) if it never comes. */
bool soak_proc_start(struct soak_proc *p, const char *bin,
                     const char *const *args, const char *const *env);

/* Whether it is still running; reaps it and records a crash if not. */
bool soak_proc_alive(struct soak_proc *p);

/* SIGTERM, waits up to timeout_ms, then SIGKILL; returns the exit status
 * (0..255, 128+signal, -1 if it had to be killed). */
int soak_proc_stop(struct soak_proc *p, int timeout_ms);

/* Open descriptors of pid (entries of /proc/PID/fd), or -1. */
int soak_fd_count(pid_t pid);

/* Of those, TCP connections of pid to 127.0.0.1:port. */
int soak_fds_to_port(pid_t pid, int port);

/* Resident memory in KiB of pid and its direct children (02's forks). */
long soak_rss_kib(pid_t pid);

/* Number of live direct children of pid. */
int soak_children(pid_t pid);

/* The whole file at path (malloc'd, NUL-terminated), or NULL. */
char *soak_read_file(const char *path);

/* ---- traffic (soak_traffic.c) ---- */

enum soak_family {          /* hostile connections, drawn in turn */
    HOSTILE_TRICKLE,        /* a head at one byte every 1.5 s */
    HOSTILE_STALLED_BODY,   /* a POST whose body stops half way */
    HOSTILE_ASYNC_FLOOD,    /* pipelined async requests of 100 bills */
    HOSTILE_LONG_POLLS,     /* long polls held on the main service */
    HOSTILE_SLOW_READER,    /* pipelined requests, answers never read */
    NUM_FAMILIES
};

extern const char *const soak_family_names[NUM_FAMILIES];

#define SOAK_HOSTILE_HOLD_S 40.0     /* longest a hostile connection lives */
#define SOAK_SLOW_READER_HOLD_S 30.0 /* a slow reader, if not closed first */

enum soak_failure {         /* why a normal request failed */
    FAIL_CONNECT,           /* connect() refused or failed */
    FAIL_CLOSED,            /* the connection closed before the answer */
    FAIL_TIMEOUT,           /* no answer within 30 s */
    FAIL_STATUS,            /* an answer other than 200 or 503 */
    FAIL_PENDING,           /* still unanswered when the traffic ended */
    NUM_FAILURES
};

/* What one stage got and said; filled by the traffic, read by the report. */
struct stage_traits;

struct soak_stage {
    struct soak_proc proc;
    const struct stage_traits *traits; /* its row of tests/harness.c */
    int index;                 /* in request ids: soak-<index>-<n> */
    /* normal requests */
    long requests, ok, refused_503, failed;
    long failed_by[NUM_FAILURES];
    double *latency_ms;        /* of every answered normal request */
    size_t num_latency, cap_latency;
    /* async promises: ids soak-<index>-<n>, n < next_id */
    int next_id;
    size_t cap_ids;
    unsigned char *promised;   /* [n]: answered {"status":"ok"} */
    unsigned char *stored;     /* [n]: 1 GET finds it in the main service,
                                  2 only the log of an instance stopped
                                  for an outage says it arrived */
    unsigned char *gave_up;    /* [n]: the stage logged its give-up */
    long async_ok, async_503;
    long hostile[NUM_FAMILIES];
    long hostile_answers[NUM_FAMILIES]; /* 408, 503, ... got back */
    long hostile_closed[NUM_FAMILIES];  /* closed by the server, */
    double hostile_close_s[NUM_FAMILIES]; /* after this many s in all */
    long hostile_held[NUM_FAMILIES];    /* still open at our own limit */
    /* health */
    int fd_base, fd_end, children_end;
    int fd_end_to_main;        /* of fd_end: libcurl's kept connections */
    long rss_base, rss_end;
};

struct soak_traffic_cfg {
    int normal_conns;     /* per stage; the hostile slot is one more */
    int think_ms;         /* pause between a connection's requests */
    int main_port;        /* for the long-poll floods */
};

/* Creates the connections of every stage (none open yet). */
void soak_traffic_init(struct soak_stage *stages, int n,
                       const struct soak_traffic_cfg *cfg);

/* Runs the traffic until soak_now() >= until: poll, send, read, record. */
void soak_traffic_run(double until);

/* Closes every connection; a normal request unanswered for a second or
 * more counts as failed, its wait so far as its latency. */
void soak_traffic_stop(void);

/* A new promise id for stage s (grows its tables). */
int soak_stage_new_id(struct soak_stage *s);

/* ---- the crash-restart loop (soak_crash.c) ---- */

/* Runs every selected stage through `rounds` lives with --outbox, each
 * but the last ended by SIGKILL, and prints a table; the number of stages
 * that lost a job or stored one twice. Nothing when rounds <= 0. */
int soak_crash_run(const char *bin_dir, const char *log_dir, int rounds);

/* ---- HTTP bytes (soak_http.c) ---- */

/* Appends n bytes of text to the malloc'd buf of *len bytes (kept
 * NUL-terminated); returns the new buf. Exits on ENOMEM. */
char *soak_append(char *buf, size_t *len, const char *text, size_t n);

/* Appends a POST of a JSON body to path. */
char *soak_append_post(char *buf, size_t *len, const char *path,
                       const char *body);

/* An exchange request body (malloc'd) with request_id id (NULL: "sync")
 * and that many bills. */
char *soak_exchange_body(const char *id, int bills);

/* A non-blocking TCP socket connecting to 127.0.0.1:port (rcvbuf: its
 * SO_RCVBUF, 0 for the default), or -1. */
int soak_connect(int port, int rcvbuf);

/* Whether buf starts with a whole response (harness_response_frame);
 * *size, *status and *closes ("Connection: close") describe it. */
bool soak_whole_response(const char *buf, size_t len, size_t *size,
                         int *status, bool *closes);

/* One blocking request on a keep-alive connection *fd to 127.0.0.1:port
 * (opened or reopened as needed). Returns the status, 0 on failure. */
int soak_http_get(int *fd, int port, const char *path, int timeout_ms);

#endif
