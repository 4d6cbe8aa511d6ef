/* callback: the PUT to the main service and its retry policy. See
 * callback.h. */
#include "callback.h"

#include "log.h"
#include "shutdown.h"
#include "timer.h"
#include "trace.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CALLBACK_PATH "/api/exchange_result"
#define CALLBACK_CONNECT_TIMEOUT_MS 2000L

void callback_global_init(void)
{
    CURLcode rc = curl_global_init(CURL_GLOBAL_DEFAULT);
    if (rc != CURLE_OK)
        log_warn("curl_global_init: %s", curl_easy_strerror(rc));
}

void callback_global_cleanup(void)
{
    curl_global_cleanup();
}

/* The main service's answer ({"status":"ok"}) matters only by its status
 * code, so the body is read and dropped instead of printed to stdout. */
static size_t discard_body(char *data, size_t size, size_t nmemb, void *ud)
{
    (void)data;
    (void)ud;
    return size * nmemb;
}

/* main_service_url without trailing slashes + CALLBACK_PATH, malloc'd. */
static char *callback_url(const char *base)
{
    size_t len = strlen(base);
    while (len > 0 && base[len - 1] == '/')
        len--;
    size_t total = len + sizeof CALLBACK_PATH;
    char *url = malloc(total);
    if (url) {
        memcpy(url, base, len);
        memcpy(url + len, CALLBACK_PATH, sizeof CALLBACK_PATH);
    }
    return url;
}

static bool callback_headers(struct callback *cb)
{
    struct curl_slist *h = curl_slist_append(NULL,
                                             "Content-Type: application/json");
    if (h == NULL)
        return false;
    cb->headers = h;
    /* Without this, curl may wait up to a second for "100 Continue" before
     * sending a larger body: a stall that has nothing to do with the lesson. */
    h = curl_slist_append(cb->headers, "Expect:");
    if (h == NULL)
        return false;
    cb->headers = h;
    return true;
}

static bool callback_setup(struct callback *cb, const char *url)
{
    CURL *e = cb->easy;
    CURLcode rc = CURLE_OK;
#define SET(opt, val) \
    do { if (rc == CURLE_OK) rc = curl_easy_setopt(e, opt, val); } while (0)
    SET(CURLOPT_URL, url);
#if LIBCURL_VERSION_NUM >= 0x075500 /* 7.85.0 */
    /* A mistyped MAIN_SERVICE_URL must never make us touch file:// etc. */
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
#endif
    SET(CURLOPT_CUSTOMREQUEST, "PUT");
    SET(CURLOPT_POSTFIELDSIZE, (long)strlen(cb->body));
    SET(CURLOPT_POSTFIELDS, cb->body);
    SET(CURLOPT_HTTPHEADER, cb->headers);
    SET(CURLOPT_TIMEOUT_MS, (long)CALLBACK_TIMEOUT_MS);
    SET(CURLOPT_CONNECTTIMEOUT_MS, CALLBACK_CONNECT_TIMEOUT_MS);
    /* Threads (03) and signal handlers: no SIGALRM-based DNS timeouts. */
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_ERRORBUFFER, cb->errbuf);
    SET(CURLOPT_WRITEFUNCTION, discard_body);
    SET(CURLOPT_PRIVATE, (void *)cb);
#undef SET
    return rc == CURLE_OK;
}

struct callback *callback_new(const char *main_service_url, char *body,
                              const char *request_id, int deadline_ms)
{
    if (body == NULL)
        return NULL;
    struct callback *cb = calloc(1, sizeof *cb);
    if (cb == NULL) {
        free(body);
        return NULL;
    }
    cb->body = body;
    cb->started_ms = timer_now_ms();
    cb->give_up_at_ms = cb->started_ms + (uint64_t)(deadline_ms > 0
                                                    ? deadline_ms : 0);
    /* Distinct per callback and per process (02's children), so jitter
     * really spreads them. */
    cb->jitter_seed = (unsigned)cb->started_ms ^ (unsigned)getpid() ^
                      (unsigned)(uintptr_t)cb;
    snprintf(cb->request_id, sizeof cb->request_id, "%s",
             request_id ? request_id : "");

    char *url = callback_url(main_service_url ? main_service_url : "");
    cb->easy = curl_easy_init();
    bool ok = url && cb->easy && callback_headers(cb) &&
              callback_setup(cb, url);
    free(url); /* curl keeps its own copy of string options */
    if (!ok) {
        callback_free(cb);
        return NULL;
    }
    return cb;
}

void callback_free(struct callback *cb)
{
    if (cb == NULL)
        return;
    if (cb->easy)
        curl_easy_cleanup(cb->easy);
    curl_slist_free_all(cb->headers);
    free(cb->body);
    free(cb);
}

long callback_backoff_ms(int tries, unsigned *seed)
{
    long nominal = CALLBACK_BACKOFF_MAX_MS;
    if (tries < 1)
        tries = 1;
    /* Shift only while it stays below the cap: no overflow for big tries. */
    if (tries <= 16 && ((long)CALLBACK_BACKOFF_MS << (tries - 1)) <
                       CALLBACK_BACKOFF_MAX_MS)
        nominal = (long)CALLBACK_BACKOFF_MS << (tries - 1);
    long half = nominal / 2;
    return half + (long)(rand_r(seed) % (unsigned)(nominal - half + 1));
}

/* What HTTP says about repeating a request that got `code` (RFC 9110,
 * section 15): true if the same request may well succeed later. */
static bool status_is_temporary(long code)
{
    switch (code) {
    case 408: /* Request Timeout: the server gave up waiting for us */
    case 425: /* Too Early: it will take this request a little later */
    case 429: /* Too Many Requests: come back after Retry-After */
    case 503: /* Service Unavailable: down for now (Retry-After) */
        return true;
    case 501: /* Not Implemented: the method never will be */
    case 505: /* HTTP Version Not Supported: nor the version */
        return false;
    }
    return code >= 500; /* other 5xx: it failed, maybe only this time;
                           other 4xx: our request is wrong, and stays so */
}

/* The wait the answer asked for (Retry-After, seconds or an HTTP-date:
 * libcurl reads both, a date as seconds from now), in ms; 0 if none. */
static long retry_after_ms(struct callback *cb)
{
    curl_off_t s = 0;
    if (curl_easy_getinfo(cb->easy, CURLINFO_RETRY_AFTER, &s) != CURLE_OK ||
        s <= 0)
        return 0; /* none, or a date already past */
    return s > 86400 ? 86400000L : (long)s * 1000; /* the deadline cuts it */
}

/* Sorts one finished attempt. Delivered (2xx) or refused for good (a
 * status status_is_temporary turns down): *verdict says so, and it is
 * logged here. Otherwise (connection error, timeout, a temporary status,
 * no status) *verdict stays RETRY, why says what went wrong, for the
 * caller's log line, and *asked_ms is the answer's Retry-After. */
static void judge_attempt(struct callback *cb, CURLcode result, char *why,
                          size_t why_len, enum callback_verdict *verdict,
                          long *asked_ms)
{
    *asked_ms = 0;
    if (result != CURLE_OK) {
        snprintf(why, why_len, "%s",
                 cb->errbuf[0] ? cb->errbuf : curl_easy_strerror(result));
        return;
    }
    long code = 0;
    curl_easy_getinfo(cb->easy, CURLINFO_RESPONSE_CODE, &code);
    if (code >= 200 && code < 300) {
        log_info("callback %s delivered (HTTP %ld, try %d)", cb->request_id,
                 code, cb->tries);
        *verdict = CALLBACK_DELIVERED;
    } else if (code >= 400 && !status_is_temporary(code)) {
        log_warn("callback %s rejected: HTTP %ld; not retried, given up",
                 cb->request_id, code);
        *verdict = CALLBACK_FAILED;
    } else {
        *asked_ms = retry_after_ms(cb);
        snprintf(why, why_len, "HTTP %ld", code);
    }
}

enum callback_verdict callback_after_attempt(struct callback *cb,
                                             CURLcode result,
                                             long *retry_in_ms)
{
    char why[CURL_ERROR_SIZE + 32] = "";
    enum callback_verdict verdict = CALLBACK_RETRY;
    long asked = 0;

    TRACE(TRACE_CB_END, cb, 0);
    cb->tries++;
    if (retry_in_ms)
        *retry_in_ms = 0;
    judge_attempt(cb, result, why, sizeof why, &verdict, &asked);
    cb->errbuf[0] = '\0'; /* the next attempt writes its own error */
    if (verdict != CALLBACK_RETRY)
        return verdict;

    uint64_t now = timer_now_ms();
    double spent = (double)(now - cb->started_ms) / 1000.0;
    if (now >= cb->give_up_at_ms) {
        log_warn("callback %s given up after %d tries over %.1f s "
                 "(--callback-deadline-ms): %s", cb->request_id, cb->tries,
                 spent, why);
        return CALLBACK_FAILED;
    }
    /* Never sooner than the server asked, nor sooner than our backoff. */
    long wait = callback_backoff_ms(cb->tries, &cb->jitter_seed);
    if (asked > wait)
        wait = asked;
    if ((uint64_t)wait > cb->give_up_at_ms - now)
        wait = (long)(cb->give_up_at_ms - now); /* the last try: at the end */
    if (retry_in_ms)
        *retry_in_ms = wait;
    char asked_text[48] = "";
    if (asked > 0)
        snprintf(asked_text, sizeof asked_text, " (Retry-After: %ld s)",
                 asked / 1000);
    log_warn("callback %s: try %d failed: %s; next try in %ld ms%s "
             "(%.1f s spent of %.1f)", cb->request_id, cb->tries, why, wait,
             asked_text, spent,
             (double)(cb->give_up_at_ms - cb->started_ms) / 1000.0);
    return CALLBACK_RETRY;
}

/* One try of cb->easy, as curl_easy_perform would run it, but waiting in
 * curl_multi_poll beside the now pipe (shutdown.h), and never past the
 * drain deadline: a stop cuts a try that a silent main service would hold
 * for CALLBACK_TIMEOUT_MS. False if it was cut; otherwise *result is the
 * try's result. */
static bool perform_unless_stopped(struct callback *cb, CURLcode *result)
{
    CURLM *multi = curl_multi_init();
    if (multi == NULL || curl_multi_add_handle(multi, cb->easy) != CURLM_OK) {
        curl_multi_cleanup(multi);
        *result = CURLE_OUT_OF_MEMORY; /* a failed try, retried */
        return true;
    }
    *result = CURLE_OK;
    bool cut = false;
    for (int running = 1; running;) {
        struct curl_waitfd now = {.fd = shutdown_now_fd(),
                                  .events = CURL_WAIT_POLLIN};
        CURLMcode rc = curl_multi_perform(multi, &running);
        if (rc == CURLM_OK && running)
            rc = curl_multi_poll(multi, &now, 1,
                                 shutdown_cut_timeout(1000), NULL);
        if (rc != CURLM_OK) {
            *result = CURLE_RECV_ERROR; /* not expected: a failed try */
            break;
        }
        if (running && (now.revents || shutdown_drain_over())) {
            cut = true;
            break;
        }
    }
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(multi, &left)) != NULL)
        if (msg->msg == CURLMSG_DONE)
            *result = msg->data.result;
    curl_multi_remove_handle(multi, cb->easy);
    curl_multi_cleanup(multi);
    return !cut;
}

bool callback_send_blocking(struct callback *cb)
{
    if (cb == NULL)
        return false;
    for (;;) {
        long wait = 0;
        CURLcode rc;
        TRACE(TRACE_CB_BEGIN, cb, 0);
        if (!perform_unless_stopped(cb, &rc)) {
            cb->abandoned = true;
            return false;
        }
        switch (callback_after_attempt(cb, rc, &wait)) {
        case CALLBACK_DELIVERED:
            return true;
        case CALLBACK_FAILED:
            return false;
        case CALLBACK_RETRY:
            if (!shutdown_sleep_ms((int)wait)) { /* the backoff, cut */
                cb->abandoned = true;
                return false;
            }
            break;
        }
    }
}
