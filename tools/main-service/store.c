/* store: see store.h. */
#include "store.h"

#include <cJSON.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"

#define STORE_BUCKETS 16384 /* power of two */
#define WAKE_STRIPES 256    /* condition variables; divides STORE_BUCKETS */
#define GONE_CHECK_MS 1000  /* how often a waiter asks if its client left */

struct result {
    char *id;                     /* decoded request_id */
    char *json;                   /* {"request_id":..,"breakdown":[..]} */
    size_t bytes;                 /* what it costs: result_bytes() */
    struct result *hnext;         /* next in the hash bucket */
    struct result *older, *newer; /* insertion order, for eviction */
};

static struct {
    pthread_mutex_t mu;
    /* A stored result broadcasts the stripe its id hashes to; store_stop
     * broadcasts them all. */
    pthread_cond_t arrived[WAKE_STRIPES];
    struct result *buckets[STORE_BUCKETS];
    struct result *oldest, *newest;
    size_t count, bytes;
    size_t max_results, max_bytes; /* set by store_init, read-only after */
    bool stopping;
} g_store = {.mu = PTHREAD_MUTEX_INITIALIZER};

int store_init(size_t max_results, size_t max_bytes)
{
    g_store.max_results = max_results;
    g_store.max_bytes = max_bytes;
    pthread_condattr_t ca;
    int rc = pthread_condattr_init(&ca);
    if (rc == 0) {
        rc = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        for (int i = 0; rc == 0 && i < WAKE_STRIPES; i++)
            rc = pthread_cond_init(&g_store.arrived[i], &ca);
        pthread_condattr_destroy(&ca);
    }
    if (rc != 0)
        fprintf(stderr, "pthread_cond_init: %s\n", strerror(rc));
    return rc == 0 ? 0 : -1;
}

static size_t hash_id(const char *s)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return (size_t)(h & (STORE_BUCKETS - 1));
}

/* Caller holds g_store.mu. */
static struct result *store_find(const char *id)
{
    for (struct result *r = g_store.buckets[hash_id(id)]; r; r = r->hnext)
        if (strcmp(r->id, id) == 0)
            return r;
    return NULL;
}

/* Caller holds g_store.mu. */
static void list_unlink(struct result *r)
{
    if (r->older)
        r->older->newer = r->newer;
    else
        g_store.oldest = r->newer;
    if (r->newer)
        r->newer->older = r->older;
    else
        g_store.newest = r->older;
    r->older = r->newer = NULL;
}

/* Caller holds g_store.mu. */
static void list_append(struct result *r)
{
    r->older = g_store.newest;
    r->newer = NULL;
    if (g_store.newest)
        g_store.newest->newer = r;
    else
        g_store.oldest = r;
    g_store.newest = r;
}

/* The bytes a result holds: its two strings and its node. The allocator's
 * own overhead is left out, so the real footprint is a little larger. */
static size_t result_bytes(const char *id, const char *json)
{
    return sizeof(struct result) + strlen(id) + 1 + strlen(json) + 1;
}

/* Caller holds g_store.mu. */
static void store_evict_oldest(void)
{
    struct result *r = g_store.oldest;
    list_unlink(r);
    struct result **pp = &g_store.buckets[hash_id(r->id)];
    while (*pp != r)
        pp = &(*pp)->hnext;
    *pp = r->hnext;
    g_store.count--;
    g_store.bytes -= r->bytes;
    log_info("result %s evicted: the store is full (%zu results, %zu "
             "bytes)", r->id, g_store.count, g_store.bytes);
    free(r->id);
    free(r->json);
    free(r);
}

/* Evicts the oldest results until both caps hold; the newest stays even
 * if it alone were over the byte cap (a body is at most 64 KiB, the cap at
 * least 1 MB). Caller holds g_store.mu. */
static void store_trim(void)
{
    while (g_store.oldest != g_store.newest &&
           (g_store.count > g_store.max_results ||
            g_store.bytes > g_store.max_bytes))
        store_evict_oldest();
}

enum store_put store_put(const char *id, char *json)
{
    struct result *fresh = calloc(1, sizeof *fresh);
    char *id_copy = strdup(id);
    if (!fresh || !id_copy) {
        free(fresh);
        free(id_copy);
        free(json);
        return STORE_PUT_NOMEM;
    }
    pthread_mutex_lock(&g_store.mu);
    struct result *r = store_find(id);
    if (r) { /* the key is taken: a repeat, or a conflict; nothing changes */
        enum store_put out = strcmp(r->json, json) == 0 ? STORE_REPEAT
                                                        : STORE_CONFLICT;
        pthread_mutex_unlock(&g_store.mu);
        free(fresh);
        free(id_copy);
        free(json);
        return out;
    }
    r = fresh;
    r->id = id_copy;
    r->json = json;
    size_t b = hash_id(id);
    r->hnext = g_store.buckets[b];
    g_store.buckets[b] = r;
    list_append(r);
    g_store.count++;
    r->bytes = result_bytes(r->id, r->json);
    g_store.bytes += r->bytes;
    store_trim();
    pthread_cond_broadcast(&g_store.arrived[hash_id(id) % WAKE_STRIPES]);
    pthread_mutex_unlock(&g_store.mu);
    return STORE_NEW;
}

size_t store_count(void)
{
    pthread_mutex_lock(&g_store.mu);
    size_t n = g_store.count;
    pthread_mutex_unlock(&g_store.mu);
    return n;
}

char *store_list_json(void)
{
    cJSON *arr = cJSON_CreateArray();
    bool ok = arr != NULL;
    pthread_mutex_lock(&g_store.mu);
    for (struct result *r = g_store.oldest; ok && r; r = r->newer) {
        cJSON *s = cJSON_CreateString(r->id);
        ok = s && cJSON_AddItemToArray(arr, s);
        if (s && !ok)
            cJSON_Delete(s);
    }
    pthread_mutex_unlock(&g_store.mu);
    char *text = ok ? cJSON_PrintUnformatted(arr) : NULL;
    cJSON_Delete(arr);
    return text;
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static struct timespec ns_to_timespec(int64_t ns)
{
    return (struct timespec){.tv_sec = ns / 1000000000,
                             .tv_nsec = ns % 1000000000};
}

enum store_wait store_wait(const char *id, int wait_ms, char **json,
                           bool (*gone)(void *arg), void *arg)
{
    int64_t start = now_ns();
    int64_t deadline = start + (int64_t)wait_ms * 1000000;
    int64_t next_check = start + (int64_t)GONE_CHECK_MS * 1000000;
    pthread_cond_t *arrived = &g_store.arrived[hash_id(id) % WAKE_STRIPES];
    enum store_wait out;
    *json = NULL;
    pthread_mutex_lock(&g_store.mu);
    for (;;) {
        struct result *r = store_find(id);
        if (r) {
            *json = strdup(r->json);
            out = *json ? STORE_FOUND : STORE_NOMEM;
            break;
        }
        if (g_store.stopping) {
            out = STORE_STOPPING;
            break;
        }
        int64_t now = now_ns();
        if (now >= deadline) {
            out = STORE_TIMEOUT;
            break;
        }
        if (now >= next_check) {
            pthread_mutex_unlock(&g_store.mu);
            bool left = gone(arg);
            pthread_mutex_lock(&g_store.mu);
            if (left) {
                out = STORE_GONE;
                break;
            }
            next_check = now + (int64_t)GONE_CHECK_MS * 1000000;
            continue; /* the result may have come while unlocked */
        }
        struct timespec wake =
            ns_to_timespec(deadline < next_check ? deadline : next_check);
        int rc = pthread_cond_timedwait(arrived, &g_store.mu, &wake);
        if (rc != 0 && rc != ETIMEDOUT) {
            log_warn("pthread_cond_timedwait: %s", strerror(rc));
            out = STORE_TIMEOUT;
            break;
        }
    }
    pthread_mutex_unlock(&g_store.mu);
    return out;
}

void store_stop(void)
{
    pthread_mutex_lock(&g_store.mu);
    g_store.stopping = true;
    for (int i = 0; i < WAKE_STRIPES; i++)
        pthread_cond_broadcast(&g_store.arrived[i]);
    pthread_mutex_unlock(&g_store.mu);
}
