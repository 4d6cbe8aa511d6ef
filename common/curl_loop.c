/* curl_loop: see curl_loop.h. Four small functions, two for each
 * direction: curl -> loop (on_socket_change, on_timer_change, called from
 * inside curl, so they only talk to the loop) and loop -> curl (on_ready,
 * on_timeout, called by the loop, so they may call curl). */
#include "curl_loop.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

struct curl_loop {
    struct loop *loop;
    CURLM *multi;
    struct loop_timer timer; /* when curl asked to be woken */
    curl_loop_ran_fn ran;
    void *arg;
};

/* curl ran: say so when it complains, then let the user collect. */
static void curl_loop_after(struct curl_loop *cl, CURLMcode rc)
{
    if (rc != CURLM_OK)
        log_warn("curl_multi_socket_action: %s", curl_multi_strerror(rc));
    cl->ran(cl, cl->arg);
}

/* I/O callback: one of curl's sockets is ready. Tell curl which. */
static void on_ready(struct loop *l, int fd, unsigned events, void *arg)
{
    (void)l;
    struct curl_loop *cl = arg;
    int flags = ((events & LOOP_READABLE) ? CURL_CSELECT_IN : 0) |
                ((events & LOOP_WRITABLE) ? CURL_CSELECT_OUT : 0) |
                ((events & LOOP_ERROR) ? CURL_CSELECT_ERR : 0);
    int running;
    curl_loop_after(cl, curl_multi_socket_action(cl->multi, fd, flags,
                                                 &running));
}

/* Timer callback: the moment curl asked to be woken has come. */
static void on_timeout(struct loop *l, void *arg)
{
    (void)l;
    struct curl_loop *cl = arg;
    int running;
    curl_loop_after(cl, curl_multi_socket_action(cl->multi,
                                                 CURL_SOCKET_TIMEOUT, 0,
                                                 &running));
}

/* CURLMOPT_SOCKETFUNCTION: what to watch on one of curl's sockets. */
static int on_socket_change(CURL *easy, curl_socket_t s, int what,
                            void *userp, void *socketp)
{
    (void)easy;
    (void)socketp;
    struct curl_loop *cl = userp;
    if (what == CURL_POLL_REMOVE) {
        loop_unwatch(cl->loop, s); /* curl closes it next */
        return 0;
    }
    unsigned events = ((what & CURL_POLL_IN) ? LOOP_READABLE : 0) |
                      ((what & CURL_POLL_OUT) ? LOOP_WRITABLE : 0);
    if (loop_watch(cl->loop, s, events, on_ready, cl) < 0) {
        log_warn("cannot watch curl's socket %d: %s", (int)s,
                 strerror(errno));
        return -1; /* curl fails that transfer; its owner decides */
    }
    return 0;
}

/* CURLMOPT_TIMERFUNCTION: when to wake curl. -1 means never mind; 0 means
 * as soon as possible, which must still go through the loop (curl forbids
 * calling it back from inside this function). */
static int on_timer_change(CURLM *m, long timeout_ms, void *userp)
{
    (void)m;
    struct curl_loop *cl = userp;
    if (timeout_ms < 0) {
        loop_timer_cancel(cl->loop, &cl->timer);
        return 0;
    }
    return loop_timer_arm(cl->loop, &cl->timer, (uint64_t)timeout_ms) < 0
               ? -1
               : 0;
}

struct curl_loop *curl_loop_new(struct loop *loop, curl_loop_ran_fn ran,
                                void *arg)
{
    struct curl_loop *cl = calloc(1, sizeof *cl);
    if (cl == NULL)
        return NULL;
    *cl = (struct curl_loop){.loop = loop, .ran = ran, .arg = arg};
    loop_timer_init(&cl->timer, on_timeout, cl);
    cl->multi = curl_multi_init();
    if (cl->multi == NULL ||
        curl_multi_setopt(cl->multi, CURLMOPT_SOCKETFUNCTION,
                          on_socket_change) != CURLM_OK ||
        curl_multi_setopt(cl->multi, CURLMOPT_SOCKETDATA, cl) != CURLM_OK ||
        curl_multi_setopt(cl->multi, CURLMOPT_TIMERFUNCTION,
                          on_timer_change) != CURLM_OK ||
        curl_multi_setopt(cl->multi, CURLMOPT_TIMERDATA, cl) != CURLM_OK) {
        curl_loop_free(cl);
        errno = ENOMEM;
        return NULL;
    }
    return cl;
}

CURLM *curl_loop_multi(const struct curl_loop *cl)
{
    return cl->multi;
}

void curl_loop_free(struct curl_loop *cl)
{
    if (cl == NULL)
        return;
    if (cl->multi != NULL)
        curl_multi_cleanup(cl->multi); /* may still call on_socket_change */
    loop_timer_cancel(cl->loop, &cl->timer);
    free(cl);
}
