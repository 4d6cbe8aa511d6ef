/* callback: the PUT of a finished job to the main service,
 * MAIN_SERVICE_URL/api/exchange_result, as a libcurl easy handle.
 *
 * Every stage builds the request the same way (callback_new) and applies the
 * same retry policy (callback_after_attempt); only who runs the transfer
 * changes: curl_easy_perform in 01-03 (callback_send_blocking), a multi
 * handle in 04-06. Retry: connection errors and 5xx, up to
 * CALLBACK_MAX_TRIES tries with doubling backoff; never on 4xx, which would
 * fail again the same way. */
#ifndef COMMON_CALLBACK_H
#define COMMON_CALLBACK_H

#include <curl/curl.h>
#include <stdbool.h>

#define CALLBACK_MAX_TRIES 3
#define CALLBACK_BACKOFF_MS 500   /* before try 2; doubles for each next one */
#define CALLBACK_TIMEOUT_MS 5000  /* whole transfer, per try */

struct callback {
    CURL *easy;                   /* PUT, JSON body, timeout, no signals */
    struct curl_slist *headers;
    char *body;                   /* owned */
    char request_id[129];         /* for log lines */
    int tries;                    /* attempts finished so far */
    char errbuf[CURL_ERROR_SIZE];
    void *owner;                  /* free for the stage (CURLOPT_PRIVATE too) */
};

enum callback_verdict {
    CALLBACK_DELIVERED,   /* 2xx */
    CALLBACK_RETRY,       /* try again after *retry_in_ms */
    CALLBACK_FAILED,      /* 4xx, or out of tries: logged, given up */
};

/* Once per process, before any thread starts: curl_global_init. */
void callback_global_init(void);
void callback_global_cleanup(void);

/* A ready-to-run PUT of body (taken over, freed by callback_free) to
 * main_service_url + "/api/exchange_result". NULL on ENOMEM. */
struct callback *callback_new(const char *main_service_url, char *body,
                              const char *request_id);
void callback_free(struct callback *cb);

/* Judges one finished attempt from curl's result and the HTTP status, logs
 * it, and says what to do next. On CALLBACK_RETRY, *retry_in_ms is the
 * backoff to wait before running cb->easy again. */
enum callback_verdict callback_after_attempt(struct callback *cb,
                                             CURLcode result,
                                             long *retry_in_ms);

/* 01-03: performs the PUT with retries, sleeping through the backoff.
 * Returns true if delivered. Blocks the calling thread throughout. */
bool callback_send_blocking(struct callback *cb);

#endif
