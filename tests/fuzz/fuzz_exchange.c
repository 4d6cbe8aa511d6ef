/* fuzz_exchange: libFuzzer target for the business logic (common/exchange.c):
 * the input is a request body, as POST /api/exchange_sync receives it.
 *
 * The body goes through exchange_parse_request twice: from a buffer of
 * exactly its length (so AddressSanitizer sees any read past it) and from a
 * NUL-terminated copy (what the HTTP parser hands over); the verdicts must
 * agree. The first parse runs on a thread with a 64 KiB stack, the size of
 * a coroutine's stack in 06: the business logic runs there, so a body that
 * makes the parse recurse deeply must not overflow it. Then:
 * - accepted: every field is within its documented range, the subtotals are
 *   finite, and the sync response and the callback body are valid JSON
 *   (strict UTF-8, re-parsed by cJSON with nothing after it) that say what
 *   the request said: same request_id, one breakdown entry per bill with the
 *   same denomination_id and the computed subtotal, a finite total_rub;
 * - refused: a detail is given, and the error body {"detail": ...} is valid
 *   JSON carrying it.
 *
 * Build and run: make fuzz (tests/fuzz/fuzz.mk). The same checks run
 * without libFuzzer in tests/test_fuzz_regressions.c. */
#include "fuzz_common.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include "exchange.h"

/* 06-coroutines/coro.h: CO_DEFAULT_STACK_SIZE. */
#define FX_SMALL_STACK (64 * 1024)

/* FX_SMALL_STACK, or the system's minimum for a thread's stack where that
 * is larger: arm64's is 128 KiB (glibc's PTHREAD_STACK_MIN there, for
 * 64 KiB pages), and a 64 KiB stack is refused with EINVAL. There the
 * parse runs on 128 KiB: an overflow between 64 and 128 KiB deep is
 * caught on x86-64 only. */
static size_t fx_small_stack(void)
{
    long min = sysconf(_SC_THREAD_STACK_MIN);
    return min > FX_SMALL_STACK ? (size_t)min : FX_SMALL_STACK;
}

struct fx_parse_job {
    const char *json;
    size_t len;
    struct exchange_request *out;
    char *err;
    size_t errlen;
    int rc;
    bool done;
};

/* One worker thread with a small stack parses every input, handed over
 * under a lock. (A thread per input would be simpler, but AddressSanitizer
 * keeps some memory per thread ever created, and a long run would end in
 * libFuzzer's out-of-memory verdict instead of a finding.) */
static pthread_mutex_t fx_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t fx_wake = PTHREAD_COND_INITIALIZER;
static struct fx_parse_job *fx_job; /* the job in hand, or NULL */

static void *fx_worker(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&fx_lock);
    for (;;) {
        while (fx_job == NULL || fx_job->done)
            pthread_cond_wait(&fx_wake, &fx_lock);
        struct fx_parse_job *j = fx_job;
        pthread_mutex_unlock(&fx_lock);
        j->rc = exchange_parse_request(j->json, j->len, j->out, j->err,
                                       j->errlen);
        pthread_mutex_lock(&fx_lock);
        j->done = true;
        pthread_cond_broadcast(&fx_wake);
    }
    return NULL;
}

static void fx_start_worker(void)
{
    pthread_attr_t attr;
    pthread_t t;
    FUZZ_CHECK(pthread_attr_init(&attr) == 0 &&
                   pthread_attr_setstacksize(&attr, fx_small_stack()) == 0 &&
                   pthread_create(&t, &attr, fx_worker, NULL) == 0 &&
                   pthread_detach(t) == 0,
               "cannot start the small-stack thread");
    pthread_attr_destroy(&attr);
}

/* exchange_parse_request on a stack as small as a coroutine's: a stack
 * overflow there is a crash (and a finding) here too. */
static int fx_parse_on_small_stack(const char *json, size_t len,
                                   struct exchange_request *out, char *err,
                                   size_t errlen)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, fx_start_worker);
    struct fx_parse_job job = {json, len, out, err, errlen, -2, false};
    pthread_mutex_lock(&fx_lock);
    fx_job = &job;
    pthread_cond_broadcast(&fx_wake);
    while (!job.done)
        pthread_cond_wait(&fx_wake, &fx_lock);
    fx_job = NULL;
    pthread_mutex_unlock(&fx_lock);
    return job.rc;
}

/* Parses out as JSON: strict UTF-8, one value, nothing after it. NULL if
 * it is not; the caller deletes the result. */
static cJSON *fx_reparse(const char *out, const char *what)
{
    FUZZ_CHECK(out != NULL, "%s: no output (out of memory?)", what);
    size_t n = strlen(out);
    FUZZ_CHECK(fuzz_utf8_valid((const unsigned char *)out, n),
               "%s is not valid UTF-8: %.200s", what, out);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithOpts(out, &end, 1);
    FUZZ_CHECK(root != NULL, "%s is not valid JSON: %.200s", what, out);
    FUZZ_CHECK(cJSON_IsObject(root), "%s is not an object", what);
    return root;
}

static void fx_check_fields(const struct exchange_request *req)
{
    size_t id_len = strnlen(req->request_id, sizeof req->request_id);
    FUZZ_CHECK(id_len > 0 && id_len <= EXCHANGE_MAX_ID_LEN,
               "request_id of %zu bytes", id_len);
    FUZZ_CHECK(isfinite(req->exchange_rate) && req->exchange_rate > 0,
               "exchange_rate %g", req->exchange_rate);
    FUZZ_CHECK(req->num_bills >= 1 && req->num_bills <= EXCHANGE_MAX_BILLS,
               "%zu bills", req->num_bills);
    for (size_t i = 0; i < req->num_bills; i++) {
        const struct exchange_bill *b = &req->bills[i];
        FUZZ_CHECK(isfinite(b->denomination) && b->denomination > 0,
                   "bills[%zu].denomination %g", i, b->denomination);
        FUZZ_CHECK(b->count >= 0 && b->count <= 1000000000LL,
                   "bills[%zu].count %lld", i, b->count);
        FUZZ_CHECK(b->denomination_id >= -9007199254740991LL &&
                       b->denomination_id <= 9007199254740991LL,
                   "bills[%zu].denomination_id %lld", i, b->denomination_id);
    }
}

/* The breakdown array of a response against the request. */
static void fx_check_breakdown(const cJSON *root,
                               const struct exchange_request *req,
                               const double *subtotals, const char *what)
{
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(root, "breakdown");
    FUZZ_CHECK(cJSON_IsArray(arr) &&
                   (size_t)cJSON_GetArraySize(arr) == req->num_bills,
               "%s: breakdown is not one entry per bill", what);
    size_t i = 0;
    for (const cJSON *it = arr->child; it; it = it->next, i++) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(it,
                                                           "denomination_id");
        const cJSON *sub = cJSON_GetObjectItemCaseSensitive(it, "subtotal_rub");
        FUZZ_CHECK(cJSON_IsNumber(id) &&
                       id->valuedouble == (double)req->bills[i].denomination_id,
                   "%s: breakdown[%zu].denomination_id", what, i);
        FUZZ_CHECK(cJSON_IsNumber(sub) && sub->valuedouble == subtotals[i],
                   "%s: breakdown[%zu].subtotal_rub %.17g, computed %.17g",
                   what, i, cJSON_IsNumber(sub) ? sub->valuedouble : NAN,
                   subtotals[i]);
    }
}

static void fx_check_request_id(const cJSON *root,
                                const struct exchange_request *req,
                                const char *what)
{
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(root, "request_id");
    FUZZ_CHECK(cJSON_IsString(id) &&
                   strcmp(id->valuestring, req->request_id) == 0,
               "%s: request_id changed on the way out", what);
}

static void fx_check_accepted(const struct exchange_request *req)
{
    fx_check_fields(req);
    double subtotals[EXCHANGE_MAX_BILLS];
    for (size_t i = 0; i < req->num_bills; i++) {
        subtotals[i] = exchange_subtotal(&req->bills[i], req->exchange_rate);
        FUZZ_CHECK(isfinite(subtotals[i]) && subtotals[i] >= 0,
                   "subtotal %zu is %g", i, subtotals[i]);
    }

    char *out = exchange_sync_response(req, subtotals);
    cJSON *root = fx_reparse(out, "sync response");
    const cJSON *status = cJSON_GetObjectItemCaseSensitive(root, "status");
    FUZZ_CHECK(cJSON_IsString(status) &&
                   strcmp(status->valuestring, "completed") == 0,
               "sync response: status");
    fx_check_request_id(root, req, "sync response");
    fx_check_breakdown(root, req, subtotals, "sync response");
    const cJSON *total = cJSON_GetObjectItemCaseSensitive(root, "total_rub");
    FUZZ_CHECK(cJSON_IsNumber(total) && isfinite(total->valuedouble) &&
                   total->valuedouble >= 0,
               "sync response: total_rub");
    cJSON_Delete(root);
    free(out);

    out = exchange_callback_body("tok\"en", req, subtotals);
    root = fx_reparse(out, "callback body");
    const cJSON *token = cJSON_GetObjectItemCaseSensitive(root, "token");
    FUZZ_CHECK(cJSON_IsString(token) &&
                   strcmp(token->valuestring, "tok\"en") == 0,
               "callback body: token");
    fx_check_request_id(root, req, "callback body");
    fx_check_breakdown(root, req, subtotals, "callback body");
    cJSON_Delete(root);
    free(out);
}

static void fx_check_refused(const struct exchange_request *req,
                             const char *err)
{
    FUZZ_CHECK(err[0] != '\0', "refused without a detail");
    FUZZ_CHECK(req->num_bills == 0, "refused but num_bills %zu",
               req->num_bills);
    char *out = exchange_error_body(err);
    cJSON *root = fx_reparse(out, "error body");
    const cJSON *detail = cJSON_GetObjectItemCaseSensitive(root, "detail");
    FUZZ_CHECK(cJSON_IsString(detail) && strcmp(detail->valuestring, err) == 0,
               "error body does not carry the detail");
    cJSON_Delete(root);
    free(out);
}

/* Two parses of the same body must agree field by field. */
static void fx_compare(const struct exchange_request *a, int rc_a,
                       const char *err_a, const struct exchange_request *b,
                       int rc_b, const char *err_b)
{
    FUZZ_CHECK(rc_a == rc_b, "the NUL-terminated copy parses differently");
    FUZZ_CHECK(strcmp(err_a, err_b) == 0, "details differ: %s / %s", err_a,
               err_b);
    if (rc_a != 0)
        return;
    FUZZ_CHECK(strcmp(a->request_id, b->request_id) == 0 &&
                   a->exchange_rate == b->exchange_rate &&
                   a->num_bills == b->num_bills,
               "the NUL-terminated copy gives other fields");
    for (size_t i = 0; i < a->num_bills; i++)
        FUZZ_CHECK(a->bills[i].denomination_id == b->bills[i].denomination_id &&
                       a->bills[i].denomination == b->bills[i].denomination &&
                       a->bills[i].count == b->bills[i].count,
                   "the NUL-terminated copy gives other bills[%zu]", i);
}

int fuzz_exchange_input(const uint8_t *data, size_t size)
{
    /* Exactly size bytes, nothing readable after them. */
    char *exact = malloc(size ? size : 1);
    char *terminated = malloc(size + 1);
    struct exchange_request *a = malloc(sizeof *a), *b = malloc(sizeof *b);
    FUZZ_CHECK(exact && terminated && a && b, "out of memory");
    memcpy(exact, data, size);
    memcpy(terminated, data, size);
    terminated[size] = '\0';

    char err_a[160], err_b[160];
    int rc_a = fx_parse_on_small_stack(exact, size, a, err_a, sizeof err_a);
    int rc_b = exchange_parse_request(terminated, size, b, err_b, sizeof err_b);
    FUZZ_CHECK(rc_a == 0 || rc_a == -1, "exchange_parse_request gave %d",
               rc_a);
    fx_compare(a, rc_a, err_a, b, rc_b, err_b);
    if (rc_a == 0)
        fx_check_accepted(a);
    else
        fx_check_refused(a, err_a);

    free(exact);
    free(terminated);
    free(a);
    free(b);
    return 0;
}

#ifndef FUZZ_NO_MAIN
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_exchange_input(data, size);
}
#endif
