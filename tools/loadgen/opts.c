/* opts: the command line (loadgen --help), checked whole before
 * anything starts: a bad value is a usage error (exit 2). */
#include "config.h"
#include "loadgen.h"
#include "trace.h"

#include <curl/curl.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const engine_names[] = {"curl", "raw"};

static void usage(FILE *out)
{
    fprintf(out,
        "usage: loadgen [options] --url URL      (or: loadgen [options] URL)\n"
        "Fires HTTP requests from an event loop over many connections, with\n"
        "libcurl's multi interface (or --engine raw); prints requests/s,\n"
        "latency and failures by kind.\n"
        "\n"
        "  -c, --concurrency N  requests in flight at once (default %d)\n"
        "  -n, --requests N     total requests (default: one round of -c)\n"
        "  -d, --duration S     keep firing for S seconds instead of -n\n"
        "  -t, --threads N      N event loops (threads) share -c (default 1;\n"
        "                       with --procs, in each process)\n"
        "      --procs N        N processes share -c, each with -t loops: one\n"
        "                       process holds only so many descriptors (the\n"
        "                       hard RLIMIT_NOFILE), a connection each\n"
        "      --sources N      open the connections from N loopback source\n"
        "                       addresses, 127.0.0.2 and up (the URL must be\n"
        "                       127.x.x.x): one source address reaches one\n"
        "                       server port through about 28,000 local ports\n"
        "      --rate R         open loop: R requests a second in all, on a\n"
        "                       fixed schedule whatever the server does, each\n"
        "                       timed from when it was due (as wrk2 does; see\n"
        "                       coordinated omission); a request due while\n"
        "                       every connection is busy waits for one\n"
        "      --engine E       curl (default): libcurl's multi interface;\n"
        "                       raw: a lean built-in HTTP/1.1 client (plain\n"
        "                       http, Content-Length answers) that spends\n"
        "                       half of curl's CPU per request, as little as\n"
        "                       wrk: for throughput runs, where curl would\n"
        "                       be the bottleneck (make bench uses it there)\n"
        "      --url URL        target, e.g. http://127.0.0.1:8003/\n"
        "      --method M       GET (default), or POST when a body is given\n"
        "      --body STRING    request body (sent as application/json)\n"
        "      --bills K        body = an exchange request with K bills\n"
        "      --keepalive      reuse connections (default)\n"
        "      --no-keepalive   a fresh connection per request\n"
        "      --timeout-ms N   per request, connect included (default %d)\n"
        "      --timeline       draw each request's start and end on one axis\n"
        "      --width N        timeline columns (default: terminal's, or %d)\n"
        "      --span S         timeline axis of at least S seconds, so runs\n"
        "                       drawn one after another share a scale\n"
        "      --trace FILE     append each request's start, first byte\n"
        "                       (curl engine only) and end to FILE for\n"
        "                       build/trace (common/trace.h; default off)\n"
        "      --json           machine-readable summary on stdout (every key\n"
        "                       appears once, so grep/sed can read it)\n"
        "      --print          print each response (status, ms, body)\n"
        "                       instead of the summary: a tiny curl\n"
        "      --stall N        hold N connections that sent half a request\n"
        "                       while the measured requests run (slowloris)\n"
        "      --watch-pid PID  sample that server's memory (with its child\n"
        "                       processes) every 50 ms and its CPU time\n"
        "      --quiet          no progress line\n"
        "      --version        loadgen and libcurl versions\n"
        "  -h, --help           this text\n"
        "Exit status: 0 all answers 2xx, 1 some failed, 2 bad usage,\n"
        "3 setup error. Ctrl-C (or SIGTERM) stops the run, prints what was\n"
        "measured, then ends by that signal (a shell sees 130 or 143).\n",
        DEFAULT_CONCURRENCY, DEFAULT_TIMEOUT_MS, TIMELINE_DEFAULT_WIDTH);
}

static bool parse_seconds(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v > 0) || v > 86400)
        return false;
    *out = v;
    return true;
}

/* An exchange request with k bills, like the lecture's sync_test body. */
static char *make_bills_body(long k)
{
    size_t cap = 128 + (size_t)k * 80;
    char *b = malloc(cap);
    if (!b)
        return NULL;
    size_t len = (size_t)snprintf(b, cap,
                                  "{\"request_id\":\"loadgen\","
                                  "\"exchange_rate\":75.5,\"bills\":[");
    for (long i = 1; i <= k; i++)
        len += (size_t)snprintf(b + len, cap - len,
                                "%s{\"denomination_id\":%ld,"
                                "\"denomination\":10.0,\"count\":%ld}",
                                i > 1 ? "," : "", i, i);
    snprintf(b + len, cap - len, "]}");
    return b;
}

static void bad_usage(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));

static void bad_usage(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "loadgen: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n(loadgen --help lists the options)\n");
    va_end(ap);
    exit(2);
}

static char *need_memory(char *p)
{
    if (!p) {
        fprintf(stderr, "loadgen: out of memory\n");
        exit(3);
    }
    return p;
}

/* opt's value, a whole number in [min, max]; else a usage error naming
 * both (common/config.h's config_number, as the servers read theirs). */
static long number_arg(const char *opt, const char *s, long min, long max)
{
    long v;
    if (!config_number(s, min, max, &v))
        bad_usage("%s wants %ld..%ld, not '%s'", opt, min, max, s);
    return v;
}

void parse_options(struct options *o, int argc, char **argv)
{
    enum { O_URL = 256, O_ENGINE, O_METHOD, O_BODY, O_BILLS, O_KA, O_NO_KA,
           O_TIMEOUT, O_TIMELINE, O_TRACE, O_WIDTH, O_SPAN, O_JSON, O_PRINT, O_STALL,
           O_WATCH, O_QUIET, O_VERSION, O_PROCS, O_SOURCES, O_RATE };
    static const struct option longs[] = {
        {"concurrency", required_argument, NULL, 'c'},
        {"requests", required_argument, NULL, 'n'},
        {"duration", required_argument, NULL, 'd'},
        {"threads", required_argument, NULL, 't'},
        {"procs", required_argument, NULL, O_PROCS},
        {"sources", required_argument, NULL, O_SOURCES},
        {"rate", required_argument, NULL, O_RATE},
        {"url", required_argument, NULL, O_URL},
        {"engine", required_argument, NULL, O_ENGINE},
        {"method", required_argument, NULL, O_METHOD},
        {"body", required_argument, NULL, O_BODY},
        {"bills", required_argument, NULL, O_BILLS},
        {"keepalive", no_argument, NULL, O_KA},
        {"keep-alive", no_argument, NULL, O_KA},
        {"no-keepalive", no_argument, NULL, O_NO_KA},
        {"no-keep-alive", no_argument, NULL, O_NO_KA},
        {"timeout-ms", required_argument, NULL, O_TIMEOUT},
        {"timeline", no_argument, NULL, O_TIMELINE},
        {"trace", required_argument, NULL, O_TRACE},
        {"width", required_argument, NULL, O_WIDTH},
        {"span", required_argument, NULL, O_SPAN},
        {"json", no_argument, NULL, O_JSON},
        {"print", no_argument, NULL, O_PRINT},
        {"stall", required_argument, NULL, O_STALL},
        {"watch-pid", required_argument, NULL, O_WATCH},
        {"quiet", no_argument, NULL, O_QUIET},
        {"version", no_argument, NULL, O_VERSION},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    *o = (struct options){.concurrency = DEFAULT_CONCURRENCY,
                          .threads = 1,
                          .procs = 1,
                          .keepalive = true,
                          .timeout_ms = DEFAULT_TIMEOUT_MS};
    bool have_c = false;
    int opt;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":c:n:d:t:h", longs, NULL)) != -1) {
        switch (opt) {
        case 'c':
            o->concurrency = number_arg("-c", optarg, 1, 1000000);
            have_c = true;
            break;
        case 'n':
            o->total = number_arg("-n", optarg, 1, 100000000);
            break;
        case 'd':
            if (!parse_seconds(optarg, &o->duration_s))
                bad_usage("-d wants seconds > 0, not '%s'", optarg);
            break;
        case 't':
            o->threads = number_arg("-t", optarg, 1, MAX_THREADS);
            break;
        case O_PROCS:
            o->procs = number_arg("--procs", optarg, 1, MAX_PROCS);
            break;
        case O_SOURCES:
            o->sources = number_arg("--sources", optarg, 1, MAX_SOURCES);
            break;
        case O_RATE:
            o->rate = (double)number_arg("--rate", optarg, 1, MAX_RATE);
            break;
        case O_URL: o->url = optarg; break;
        case O_ENGINE:
            if (strcmp(optarg, "curl") == 0)
                o->engine = ENGINE_CURL;
            else if (strcmp(optarg, "raw") == 0)
                o->engine = ENGINE_RAW;
            else
                bad_usage("--engine wants curl or raw, not '%s'", optarg);
            break;
        case O_METHOD: o->method = optarg; break;
        case O_BODY:
            free(o->body);
            o->body = need_memory(strdup(optarg));
            break;
        case O_BILLS: {
            long k = number_arg("--bills", optarg, 0, 10000);
            free(o->body);
            o->body = need_memory(make_bills_body(k));
            break;
        }
        case O_KA: o->keepalive = true; break;
        case O_NO_KA: o->keepalive = false; break;
        case O_TIMEOUT:
            o->timeout_ms = number_arg("--timeout-ms", optarg, 1, 86400000);
            break;
        case O_TIMELINE: o->timeline = true; break;
        case O_TRACE: o->trace = optarg; break;
        case O_WIDTH:
            o->width = (int)number_arg("--width", optarg, 10, 1000);
            break;
        case O_SPAN:
            if (!parse_seconds(optarg, &o->span_s))
                bad_usage("--span wants seconds > 0, not '%s'", optarg);
            break;
        case O_JSON: o->json = true; break;
        case O_PRINT: o->print = true; break;
        case O_STALL:
            o->stall = number_arg("--stall", optarg, 0, 100000);
            break;
        case O_WATCH:
            if (!config_number(optarg, 1, INT_MAX, &o->watch_pid))
                bad_usage("--watch-pid wants a pid, not '%s'", optarg);
            break;
        case O_QUIET: o->quiet = true; break;
        case O_VERSION:
            printf("loadgen 2 (libcurl %s; engines curl, raw)\n",
                   curl_version_info(CURLVERSION_NOW)->version);
            exit(0);
        case 'h': usage(stdout); exit(0);
        case ':': bad_usage("%s needs a value", argv[optind - 1]);
        default: bad_usage("unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc && !o->url)
        o->url = argv[optind++];
    if (optind < argc)
        bad_usage("unexpected argument '%s'", argv[optind]);
    if (!o->url)
        bad_usage("%s", "no URL given (--url http://127.0.0.1:8001/)");
    if (o->total && o->duration_s > 0)
        bad_usage("%s", "give -n or -d, not both");
    if (!o->total && !(o->duration_s > 0))
        o->total = o->concurrency; /* one round: -c 5 alone sends 5 */
    if (o->total && o->concurrency > o->total) {
        if (have_c && !o->json && !o->print && !o->quiet)
            fprintf(stderr, "loadgen: -c %ld > -n %ld; using -c %ld\n",
                    o->concurrency, o->total, o->total);
        o->concurrency = o->total;
    }
    /* every loop needs a connection */
    if (o->procs > o->concurrency)
        o->procs = o->concurrency;
    if (o->threads * o->procs > o->concurrency)
        o->threads = o->concurrency / o->procs;
    if (o->trace && trace_open(o->trace, "loadgen") < 0) {
        fprintf(stderr, "loadgen: --trace %s: %s\n", o->trace,
                strerror(errno));
        exit(3);
    }
}

const char *method_name(const struct options *o)
{
    return o->method ? o->method : o->body ? "POST" : "GET";
}
