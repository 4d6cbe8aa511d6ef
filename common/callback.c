/* callback: the PUT to the main service and its retry policy. See
 * callback.h. */
#include "callback.h"

#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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
                              const char *request_id)
{
    if (body == NULL)
        return NULL;
    struct callback *cb = calloc(1, sizeof *cb);
    if (cb == NULL) {
        free(body);
        return NULL;
    }
    cb->body = body;
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

enum callback_verdict callback_after_attempt(struct callback *cb,
                                             CURLcode result,
                                             long *retry_in_ms)
{
    char why[CURL_ERROR_SIZE + 32] = "";
    enum callback_verdict verdict = CALLBACK_RETRY;

    cb->tries++;
    if (retry_in_ms)
        *retry_in_ms = 0;
    if (result == CURLE_OK) {
        long code = 0;
        curl_easy_getinfo(cb->easy, CURLINFO_RESPONSE_CODE, &code);
        if (code >= 200 && code < 300) {
            log_info("callback %s delivered (HTTP %ld, try %d)",
                     cb->request_id, code, cb->tries);
            verdict = CALLBACK_DELIVERED;
        } else if (code >= 400 && code < 500) {
            log_warn("callback %s rejected: HTTP %ld; not retried",
                     cb->request_id, code);
            verdict = CALLBACK_FAILED;
        } else {
            snprintf(why, sizeof why, "HTTP %ld", code);
        }
    } else {
        snprintf(why, sizeof why, "%s",
                 cb->errbuf[0] ? cb->errbuf : curl_easy_strerror(result));
    }
    cb->errbuf[0] = '\0'; /* the next attempt writes its own error */
    if (verdict != CALLBACK_RETRY)
        return verdict;

    if (cb->tries < CALLBACK_MAX_TRIES) {
        long wait = (long)CALLBACK_BACKOFF_MS << (cb->tries - 1);
        if (retry_in_ms)
            *retry_in_ms = wait;
        log_warn("callback %s: %s; retry %d/%d in %ld ms", cb->request_id,
                 why, cb->tries, CALLBACK_MAX_TRIES - 1, wait);
        return CALLBACK_RETRY;
    }
    log_warn("callback %s failed after %d tries: %s", cb->request_id,
             cb->tries, why);
    return CALLBACK_FAILED;
}

/* Sleeps ms milliseconds, resuming after signals with the time left. */
static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
        ;
}

bool callback_send_blocking(struct callback *cb)
{
    if (cb == NULL)
        return false;
    for (;;) {
        long wait = 0;
        CURLcode rc = curl_easy_perform(cb->easy);
        switch (callback_after_attempt(cb, rc, &wait)) {
        case CALLBACK_DELIVERED:
            return true;
        case CALLBACK_FAILED:
            return false;
        case CALLBACK_RETRY:
            sleep_ms(wait);
            break;
        }
    }
}
