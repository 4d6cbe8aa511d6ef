/* callback: the PUT of a finished job to the main service,
 * MAIN_SERVICE_URL/api/exchange_result, as a libcurl easy handle.
 *
 * Every stage builds the request the same way (callback_new) and applies the
 * same retry policy (callback_after_attempt); only who runs the transfer
 * changes: curl_easy_perform in 01-03 (callback_send_blocking), a multi
 * handle in 04-06.
 *
 * The retry policy outlasts an outage of the main service, and follows
 * what HTTP says about each answer (RFC 9110, section 15; judge_attempt in
 * callback.c):
 *   2xx                        delivered
 *   408, 425, 429, 503         temporary: retried, and never sooner than
 *                              the answer's Retry-After asks (seconds or
 *                              an HTTP-date; libcurl reads both)
 *   501, 505, any other 4xx    the same request will fail the same way:
 *                              given up at once
 *   any other 5xx, no answer   retried (connection refused or reset, a
 *   (a connection error, a     timeout): the server may be back soon
 *   timeout)
 * A retry waits an exponential backoff with jitter (about 0.5 s, doubling
 * up to 8 s, see callback_backoff_ms), or the Retry-After if that is
 * longer, and no try starts after the callback's deadline
 * (--callback-deadline-ms after callback_new): the last one starts at it,
 * then the callback is given up. Every failed try, the delivery and the
 * give-up are logged with the request id.
 *
 * All this holds while the process runs: a stop cuts the retries at its
 * drain deadline (shutdown.h), and what was not delivered then is named in
 * the log, or kept in the outbox (outbox.h) for the next start. */
#ifndef COMMON_CALLBACK_H
#define COMMON_CALLBACK_H

#include <curl/curl.h>
#include <stdbool.h>

#include <stdint.h>

#define CALLBACK_BACKOFF_MS 500      /* nominal wait before try 2; doubles */
#define CALLBACK_BACKOFF_MAX_MS 8000 /* ... up to this */
#define CALLBACK_TIMEOUT_MS 5000     /* whole transfer, per try */

struct callback {
    CURL *easy;                   /* PUT, JSON body, timeout, no signals */
    struct curl_slist *headers;
    char *body;                   /* owned */
    char request_id[129];         /* for log lines */
    int tries;                    /* attempts finished so far */
    uint64_t started_ms;          /* callback_new, on timer_now_ms's clock */
    uint64_t give_up_at_ms;       /* no try starts after this */
    unsigned jitter_seed;         /* rand_r state: this callback's own */
    char errbuf[CURL_ERROR_SIZE];
    void *owner;                  /* free for the stage (CURLOPT_PRIVATE too) */
    bool abandoned;               /* callback_send_blocking stopped trying:
                                     the server's stop (shutdown.h) */
};

enum callback_verdict {
    CALLBACK_DELIVERED,   /* 2xx */
    CALLBACK_RETRY,       /* try again after *retry_in_ms */
    CALLBACK_FAILED,      /* refused for good (most 4xx, 501, 505), or
                             past the deadline: logged, given up */
};

/* Once per process, before any thread starts: curl_global_init. */
void callback_global_init(void);
void callback_global_cleanup(void);

/* A ready-to-run PUT of body (taken over, freed by callback_free) to
 * main_service_url + "/api/exchange_result", retried until deadline_ms
 * from now (cfg->callback_deadline_ms): call it right before the first
 * try. NULL on ENOMEM. */
struct callback *callback_new(const char *main_service_url, char *body,
                              const char *request_id, int deadline_ms);
void callback_free(struct callback *cb);

/* The wait after the tries-th failed try (tries >= 1), before any
 * deadline: nominal CALLBACK_BACKOFF_MS << (tries - 1), at most
 * CALLBACK_BACKOFF_MAX_MS, drawn uniformly from [nominal / 2, nominal]
 * with rand_r(seed). The jitter spreads callbacks that failed together
 * (an outage) so they do not all come back in the same millisecond. */
long callback_backoff_ms(int tries, unsigned *seed);

/* Judges one finished attempt from curl's result, the HTTP status and its
 * Retry-After (the table above), logs it, and says what to do next. On
 * CALLBACK_RETRY, *retry_in_ms is the wait before running cb->easy again:
 * callback_backoff_ms, or the answer's Retry-After where that is longer,
 * cut so that the last try starts at the deadline. Past the deadline,
 * CALLBACK_FAILED with a logged give-up. */
enum callback_verdict callback_after_attempt(struct callback *cb,
                                             CURLcode result,
                                             long *retry_in_ms);

/* 01-03: performs the PUT with retries, sleeping through the backoff.
 * Returns true if delivered. Blocks the calling thread throughout, but
 * every wait (a try, a backoff) also watches the stop (shutdown.h): once
 * the drain is over (a second signal, or --drain-ms passed), the try in
 * progress is cut and it returns false with cb->abandoned set, without a
 * log line (the stop names what it did not deliver). */
bool callback_send_blocking(struct callback *cb);

#endif
