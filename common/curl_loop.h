/* curl_loop: libcurl's multi *socket* API on common/loop.
 *
 * With the socket API the application owns the waiting. curl says which of
 * its sockets it wants watched and for what (CURLMOPT_SOCKETFUNCTION), and
 * when it wants to be called anyway (CURLMOPT_TIMERFUNCTION); this module
 * turns the first into loop_watch/loop_unwatch and the second into a loop
 * timer, and when either fires it tells curl what happened
 * (curl_multi_socket_action). So HTTP transfers wait in the same epoll and
 * timer heap as everything else, and one thread can run thousands of them
 * beside its own sockets.
 *
 * What a user adds: easy handles (curl_multi_add_handle on
 * curl_loop_multi), and a `ran` function, called after every time curl ran,
 * that reads curl_multi_info_read for the transfers that finished. 05 hands
 * them to its job steps; 06 wakes the coroutine that awaits each one.
 *
 * One thread, like the loop. */
#ifndef CURL_LOOP_H
#define CURL_LOOP_H

#include <curl/curl.h>

#include "loop.h"

struct curl_loop;

/* Called after curl ran (a socket was ready or curl's timer fired): the
 * moment to collect finished transfers with curl_multi_info_read. */
typedef void (*curl_loop_ran_fn)(struct curl_loop *cl, void *arg);

/* A multi handle driven by loop, or NULL (out of memory, or libcurl
 * refused the callbacks). */
struct curl_loop *curl_loop_new(struct loop *loop, curl_loop_ran_fn ran,
                                void *arg);

/* The multi handle: add and remove easy handles on it as usual. */
CURLM *curl_loop_multi(const struct curl_loop *cl);

/* curl_multi_cleanup (which may still unwatch curl's sockets: call it
 * while the loop exists), then disarms curl's timer and frees cl. Remove
 * the easy handles first. NULL is fine. */
void curl_loop_free(struct curl_loop *cl);

#endif
