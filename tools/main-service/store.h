/* store: the main service's results, kept in memory.
 *
 * A hash table by request_id plus a list in insertion order, capped by
 * count and by bytes: past either cap the oldest results are evicted first
 * (and logged).
 *
 * The request_id is an idempotency key. A sender that retries (a lost
 * answer, a restart that replays its outbox) may PUT the same result
 * twice: the second PUT finds the same id with the same result and
 * changes nothing (STORE_REPEAT: the sender is told "ok" again, so it
 * stops). A different result under an id already stored is a conflict
 * (STORE_CONFLICT, a 409): the first stays. So at-least-once delivery plus
 * the key gives exactly one stored result per id, for as long as the
 * result is kept (an evicted id is a new one).
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

enum store_put {
    STORE_NEW,      /* stored, its waiters woken */
    STORE_REPEAT,   /* the same result was stored already: nothing done */
    STORE_CONFLICT, /* another result is stored under id: nothing done */
    STORE_PUT_NOMEM,
};

/* Stores id's result (json, the normalised text of json.h, so the same
 * result is the same bytes) unless id is stored already (the key above),
 * and wakes its waiters. Takes ownership of json (freed unless stored). */
enum store_put store_put(const char *id, char *json);

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
