/* store: the main service's results, kept in memory.
 *
 * A hash table by request_id plus a list in insertion order, capped by
 * count and by bytes: past either cap the oldest results are evicted first
 * (and logged). A second PUT for the same id replaces the result (and
 * makes it the newest).
 *
 * Long polls wait here. One mutex guards the store, and a stored result
 * broadcasts a condition variable so the waiters on it wake, look for their
 * ids and go back to sleep if theirs is not there yet. With a single
 * condition every result would wake every waiter (measured on 2 cores: with
 * 1000 waiters, 1000 PUTs took 5.6 s instead of 0.3 s), so there are 256
 * conditions picked by the id's hash: a result wakes about 1/256 of the
 * waiters (the same run: 0.4 s). Thread-safe throughout. */
#ifndef TOOLS_MAIN_SERVICE_STORE_H
#define TOOLS_MAIN_SERVICE_STORE_H

#include <stdbool.h>
#include <stddef.h>

/* Sets the caps (results; bytes of ids, results and bookkeeping) and makes
 * the condition variables (CLOCK_MONOTONIC). Call once before any thread
 * starts. 0, or -1 (said on stderr). */
int store_init(size_t max_results, size_t max_bytes);

/* Stores (or replaces) id's result and wakes its waiters. Takes ownership
 * of json. 0, or -1 on ENOMEM (json freed). */
int store_put(const char *id, char *json);

/* How many results are stored. */
size_t store_count(void);

/* The stored ids, oldest first, as a JSON array (malloc'd), or NULL on
 * ENOMEM. */
char *store_list_json(void);

enum store_wait {
    STORE_FOUND,    /* *json is a malloc'd copy of the result */
    STORE_TIMEOUT,  /* wait_ms passed without it */
    STORE_STOPPING, /* store_stop() was called */
    STORE_GONE,     /* gone(arg) said the client left */
    STORE_NOMEM
};

/* Waits up to wait_ms for id's result (0 just looks). Sleeps on the id's
 * condition variable, and wakes at least every second to ask gone(arg)
 * whether anyone still wants the answer, so abandoned waiters do not pile
 * up for minutes. */
enum store_wait store_wait(const char *id, int wait_ms, char **json,
                           bool (*gone)(void *arg), void *arg);

/* Wakes every waiter for good: they return STORE_STOPPING. */
void store_stop(void);

#endif
