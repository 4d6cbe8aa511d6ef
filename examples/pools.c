/* pools: 500 requests from a process pool, a thread pool and coroutines.
 *
 * Section 14 ("Process pool, thread pool, async client"). Python original
 * (the fourth seed lecture): 500 GETs through ProcessPoolExecutor
 * (max_workers=100) took 2.27 s, through ThreadPoolExecutor 2.10 s, with
 * an aiohttp client 1.77 s.
 *
 * Usage: pools URL [requests=500] [workers=100]
 * Each mode sends `requests` POSTs of a one-bill exchange_sync body to URL
 * (a stage's /api/exchange_sync), `workers` at a time, each worker with
 * its own libcurl handle (so its own keep-alive connection):
 *   processes   `workers` forked children, each sending its share
 *   threads     `workers` pthreads, each sending its share
 *   coroutines  `workers` coroutines on 06's scheduler, one thread, the
 *               transfers driven by co_curl_perform (curl's multi API in
 *               the scheduler's epoll)
 * What to notice: against a server that answers in a few ms, the three
 * take about the same time, set by the server; the pools pay for their
 * workers (a fork or a thread each) before the first request, the
 * coroutines pay a few KiB each. Python's gaps come from Python's own
 * costs (process start-up, the GIL), which C does not have. */
#include "../06-coroutines/coro.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *url;
static long total = 500, workers = 100;
static const char body[] = "{\"request_id\":\"pool\",\"exchange_rate\":2,"
                           "\"bills\":[{\"denomination_id\":1,\"denomination\":1,\"count\":1}]}";

static size_t discard(char *p, size_t size, size_t n, void *arg)
{
    (void)p;
    (void)arg;
    return size * n;
}

static CURL *new_easy(struct curl_slist *hdrs)
{
    CURL *e = curl_easy_init();
    if (!e)
        return NULL;
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 30000L);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    return e;
}

static int answered_200(CURL *e, CURLcode rc)
{
    long status = 0;
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
    return rc == CURLE_OK && status == 200;
}

/* Worker w's share of the requests. */
static long share(long w)
{
    return total / workers + (w < total % workers);
}

/* One worker of a pool: its share, one after another; returns how many
 * got 200. */
static long blocking_worker(long w)
{
    struct curl_slist *hdrs = curl_slist_append(NULL, "Content-Type: application/json");
    CURL *e = new_easy(hdrs);
    long ok = 0;
    for (long i = 0; e && i < share(w); i++)
        ok += answered_200(e, curl_easy_perform(e));
    curl_easy_cleanup(e);
    curl_slist_free_all(hdrs);
    return ok;
}

static long run_processes(void)
{
    pid_t *pids = calloc(workers, sizeof *pids);
    long ok = 0;
    if (!pids)
        return 0;
    for (long w = 0; w < workers; w++) {
        pids[w] = fork();
        if (pids[w] == 0)
            _exit(blocking_worker(w) == share(w) ? 0 : 1);
    }
    for (long w = 0; w < workers; w++) {
        int status;
        if (pids[w] < 0)
            continue;
        while (waitpid(pids[w], &status, 0) < 0 && errno == EINTR) {}
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
            ok += share(w);
    }
    free(pids);
    return ok;
}

static void *thread_main(void *arg)
{
    return (void *)(intptr_t)blocking_worker((intptr_t)arg);
}

static long run_threads(void)
{
    pthread_t *ts = calloc(workers, sizeof *ts);
    int *started = calloc(workers, sizeof *started);
    long ok = 0;
    for (long w = 0; ts && started && w < workers; w++)
        started[w] = pthread_create(&ts[w], NULL, thread_main, (void *)(intptr_t)w) == 0;
    for (long w = 0; ts && started && w < workers; w++) {
        void *r;
        if (started[w] && pthread_join(ts[w], &r) == 0)
            ok += (intptr_t)r;
    }
    free(ts);
    free(started);
    return ok;
}

static void *co_worker(void *arg)
{
    long w = (intptr_t)arg, ok = 0;
    struct curl_slist *hdrs = curl_slist_append(NULL, "Content-Type: application/json");
    CURL *e = new_easy(hdrs);
    for (long i = 0; e && i < share(w); i++) {
        int rc = co_curl_perform(e);
        ok += rc >= 0 && answered_200(e, (CURLcode)rc);
    }
    curl_easy_cleanup(e);
    curl_slist_free_all(hdrs);
    return (void *)(intptr_t)ok;
}

static void *co_main(void *arg)
{
    long *ok = arg;
    struct co **cs = calloc(workers, sizeof *cs);
    void **rs = calloc(workers, sizeof *rs);
    if (cs && rs) {
        for (long w = 0; w < workers; w++)
            cs[w] = co_spawn(co_worker, (void *)(intptr_t)w);
        if (co_gather(cs, workers, -1, rs) == 0)
            for (long w = 0; w < workers; w++)
                *ok += (intptr_t)rs[w];
    }
    free(cs);
    free(rs);
    return NULL;
}

static long run_coroutines(void)
{
    long ok = 0;
    if (co_sched_init(NULL) == 0 && co_spawn(co_main, &ok))
        co_sched_run();
    co_sched_free();
    return ok;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: pools URL [requests=500] [workers=100]\n");
        return 2;
    }
    url = argv[1];
    if (argc > 2)
        total = atol(argv[2]);
    if (argc > 3)
        workers = atol(argv[3]);
    if (total < 1 || workers < 1 || workers > total) {
        fprintf(stderr, "pools: need 1 <= workers <= requests\n");
        return 2;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return 1;
    static const struct { const char *name; long (*run)(void); } modes[] = {
        {"processes", run_processes}, {"threads", run_threads}, {"coroutines", run_coroutines}};
    int failed = 0;
    for (size_t m = 0; m < 3; m++) {
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        long ok = modes[m].run();
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double s = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
        printf("%-10s %ld requests, %ld workers: %.2f s, %ld answered 200\n", modes[m].name,
               total, workers, s, ok);
        failed |= ok != total;
    }
    curl_global_cleanup();
    return failed;
}
