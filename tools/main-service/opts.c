/* opts: see opts.h. */
#include "opts.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

static void usage(FILE *out, const char *prog)
{
    fprintf(out,
        "usage: %s [options]\n"
        "The main service: receives the exchange servers' callbacks and\n"
        "keeps the results in memory (a thread per connection).\n"
        "\n"
        "options:\n"
        "  --port N           port to listen on (default %d; 0 = any free "
        "port)\n"
        "  --host ADDR        address to bind (default 127.0.0.1)\n"
        "  --max-conns N      connection threads at most (default %d); "
        "past it, 503\n"
        "  --max-waiters N    long polls waiting at most (default %d), "
        "counted apart\n"
        "                     from --max-conns so callbacks always find "
        "room;\n"
        "                     past it a long poll gets 503\n"
        "  --max-results N    results kept (default %d); the oldest is "
        "evicted\n"
        "  --max-store-mb N   megabytes of results kept (default %d); the "
        "oldest\n"
        "                     is evicted\n"
        "  --header-timeout-ms N  default %d: a request head must be whole "
        "N ms\n"
        "                     after its first byte (CR/LF count); past it, "
        "408\n"
        "  --body-timeout-ms N    default %d: a body must be whole N ms "
        "after its\n"
        "                     head; past it, 408\n"
        "  --idle-timeout-ms N    default %d: a connection with no request "
        "under\n"
        "                     way is closed after N ms\n"
        "  --quiet            log only warnings and errors\n"
        "  --help             this text\n"
        "\n"
        "environment:\n"
        "  SECRET_TOKEN       token a callback must carry (default %s,\n"
        "                     with a warning in the log)\n"
        "\n"
        "routes:\n"
        "  GET  /                          status and number of results\n"
        "  PUT  /api/exchange_result       store {\"token\",\"request_id\","
        "\"breakdown\"}:\n"
        "                                  403 bad token, 400 bad payload, "
        "200 {\"status\":\"ok\"}\n"
        "  GET  /api/exchange_result       the stored request ids\n"
        "  GET  /api/exchange_result/ID    the stored result, or 404\n"
        "       ...?wait_ms=N              long poll: wait up to N ms "
        "(0..%d, default 0)\n"
        "                                  for the result to arrive\n"
        "\n"
        "Once listening it prints \"listening on http://HOST:PORT\" to "
        "stdout.\n"
        "SIGINT/SIGTERM stop it (exit 0).\n",
        prog, MS_DEFAULT_PORT, MS_DEFAULT_MAX_CONNS, MS_DEFAULT_MAX_WAITERS,
        MS_DEFAULT_MAX_RESULTS,
        MS_DEFAULT_MAX_STORE_MB, MS_DEFAULT_HEADER_TIMEOUT_MS,
        MS_DEFAULT_BODY_TIMEOUT_MS, MS_DEFAULT_IDLE_TIMEOUT_MS,
        MS_DEFAULT_TOKEN, MS_MAX_WAIT_MS);
}

static void bad_usage(const char *prog, const char *msg, const char *arg)
{
    if (msg)
        fprintf(stderr, "%s: %s%s%s\n", prog, msg, arg ? ": " : "",
                arg ? arg : "");
    fprintf(stderr, "try '%s --help'\n", prog);
    exit(2);
}

/* opt's value, a whole number in [min, max]; else a usage error naming
 * both (common/config.h's config_number, as the stages read theirs). */
static long number_arg(const char *prog, const char *opt, const char *s,
                       long min, long max)
{
    long v;
    if (!config_number(s, min, max, &v)) {
        fprintf(stderr, "%s: %s wants %ld..%ld, not '%s'\n", prog, opt, min,
                max, s);
        bad_usage(prog, NULL, NULL);
    }
    return v;
}

void ms_options_parse(struct ms_options *o, int argc, char **argv)
{
    const char *prog = argv[0];
    *o = (struct ms_options){.host = "127.0.0.1",
                             .port = MS_DEFAULT_PORT,
                             .max_conns = MS_DEFAULT_MAX_CONNS,
                             .max_waiters = MS_DEFAULT_MAX_WAITERS,
                             .max_results = MS_DEFAULT_MAX_RESULTS,
                             .max_store_mb = MS_DEFAULT_MAX_STORE_MB,
                             .header_timeout_ms = MS_DEFAULT_HEADER_TIMEOUT_MS,
                             .body_timeout_ms = MS_DEFAULT_BODY_TIMEOUT_MS,
                             .idle_timeout_ms = MS_DEFAULT_IDLE_TIMEOUT_MS};
    enum { OPT_PORT = 1, OPT_HOST, OPT_MAX_CONNS, OPT_MAX_WAITERS,
           OPT_MAX_RESULTS,
           OPT_MAX_STORE_MB, OPT_HEADER_TIMEOUT, OPT_BODY_TIMEOUT,
           OPT_IDLE_TIMEOUT, OPT_QUIET, OPT_HELP };
    static const struct option opts[] = {
        {"port", required_argument, 0, OPT_PORT},
        {"host", required_argument, 0, OPT_HOST},
        {"max-conns", required_argument, 0, OPT_MAX_CONNS},
        {"max-waiters", required_argument, 0, OPT_MAX_WAITERS},
        {"max-results", required_argument, 0, OPT_MAX_RESULTS},
        {"max-store-mb", required_argument, 0, OPT_MAX_STORE_MB},
        {"header-timeout-ms", required_argument, 0, OPT_HEADER_TIMEOUT},
        {"body-timeout-ms", required_argument, 0, OPT_BODY_TIMEOUT},
        {"idle-timeout-ms", required_argument, 0, OPT_IDLE_TIMEOUT},
        {"quiet", no_argument, 0, OPT_QUIET},
        {"help", no_argument, 0, OPT_HELP},
        {0, 0, 0, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case OPT_PORT:
            o->port = (int)number_arg(prog, "--port", optarg, 0, 65535);
            break;
        case OPT_HOST:
            o->host = optarg;
            break;
        case OPT_MAX_CONNS:
            o->max_conns =
                (int)number_arg(prog, "--max-conns", optarg, 1, 100000);
            break;
        case OPT_MAX_WAITERS:
            o->max_waiters =
                (int)number_arg(prog, "--max-waiters", optarg, 1, 100000);
            break;
        case OPT_MAX_RESULTS:
            o->max_results =
                (size_t)number_arg(prog, "--max-results", optarg, 1, 10000000);
            break;
        case OPT_MAX_STORE_MB:
            o->max_store_mb =
                (size_t)number_arg(prog, "--max-store-mb", optarg, 1, 1 << 20);
            break;
        case OPT_HEADER_TIMEOUT:
            o->header_timeout_ms = (int)number_arg(
                prog, "--header-timeout-ms", optarg, 1, 3600000);
            break;
        case OPT_BODY_TIMEOUT:
            o->body_timeout_ms = (int)number_arg(
                prog, "--body-timeout-ms", optarg, 1, 3600000);
            break;
        case OPT_IDLE_TIMEOUT:
            o->idle_timeout_ms = (int)number_arg(
                prog, "--idle-timeout-ms", optarg, 1, 3600000);
            break;
        case OPT_QUIET:
            o->quiet = true;
            break;
        case OPT_HELP:
            usage(stdout, prog);
            exit(0);
        default: /* getopt_long has said what was wrong */
            bad_usage(prog, NULL, NULL);
        }
    }
    if (optind < argc)
        bad_usage(prog, "unexpected argument", argv[optind]);
    const char *env_token = getenv("SECRET_TOKEN");
    o->token = env_token && *env_token ? env_token : MS_DEFAULT_TOKEN;
    o->token_is_default = strcmp(o->token, MS_DEFAULT_TOKEN) == 0;
}
