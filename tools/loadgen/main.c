/* loadgen: the benchmark client behind make bench and make demo.
 *
 * The model, and why: many transfers in flight on libcurl's multi
 * interface, driven by our own epoll loop (the "multi socket" API). It is
 * the C form of an aiohttp client that starts many requests with
 * asyncio.gather: curl tells us which sockets it wants watched
 * (CURLMOPT_SOCKETFUNCTION) and when it next needs a timeout
 * (CURLMOPT_TIMERFUNCTION); we wait in epoll_wait and hand back only the
 * sockets that are ready (curl_multi_socket_action). The plainer
 * curl_multi_perform loop visits every transfer on every wake-up, O(-c) per
 * event, which makes a 5000-connection run crawl; the socket API costs
 * O(ready sockets).
 *
 * One such loop per worker thread (-t, default 1); each owns its share of
 * the connections, its own multi handle, epoll set and records, and shares
 * nothing with the others but a request counter and a stop signal. The
 * main thread only supervises: Ctrl-C, the progress line, --stall's
 * connections and --watch-pid's samples. --procs N runs the loops in N
 * processes instead (procs.c): one process may hold only so many
 * descriptors, and 100,000 clients need more than one process has.
 *
 * Two schedules (worker.c). By default a closed loop, like wrk and ab: a
 * connection sends its next request when the last one is answered, so a
 * server that stalls holds the client back too. --rate R is an open loop,
 * like wrk2: requests are due at fixed times and each is timed from when
 * it was due, so a stall shows in the latency of every request that was
 * due during it ("coordinated omission" is what the closed loop hides).
 *
 * Two engines. libcurl costs about twice wrk's CPU per request (measured
 * on loopback: ~13.5 us against ~7.4 us, the extra all in user space:
 * building the request, re-reading the URL, parsing every header, besides
 * two poll() calls per request), so one curl thread tops out
 * near 75k requests/s, and on a small machine the client's CPU is the
 * server's loss. A benchmark client that is the bottleneck measures
 * nothing, so --engine raw swaps curl for rawhttp.c, a minimal HTTP/1.1
 * client as lean as wrk's (~6.5 us), on the same loop, slots and records:
 * make bench uses it for throughput. curl stays the default for its
 * breadth (chunked answers, https, every HTTP corner) and because it is
 * the client a C program would really use.
 *
 * Cheap per request: each worker makes its easy handles once and re-adds
 * one to the multi handle when its transfer ends, so keep-alive connections
 * are reused and nothing is allocated per request besides a record slot; a
 * socket curl forgets between two requests on one connection stays in
 * epoll (no epoll_ctl pair per request).
 *
 * What it measures: each request's start (its handle added) and end (curl
 * reports it done) on CLOCK_MONOTONIC. Latency percentiles are over 2xx
 * answers; failures are counted by kind (connection refused, timeout,
 * reset, closed without an answer, other curl errors, HTTP status codes).
 * --timeline draws every request (or an even sample of 40) on one time
 * axis: a blocking server draws a staircase, a concurrent one a wall.
 * --stall N holds N half-sent requests open during the run (slowloris);
 * --watch-pid samples a server's memory and CPU while it serves us.
 *
 * Simplifications: HTTP/1.1 only, one URL and one body for every request.
 *
 * This file is main: it starts the workers, supervises them and reports.
 * loadgen.h says which file holds each of the other concerns. */
#include "loadgen.h"
#include "net.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

static int stop_signal; /* which one, for main thread's final raise() */

/* ---- setup ------------------------------------------------------------ */

/* Thousands of connections need thousands of descriptors: take the whole
 * hard limit, and say so when even that is too few. */
static void raise_fd_limit(long need)
{
    struct rlimit rl;
    net_raise_fd_limit(); /* on failure the limit read below is the old one */
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    if (rl.rlim_cur != RLIM_INFINITY && (rlim_t)need + 32 > rl.rlim_cur)
        fprintf(stderr,
                "loadgen: warning: %ld connections but only %llu file "
                "descriptors allowed; some will fail\n",
                need, (unsigned long long)rl.rlim_cur);
}

/* The shared mapping's size: struct live and a counter block per loop. */
static size_t live_size(const struct options *o)
{
    return sizeof(struct live) +
           (size_t)(o->procs * o->threads) * sizeof(struct loop_counters);
}

/* Memory every process of the run sees (struct live), mapped before any
 * fork; zeroed, as mmap gives it. */
static struct live *live_map(const struct options *o)
{
    struct live *lv = mmap(NULL, live_size(o), PROT_READ | PROT_WRITE,
                           MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (lv == MAP_FAILED)
        return NULL;
    lv->nloops = (size_t)(o->procs * o->threads);
    return lv;
}

/* ---- the main thread: start, supervise, merge ------------------------- */

static void progress(struct loadgen *lg, double t0, double now, double *last,
                     size_t *last_done, bool final)
{
    const struct options *o = &lg->opt;
    if (o->quiet || o->print)
        return;
    bool tty = isatty(STDERR_FILENO);
    if (final) {
        if (*last && tty)
            fputs("\r\033[K", stderr); /* the summary replaces the line */
        return;
    }
    double el = now - t0;
    if (el < PROGRESS_AFTER_S || now - *last < 1.0)
        return;
    size_t done = 0, active = 0;
    const struct live *lv = lg->sh.live;
    for (size_t i = 0; i < lv->nloops; i++) {
        done += atomic_load_explicit(&lv->loops[i].finished,
                                     memory_order_relaxed);
        active += atomic_load_explicit(&lv->loops[i].active,
                                       memory_order_relaxed);
    }
    double rate = *last ? (double)(done - *last_done) / (now - *last)
                        : (double)done / el;
    char when[48];
    if (o->total)
        snprintf(when, sizeof when, "%5.1f s  %zu/%ld done", el, done,
                 o->total);
    else
        snprintf(when, sizeof when, "%5.1f/%g s  %zu done", el,
                 o->duration_s, done);
    fprintf(stderr, "%sloadgen: %s  %.0f req/s  %zu in flight%s",
            tty ? "\r\033[K" : "", when, rate, active, tty ? "" : "\n");
    fflush(stderr);
    *last = now;
    *last_done = done;
}

void loadgen_stop(struct loadgen *lg)
{
    atomic_store(&lg->sh.live->stop, true);
    uint64_t one = 1;
    if (write(lg->sh.stop_fd, &one, sizeof one) < 0)
        perror("loadgen: eventfd");
}

/* Has every loop of the run ended (or, with --procs, a process died)? */
static bool all_done(struct loadgen *lg)
{
    if (lg->opt.procs > 1 && (procs_reap(lg, false) || lg->kid_failed))
        return true;
    for (size_t i = 0; i < lg->sh.live->nloops; i++)
        if (!atomic_load(&lg->sh.live->loops[i].done))
            return false;
    return true;
}

/* Waits for the workers, sampling the server every 50 ms and drawing the
 * progress line every second. SIGINT/SIGTERM are blocked in every thread
 * (and process) and taken here with sigtimedwait: the first one stops the
 * run, a second one kills (the processes of --procs die with this one). */
static void supervise(struct loadgen *lg, const sigset_t *sigs)
{
    double t0 = now_s(), last = 0, next_sample = t0;
    size_t last_done = 0;
    while (!all_done(lg)) {
        struct timespec ts = {0, SAMPLE_EVERY_MS * 1000000L};
        int sig = sigtimedwait(sigs, NULL, &ts);
        if (sig > 0 && !lg->interrupted) {
            stop_signal = sig;
            lg->interrupted = true;
            loadgen_stop(lg);
            signal(SIGINT, SIG_DFL); /* a second Ctrl-C ends it at once */
            signal(SIGTERM, SIG_DFL);
            pthread_sigmask(SIG_UNBLOCK, sigs, NULL);
        }
        double now = now_s();
        if (lg->watch.alive && now >= next_sample) {
            watch_sample(&lg->watch);
            next_sample = now + SAMPLE_EVERY_MS / 1000.0;
        }
        progress(lg, t0, now, &last, &last_done, false);
    }
    progress(lg, t0, now_s(), &last, &last_done, true);
}

/* This process's loops' records in one array, for the summary. */
bool workers_merge(struct loadgen *lg)
{
    size_t n = 0;
    for (long i = 0; i < lg->opt.threads; i++)
        n += lg->workers[i].nrecs;
    lg->recs = malloc((n ? n : 1) * sizeof *lg->recs);
    if (!lg->recs)
        return false;
    for (long i = 0; i < lg->opt.threads; i++) {
        struct worker *w = &lg->workers[i];
        memcpy(lg->recs + lg->nrecs, w->recs, w->nrecs * sizeof *w->recs);
        lg->nrecs += w->nrecs;
        if (!lg->first_error[0] && w->first_error[0])
            memcpy(lg->first_error, w->first_error, sizeof lg->first_error);
    }
    return true;
}

/* This process's -t loops, numbered from first_loop: each gets its share
 * of -c and of -n, counted over every loop of every process (n >= c, so
 * no loop has fewer requests than connections). */
bool workers_start(struct loadgen *lg, CURLU *url, size_t first_loop)
{
    size_t t = (size_t)lg->opt.threads, c = (size_t)lg->opt.concurrency;
    size_t n = (size_t)lg->opt.total, all = lg->sh.live->nloops;
    lg->workers = calloc(t, sizeof *lg->workers);
    if (!lg->workers)
        return false;
    for (size_t i = 0; i < t; i++)
        lg->workers[i].ep = -1;
    for (size_t i = 0; i < t; i++) {
        size_t k = first_loop + i;
        if (!worker_init(&lg->workers[i], &lg->sh, k, c / all + (k < c % all),
                         n / all + (k < n % all), url))
            return false;
    }
    for (size_t i = 0; i < t; i++) {
        int rc = pthread_create(&lg->workers[i].tid, NULL, worker_run,
                                &lg->workers[i]);
        if (rc != 0) {
            fprintf(stderr, "loadgen: pthread_create: %s\n", strerror(rc));
            loadgen_stop(lg); /* the started ones wind up */
            for (size_t k = i; k < t; k++)
                atomic_store(&lg->workers[k].ctr->done, true);
            return false;
        }
        lg->workers[i].started = true;
    }
    return true;
}

void workers_join(struct loadgen *lg)
{
    for (long i = 0; lg->workers && i < lg->opt.threads; i++)
        if (lg->workers[i].started) {
            pthread_join(lg->workers[i].tid, NULL);
            lg->workers[i].started = false;
        }
}

/* ---- main ------------------------------------------------------------- */

static void loadgen_free(struct loadgen *lg)
{
    workers_join(lg);
    for (long i = 0; lg->workers && i < lg->opt.threads; i++)
        worker_free(&lg->workers[i]);
    for (size_t i = 0; lg->stall_fds && i < (size_t)lg->opt.stall; i++)
        if (lg->stall_fds[i] >= 0)
            close(lg->stall_fds[i]);
    curl_slist_free_all(lg->sh.headers);
    raw_request_free(&lg->sh.raw_rq);
    if (lg->sh.stop_fd >= 0)
        close(lg->sh.stop_fd);
    if (lg->sh.live)
        munmap(lg->sh.live, live_size(&lg->opt));
    free(lg->workers);
    for (long i = 0; lg->kid_fds && i < lg->opt.procs; i++)
        if (lg->kid_fds[i] >= 0)
            close(lg->kid_fds[i]);
    for (int i = 0; i < 2; i++)
        if (lg->go_fds[i] >= 0)
            close(lg->go_fds[i]);
    free(lg->kids);
    free(lg->kid_fds);
    free(lg->recs);
    free(lg->stall_fds);
    free(lg->stall_states);
    free(lg->opt.body);
}

/* The request headers every transfer shares. curl asks "Expect:
 * 100-continue" before big bodies; that round trip would be measured too,
 * so it is switched off. */
static bool make_headers(struct loadgen *lg)
{
    if (!lg->opt.body)
        return true;
    lg->sh.headers = curl_slist_append(NULL, "Expect:");
    if (lg->sh.headers)
        lg->sh.headers = curl_slist_append(lg->sh.headers,
                                           "Content-Type: application/json");
    return lg->sh.headers != NULL;
}

int main(int argc, char **argv)
{
    struct loadgen lg = {.sh.stop_fd = -1, .go_fds = {-1, -1}};
    parse_options(&lg.opt, argc, argv);
    lg.sh.opt = &lg.opt;
    /* Each process holds its share of the connections. */
    raise_fd_limit((lg.opt.concurrency + lg.opt.procs - 1) / lg.opt.procs +
                   lg.opt.stall);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "loadgen: curl_global_init failed\n");
        return 3;
    }
    CURLU *url = curl_url();
    if (!url || curl_url_set(url, CURLUPART_URL, lg.opt.url, 0) != CURLUE_OK) {
        fprintf(stderr, "loadgen: cannot parse URL '%s'\n", lg.opt.url);
        curl_url_cleanup(url);
        free(lg.opt.body);
        curl_global_cleanup();
        return 2;
    }
    /* Signals are taken by the main thread only (supervise); workers
     * inherit this mask. SIGPIPE must never end a benchmark. */
    signal(SIGPIPE, SIG_IGN);
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);

    int rc = 2;
    struct summary s;
    if (lg.opt.sources && !url_is_ipv4_loopback(url))
        goto out;
    lg.sh.stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    lg.sh.live = live_map(&lg.opt);
    if (lg.opt.engine == ENGINE_RAW && (rc = raw_setup(&lg, url)) != 0) {
        if (rc == 3)
            fprintf(stderr, "loadgen: cannot set up --engine raw for %s\n",
                    lg.opt.url);
        goto out;
    }
    rc = 3;
    if (lg.sh.stop_fd < 0 || !lg.sh.live || !make_headers(&lg) ||
        !stalls_open(&lg, url)) {
        fprintf(stderr, "loadgen: setup failed (%s)\n",
                errno ? strerror(errno) : "out of memory");
        goto out;
    }
    watch_begin(&lg);
    bool started = lg.opt.procs > 1 ? procs_start(&lg, url)
                                    : workers_start(&lg, url, 0);
    if (started)
        supervise(&lg, &sigs);
    workers_join(&lg);
    /* The server's last sample, while every connection is still open: its
     * memory with all the clients, not what closing them costs. */
    if (started)
        watch_end(&lg);
    if (lg.opt.procs > 1)
        procs_reap(&lg, true); /* they close their connections now */
    if (!started) {
        fprintf(stderr, "loadgen: setup failed (%s)\n",
                errno ? strerror(errno) : "out of memory");
        goto out;
    }
    if (lg.kid_failed)
        goto out; /* procs_reap said which */
    stalls_check(&lg);
    if (!(lg.opt.procs > 1 ? procs_merge(&lg) : workers_merge(&lg)) ||
        !summarize(&lg, &s)) {
        fprintf(stderr, "loadgen: out of memory\n");
        goto out;
    }
    if (lg.opt.json) {
        print_json(&lg, &s);
    } else if (!lg.opt.print) {
        if (lg.opt.timeline)
            print_timeline(&lg);
        print_text(&lg, &s);
    }
    fflush(stdout);
    rc = lg.interrupted ? 130 : s.failed ? 1 : 0;
out:
    loadgen_free(&lg);
    curl_url_cleanup(url);
    curl_global_cleanup();
    if (stop_signal) {
        /* End by the signal itself, as a well-behaved program does after
         * handling SIGINT: a shell running us then knows the user wanted
         * everything to stop (and runs its own trap) instead of going on
         * with the next command. */
        signal(stop_signal, SIG_DFL);
        raise(stop_signal);
    }
    return rc;
}
