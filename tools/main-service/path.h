/* path: the main service's request target, read: which result
 * a path names and how long its client will wait for it. */
#ifndef TOOLS_MAIN_SERVICE_PATH_H
#define TOOLS_MAIN_SERVICE_PATH_H

#define RESULT_PATH "/api/exchange_result"

/* The "{id}" of a path RESULT_PATH/{id} (one segment, still
 * percent-encoded), or NULL. */
const char *result_id_in(const char *path);

/* Percent-decodes src into dst (at least strlen(src)+1 bytes); '+' stays
 * '+'. 0, or -1 on a bad escape or an encoded NUL. */
int percent_decode(const char *src, char *dst);

/* wait_ms from the query ("a=1&wait_ms=500"): 0 and *ms set (-1 when
 * absent), or -1 when present but not an integer 0..MS_MAX_WAIT_MS. */
int query_wait_ms(const char *query, int *ms);

#endif
