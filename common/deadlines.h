/* deadlines: the three deadlines of reading one request, which no byte
 * moves. Every server reads requests under them: conn_io (01-03, 06 and
 * the main service) and evconn (04, 05).
 *
 *   phase                    begins                    its deadline
 *   idle: no byte yet        the wait for a request    --idle-timeout-ms later
 *   head                     its first byte (a CR or   --header-timeout-ms
 *                            LF counts: empty lines    later
 *                            are no way to stay idle)
 *   body                     the head's end            --body-timeout-ms later
 *
 * Each deadline is fixed once, when its phase begins (timer.h: deadlines
 * that never move), so a request takes at most idle + header + body
 * timeouts however its bytes are spread out: a client that trickles a
 * byte at a time (slowloris) gains nothing. Past the idle deadline a
 * connection is closed without a word; past the head's or the body's, the
 * client gets 408. */
#ifndef COMMON_DEADLINES_H
#define COMMON_DEADLINES_H

#include <stdint.h>

#include "http.h"

struct deadlines {
    uint64_t idle; /* fixed by deadlines_start */
    uint64_t head; /* 0 until the request's first byte */
    uint64_t body; /* 0 until its head is complete */
};

/* A new wait for a request begins (a new connection, or the last answer
 * was written): the idle deadline is idle_ms from now; the head and body
 * have not begun. */
void deadlines_start(struct deadlines *d, int idle_ms);

/* Fixes the deadline of each phase that p shows has begun and d has not
 * seen yet: the head's at p's first byte, the body's at the head's end.
 * Call it after every parse. Returns the deadline in force
 * (deadlines_due). */
uint64_t deadlines_update(struct deadlines *d, const struct http_parser *p,
                          int header_ms, int body_ms);

/* The deadline of the latest phase begun: the body's, else the head's,
 * else the idle one. */
uint64_t deadlines_due(const struct deadlines *d);

#endif
