/* opts: the main service's command line and environment
 * (main-service --help). A bad option prints why and exits 2. */
#ifndef TOOLS_MAIN_SERVICE_OPTS_H
#define TOOLS_MAIN_SERVICE_OPTS_H

#include <stdbool.h>
#include <stddef.h>

#define MS_DEFAULT_PORT 3001
#define MS_DEFAULT_TOKEN "MY_SECRET_TOKEN"
#define MS_DEFAULT_MAX_CONNS 4096
#define MS_DEFAULT_MAX_WAITERS 1024
#define MS_DEFAULT_MAX_RESULTS 10000
#define MS_DEFAULT_MAX_STORE_MB 256
#define MS_DEFAULT_HEADER_TIMEOUT_MS 10000
#define MS_DEFAULT_BODY_TIMEOUT_MS 10000
#define MS_DEFAULT_IDLE_TIMEOUT_MS 30000
#define MS_MAX_WAIT_MS 600000 /* the longest ?wait_ms= a long poll takes */

struct ms_options {
    const char *host;     /* --host, default 127.0.0.1 */
    int port;             /* --port, default 3001; 0 = any free port */
    int max_conns;        /* --max-conns: connection threads; past it 503 */
    int max_waiters;      /* --max-waiters: long polls waiting, counted
                             apart from max_conns; past it 503 */
    size_t max_results;   /* --max-results: the oldest is evicted past it */
    size_t max_store_mb;  /* --max-store-mb: the same, by bytes */
    int header_timeout_ms; /* --header-timeout-ms: a head must be complete
                              this long after its first byte; past it 408 */
    int body_timeout_ms;  /* --body-timeout-ms: the same for a body, from
                             the end of its head */
    int idle_timeout_ms;  /* --idle-timeout-ms: a connection with no byte
                             of a request yet is closed after this */
    bool quiet;           /* --quiet */
    const char *token;    /* SECRET_TOKEN, or the default */
    bool token_is_default;
};

/* Fills o from the defaults, SECRET_TOKEN and argv. Exits 0 after --help,
 * 2 after a bad option. */
void ms_options_parse(struct ms_options *o, int argc, char **argv);

#endif
