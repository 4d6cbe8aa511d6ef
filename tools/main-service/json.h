/* json: a callback body as text, for the main service.
 *
 * cJSON validates a PUT's body; these walk the same (valid) text to recover
 * the raw spelling of its members, so a stored result keeps its numbers as
 * they were sent (3775.0 stays 3775.0; re-printing through cJSON would make
 * it 3775). They follow cJSON's own rules: any byte <= 32 is whitespace,
 * a backslash in a string escapes the next byte. */
#ifndef TOOLS_MAIN_SERVICE_JSON_H
#define TOOLS_MAIN_SERVICE_JSON_H

#include <cJSON.h>
#include <stdbool.h>
#include <stddef.h>

/* How deeply [ and { nest, outside strings: checked before cJSON recurses
 * on a connection thread's small stack. */
int json_depth(const char *s, size_t len);

/* The first byte of [s, end) that is not whitespace, or end. */
const char *json_skip_ws(const char *s, const char *end);

/* Which member of root (parsed from [body, body+len)) would not go out as
 * valid JSON if written back as received: "request_id" or "breakdown" when
 * its raw text holds invalid UTF-8 (strict: utf8.h) or a raw control byte
 * inside a string (RFC 8259 allows neither); NULL when both are clean.
 * Escaped controls ("\u0007") are fine. */
const char *json_unclean_member(const char *body, size_t len,
                                const cJSON *root);

/* The result as stored: {"request_id":<raw>,"breakdown":<raw>}, the raw
 * text of those two members of root (parsed from [body, body+len)) with
 * whitespace outside strings removed. malloc'd; NULL on ENOMEM (*nomem
 * set) or, should cJSON have accepted text this scanner does not follow,
 * NULL with *nomem false: never store what we cannot vouch for. */
char *json_stored_result(const char *body, size_t len, const cJSON *root,
                         bool *nomem);

#endif
