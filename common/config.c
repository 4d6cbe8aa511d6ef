/* config: see config.h. */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "trace.h"

#define DEFAULT_TOKEN "MY_SECRET_TOKEN"
#define DEFAULT_MAIN_SERVICE "http://localhost:3001"

enum { OPT_PORT = 256, OPT_HOST, OPT_DELAY, OPT_JITTER, OPT_IDLE, OPT_MAIN,
       OPT_QUIET, OPT_HELP, OPT_TRACE, OPT_HEADER_TIMEOUT, OPT_BODY_TIMEOUT,
       OPT_MAX_JOBS, OPT_MAX_BILLS, OPT_CALLBACK_DEADLINE, OPT_MAX_CHILDREN, OPT_MAX_THREADS,
       OPT_BLOCKING_BUG, OPT_CPU_MS, OPT_OFFLOAD, OPT_STACK_KB, OPT_SWITCH,
       OPT_STACK, OPT_PREFORK, OPT_ACCEPT_LOCK, OPT_POOL, OPT_QUEUE, OPT_WORKERS,
       OPT_SHARED_LISTENER, OPT_DRAIN, OPT_OUTBOX, OPT_OUTBOX_SYNC, OPT_BACKEND };

static void config_usage(FILE *out, const struct config *cfg, int default_port,
                         unsigned extras, const char *description)
{
    fprintf(out,
        "usage: %s [options]\n"
        "%s\n\n"
        "Serves GET /, POST /api/exchange_sync and POST /api/exchange_async\n"
        "(see README.md). Once listening it prints one line to stdout:\n"
        "\"listening on http://HOST:PORT\". Logs go to stderr.\n\n"
        "options:\n"
        "  --port N            TCP port (default %d; 0 = any free port)\n"
        "  --host ADDR         address to bind (default 127.0.0.1)\n"
        "  --delay-ms N        simulated external call per bill (default 2000)\n"
        "  --jitter-ms N       plus a random 0..N ms per bill (default 0)\n"
        "  --header-timeout-ms N  a request head must arrive within N ms of\n"
        "                      its first byte, or 408 (default 10000)\n"
        "  --body-timeout-ms N a request body must arrive within N ms of\n"
        "                      the head's end, or 408 (default 10000)\n"
        "  --idle-timeout-ms N close a connection with no request begun, or\n"
        "                      a client not reading its answer, after N ms\n"
        "                      (default 10000)\n"
        "  --max-jobs N        async jobs accepted and not finished; past N,\n"
        "                      503 with Retry-After (default 256)\n"
        "  --max-bills N       bills of those jobs still waiting; past N,\n"
        "                      503 with Retry-After (default 4096)\n"
        "  --callback-deadline-ms N  retry a callback (backoff 0.5 s doubling\n"
        "                      to 8 s, with jitter) until N ms after its\n"
        "                      first try, then log the give-up\n"
        "                      (default 120000)\n"
        "  --drain-ms N        on SIGINT/SIGTERM, finish what is in flight\n"
        "                      (answers, bills, callback retries) for at\n"
        "                      most N ms, then log each job whose callback\n"
        "                      was not delivered and exit; a second signal\n"
        "                      ends the wait at once (default 5000)\n"
        "  --outbox FILE       write each async job to FILE (JSON lines)\n"
        "                      before its ok, and its end after; at start,\n"
        "                      replay the jobs without an end (default: none,\n"
        "                      jobs live in memory)\n"
        "  --outbox-sync       and fdatasync FILE before each ok (survives a\n"
        "                      power cut, costs a disk flush)\n"
        "  --main-service URL  where async results are PUT (default\n"
        "                      $MAIN_SERVICE_URL or " DEFAULT_MAIN_SERVICE ")\n"
        "  --quiet             log only warnings and errors\n"
        "  --trace FILE        append what the workers do (accept, request,\n"
        "                      bill waits, callbacks) to FILE for build/trace\n"
        "                      (default: off, no cost but a branch)\n"
        "  --help              this text\n",
        cfg->stage, description, default_port);
    if (extras & CONFIG_MAX_CHILDREN)
        fprintf(out, "  --max-children N    busy answer (503) past N child "
                     "processes (default 256)\n");
    if (extras & CONFIG_MAX_THREADS)
        fprintf(out, "  --max-threads N     busy answer (503) past N "
                     "connection threads (default 1024)\n");
    if (extras & CONFIG_CORO)
        fprintf(out,
            "  --blocking-bug      wait for bills with nanosleep instead of\n"
            "                      co_sleep: the time.sleep-in-async mistake\n"
            "  --cpu-ms N          each bill also burns N ms of CPU\n"
            "  --offload           run that CPU work on the worker pool\n"
            "                      (co_run_blocking) instead of the loop\n"
            "  --stack-kb N        coroutine stack size (default 64)\n"
            "  --switch HOW        how coroutines switch stacks: setjmp\n"
            "                      (_setjmp/_longjmp, no system call) or\n"
            "                      swapcontext (saves the signal mask too:\n"
            "                      one system call a switch) (default setjmp)\n"
            "  --stack HOW         where coroutines run: separate (a stack\n"
            "                      each) or shared (one stack; a parked\n"
            "                      coroutine's frames are copied out to a\n"
            "                      buffer of their size) (default separate)\n");
    if (extras & CONFIG_PREFORK)
        fprintf(out,
            "  --prefork N         fork N children at start, each accepting\n"
            "                      and serving one connection at a time\n"
            "                      (default 0: a child per connection)\n"
            "  --accept-lock       prefork: one child at a time waits to\n"
            "                      accept (default off: all wait, all wake)\n");
    if (extras & CONFIG_POOL)
        fprintf(out,
            "  --pool N            a fixed pool of N threads serves the\n"
            "                      connections (default 0: a thread each)\n"
            "  --queue N           pool: connections waiting for a thread;\n"
            "                      past N, 503 (default 64)\n");
    if (extras & CONFIG_WORKERS)
        fprintf(out,
            "  --workers N         N worker processes, each its own event\n"
            "                      loop and SO_REUSEPORT listener; budgets\n"
            "                      (--max-jobs, --max-bills) are split\n"
            "                      between them (default 1)\n"
            "  --shared-listener   workers: one listener in every worker's\n"
            "                      epoll, with EPOLLEXCLUSIVE (default off)\n");
    if (extras & CONFIG_BACKEND)
        fprintf(out,
            "  --backend NAME      the event loop's kernel interface: epoll\n"
            "                      (readiness) or uring (io_uring: completion,\n"
            "                      the turn's I/O in one system call; when\n"
            "                      the kernel refuses it, epoll, said on\n"
            "                      stderr) (default epoll)\n");
    fprintf(out,
        "\nenvironment:\n"
        "  SECRET_TOKEN        token sent with callbacks (default "
        DEFAULT_TOKEN ")\n"
        "  MAIN_SERVICE_URL    as --main-service\n");
}

bool config_number(const char *s, long min, long max, long *out)
{
    /* strtol alone would also skip leading blanks and take a plus sign. */
    const char *digits = s[0] == '-' ? s + 1 : s;
    if (*digits < '0' || *digits > '9')
        return false;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno == ERANGE || *end || v < min || v > max)
        return false;
    *out = v;
    return true;
}

/* A stage's whole number in [min, max], or exits with a message. */
static int config_int(const char *stage, const char *opt, const char *s,
                      long min, long max)
{
    long v;
    if (!config_number(s, min, max, &v)) {
        fprintf(stderr, "%s: --%s wants a whole number from %ld to %ld, "
                        "got '%s'\n", stage, opt, min, max, s);
        exit(2);
    }
    return (int)v;
}

/* s if it is one of the two words a or b, or exits with a message. */
static const char *config_choice(const char *stage, const char *opt,
                                 const char *s, const char *a, const char *b)
{
    if (strcmp(s, a) != 0 && strcmp(s, b) != 0) {
        fprintf(stderr, "%s: --%s wants %s or %s, got '%s'\n", stage, opt, a,
                b, s);
        exit(2);
    }
    return s;
}

void config_parse(struct config *cfg, int argc, char **argv,
                  const char *stage, int default_port, unsigned extras,
                  const char *description)
{
    const char *env_url = getenv("MAIN_SERVICE_URL");
    const char *env_token = getenv("SECRET_TOKEN");
    *cfg = (struct config){
        .stage = stage, .host = "127.0.0.1", .port = default_port,
        .delay_ms = 2000, .jitter_ms = 0, .header_timeout_ms = 10000,
        .body_timeout_ms = 10000, .idle_timeout_ms = 10000,
        .max_jobs = 256, .max_bills = 4096, .callback_deadline_ms = 120000,
        .drain_ms = 5000,
        .main_service = env_url && *env_url ? env_url : DEFAULT_MAIN_SERVICE,
        .token = env_token && *env_token ? env_token : DEFAULT_TOKEN,
        .max_children = 256, .max_threads = 1024, .stack_kb = 64,
        .queue = 64, .workers = 1, .coro_switch = "setjmp",
        .coro_stack = "separate",
        .backend = "epoll",
    };
    cfg->token_is_default = strcmp(cfg->token, DEFAULT_TOKEN) == 0;

    struct option all[] = {
        {"port", required_argument, 0, OPT_PORT},
        {"host", required_argument, 0, OPT_HOST},
        {"delay-ms", required_argument, 0, OPT_DELAY},
        {"jitter-ms", required_argument, 0, OPT_JITTER},
        {"header-timeout-ms", required_argument, 0, OPT_HEADER_TIMEOUT},
        {"body-timeout-ms", required_argument, 0, OPT_BODY_TIMEOUT},
        {"idle-timeout-ms", required_argument, 0, OPT_IDLE},
        {"max-jobs", required_argument, 0, OPT_MAX_JOBS},
        {"max-bills", required_argument, 0, OPT_MAX_BILLS},
        {"callback-deadline-ms", required_argument, 0, OPT_CALLBACK_DEADLINE},
        {"drain-ms", required_argument, 0, OPT_DRAIN},
        {"outbox", required_argument, 0, OPT_OUTBOX},
        {"outbox-sync", no_argument, 0, OPT_OUTBOX_SYNC},
        {"main-service", required_argument, 0, OPT_MAIN},
        {"quiet", no_argument, 0, OPT_QUIET},
        {"trace", required_argument, 0, OPT_TRACE},
        {"help", no_argument, 0, OPT_HELP},
        {"max-children", required_argument, 0, OPT_MAX_CHILDREN},
        {"max-threads", required_argument, 0, OPT_MAX_THREADS},
        {"blocking-bug", no_argument, 0, OPT_BLOCKING_BUG},
        {"cpu-ms", required_argument, 0, OPT_CPU_MS},
        {"offload", no_argument, 0, OPT_OFFLOAD},
        {"stack-kb", required_argument, 0, OPT_STACK_KB},
        {"prefork", required_argument, 0, OPT_PREFORK},
        {"accept-lock", no_argument, 0, OPT_ACCEPT_LOCK},
        {"pool", required_argument, 0, OPT_POOL},
        {"queue", required_argument, 0, OPT_QUEUE},
        {"workers", required_argument, 0, OPT_WORKERS},
        {"shared-listener", no_argument, 0, OPT_SHARED_LISTENER},
        {"switch", required_argument, 0, OPT_SWITCH},
        {"stack", required_argument, 0, OPT_STACK},
        {"backend", required_argument, 0, OPT_BACKEND},
        {0, 0, 0, 0},
    };
    /* Keep only the options this stage takes, so --help and getopt agree. */
    struct option opts[sizeof all / sizeof all[0]];
    size_t n = 0;
    for (size_t i = 0; all[i].name; i++) {
        int v = all[i].val;
        if ((v == OPT_MAX_CHILDREN && !(extras & CONFIG_MAX_CHILDREN)) ||
            (v == OPT_MAX_THREADS && !(extras & CONFIG_MAX_THREADS)) ||
            (v >= OPT_BLOCKING_BUG && v <= OPT_STACK &&
             !(extras & CONFIG_CORO)) ||
            ((v == OPT_PREFORK || v == OPT_ACCEPT_LOCK) &&
             !(extras & CONFIG_PREFORK)) ||
            ((v == OPT_POOL || v == OPT_QUEUE) && !(extras & CONFIG_POOL)) ||
            ((v == OPT_WORKERS || v == OPT_SHARED_LISTENER) &&
             !(extras & CONFIG_WORKERS)) ||
            (v == OPT_BACKEND && !(extras & CONFIG_BACKEND)))
            continue;
        opts[n++] = all[i];
    }
    opts[n] = (struct option){0, 0, 0, 0};

    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case OPT_PORT: cfg->port = config_int(stage, "port", optarg, 0, 65535); break;
        case OPT_HOST: cfg->host = optarg; break;
        case OPT_DELAY: cfg->delay_ms = config_int(stage, "delay-ms", optarg, 0, 600000); break;
        case OPT_JITTER: cfg->jitter_ms = config_int(stage, "jitter-ms", optarg, 0, 600000); break;
        case OPT_HEADER_TIMEOUT: cfg->header_timeout_ms = config_int(stage, "header-timeout-ms", optarg, 1, 3600000); break;
        case OPT_BODY_TIMEOUT: cfg->body_timeout_ms = config_int(stage, "body-timeout-ms", optarg, 1, 3600000); break;
        case OPT_IDLE: cfg->idle_timeout_ms = config_int(stage, "idle-timeout-ms", optarg, 1, 3600000); break;
        case OPT_MAX_JOBS: cfg->max_jobs = config_int(stage, "max-jobs", optarg, 1, 1000000); break;
        case OPT_MAX_BILLS: cfg->max_bills = config_int(stage, "max-bills", optarg, 1, 10000000); break;
        case OPT_CALLBACK_DEADLINE: cfg->callback_deadline_ms = config_int(stage, "callback-deadline-ms", optarg, 1, 86400000); break;
        case OPT_DRAIN: cfg->drain_ms = config_int(stage, "drain-ms", optarg, 0, 3600000); break;
        case OPT_OUTBOX: cfg->outbox = optarg; break;
        case OPT_OUTBOX_SYNC: cfg->outbox_sync = true; break;
        case OPT_MAIN: cfg->main_service = optarg; break;
        case OPT_QUIET: cfg->quiet = true; break;
        case OPT_TRACE: cfg->trace = optarg; break;
        case OPT_MAX_CHILDREN: cfg->max_children = config_int(stage, "max-children", optarg, 1, 100000); break;
        case OPT_MAX_THREADS: cfg->max_threads = config_int(stage, "max-threads", optarg, 1, 100000); break;
        case OPT_BLOCKING_BUG: cfg->blocking_bug = true; break;
        case OPT_CPU_MS: cfg->cpu_ms = config_int(stage, "cpu-ms", optarg, 0, 60000); break;
        case OPT_OFFLOAD: cfg->offload = true; break;
        case OPT_STACK_KB: cfg->stack_kb = config_int(stage, "stack-kb", optarg, 16, 65536); break;
        case OPT_PREFORK: cfg->prefork = config_int(stage, "prefork", optarg, 0, 1024); break;
        case OPT_ACCEPT_LOCK: cfg->accept_lock = true; break;
        case OPT_POOL: cfg->pool = config_int(stage, "pool", optarg, 0, 10000); break;
        case OPT_QUEUE: cfg->queue = config_int(stage, "queue", optarg, 1, 1000000); break;
        case OPT_WORKERS: cfg->workers = config_int(stage, "workers", optarg, 1, 256); break;
        case OPT_SHARED_LISTENER: cfg->shared_listener = true; break;
        case OPT_SWITCH: cfg->coro_switch = config_choice(stage, "switch", optarg, "setjmp", "swapcontext"); break;
        case OPT_STACK: cfg->coro_stack = config_choice(stage, "stack", optarg, "separate", "shared"); break;
        case OPT_BACKEND: cfg->backend = config_choice(stage, "backend", optarg, "epoll", "uring"); break;
        case OPT_HELP:
            config_usage(stdout, cfg, default_port, extras, description);
            exit(0);
        default:
            fprintf(stderr, "try '%s --help'\n", argv[0]);
            exit(2);
        }
    }
    if (optind < argc) {
        fprintf(stderr, "%s: unexpected argument '%s'; try '%s --help'\n",
                stage, argv[optind], argv[0]);
        exit(2);
    }
    if (cfg->outbox_sync && !cfg->outbox) {
        fprintf(stderr, "%s: --outbox-sync needs --outbox FILE\n", stage);
        exit(2);
    }
    if (cfg->trace && trace_open(cfg->trace, stage) < 0) {
        fprintf(stderr, "%s: --trace %s: %s\n", stage, cfg->trace,
                strerror(errno));
        exit(2);
    }
}

void config_log(const struct config *cfg)
{
    log_info("delay %d ms + jitter 0..%d ms per bill; timeouts: head %d ms, "
             "body %d ms, idle %d ms; at most %d jobs and %d bills in flight; "
             "callbacks to %s (retried for %d ms); a stop drains for %d ms",
             cfg->delay_ms, cfg->jitter_ms, cfg->header_timeout_ms,
             cfg->body_timeout_ms, cfg->idle_timeout_ms, cfg->max_jobs,
             cfg->max_bills, cfg->main_service, cfg->callback_deadline_ms,
             cfg->drain_ms);
    if (cfg->token_is_default)
        log_warn("SECRET_TOKEN is not set: callbacks carry the default "
                 "token; set SECRET_TOKEN outside a classroom");
}

int config_bill_delay_ms(const struct config *cfg, unsigned *seed)
{
    if (cfg->jitter_ms <= 0)
        return cfg->delay_ms;
    return cfg->delay_ms + (int)(rand_r(seed) % (unsigned)(cfg->jitter_ms + 1));
}
