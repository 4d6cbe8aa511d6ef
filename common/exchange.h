/* exchange: the business logic of the endpoint, and nothing else. JSON in
 * (cJSON), a validated plain struct, subtotals, JSON out (written directly,
 * the bytes cJSON's printer would give). No I/O, no waiting,
 * no globals: every stage calls the same functions and differs only in how
 * it waits between them.
 *
 * A request body looks like the lecture's:
 *   {"request_id": "sync_test", "exchange_rate": 75.5,
 *    "bills": [{"denomination_id": 1, "denomination": 10.0, "count": 5}]}
 * Numbers in responses are printed as Python prints round(x, 2): 3775.0,
 * 377.5, 2.67 (never 3775 or 377.50), so answers match the FastAPI service. */
#ifndef COMMON_EXCHANGE_H
#define COMMON_EXCHANGE_H

#include <stddef.h>

#define EXCHANGE_MAX_BILLS 100
#define EXCHANGE_MAX_ID_LEN 128 /* bytes of request_id */
/* Levels of [ and { a body may nest. A request needs 3; the limit keeps
 * the recursive JSON parser within a small stack (06's coroutines). */
#define EXCHANGE_MAX_DEPTH 32

struct exchange_bill {
    long long denomination_id; /* an integer (JSON number with no fraction) */
    double denomination;       /* > 0 and finite */
    long long count;           /* >= 0 */
};

struct exchange_request {
    char request_id[EXCHANGE_MAX_ID_LEN + 1];
    double exchange_rate;      /* > 0 and finite */
    size_t num_bills;          /* 1 .. EXCHANGE_MAX_BILLS */
    struct exchange_bill bills[EXCHANGE_MAX_BILLS];
    /* Not from the JSON: once the job's ok is promised, its slot in the
     * async budget (jobcap_take sets it, jobcap.h); -1 before. */
    int slot;
};

/* Parses and validates a request body. 0 on success; -1 with a detail that
 * names the bad field written to err, e.g.
 * "bills[1].count must be a non-negative integer". The body must be strict
 * UTF-8 ("body is not valid UTF-8"), nest at most EXCHANGE_MAX_DEPTH levels
 * ("body nests deeper than 32 levels"), and not give a field this endpoint
 * reads twice ("bills[0].count is given more than once"): readers disagree
 * on which of two values counts. */
int exchange_parse_request(const char *json, size_t len,
                           struct exchange_request *out,
                           char *err, size_t errlen);

/* denomination * count * rate, multiplied left to right in doubles as the
 * lecture's Python does, then rounded to the value "%.2f" prints:
 * 2.675 -> 2.67 because the double nearest 2.675 is just below it. */
double exchange_subtotal(const struct exchange_bill *bill, double rate);

/* The sync route's answer: {"status":"completed","request_id":..,
 * "breakdown":[{"denomination_id":1,"subtotal_rub":3775.0},..],
 * "total_rub":8305.0}. subtotals[i] belongs to bills[i]. malloc'd. */
char *exchange_sync_response(const struct exchange_request *req,
                             const double *subtotals);

/* The callback PUT body: {"token":..,"request_id":..,"breakdown":[..]}.
 * malloc'd. */
char *exchange_callback_body(const char *token,
                             const struct exchange_request *req,
                             const double *subtotals);

/* The request as a body again, {"request_id":..,"exchange_rate":..,
 * "bills":[..]}, that exchange_parse_request reads back to the same
 * struct: numbers are written with 17 significant digits, enough for any
 * double to come back unchanged. For the outbox (outbox.h). malloc'd. */
char *exchange_request_body(const struct exchange_request *req);

/* FastAPI's error shape, {"detail":"..."}. malloc'd. */
char *exchange_error_body(const char *detail);

/* Any small JSON object of string fields, e.g. {"status":"ok"}:
 * pass key, value pairs ending with NULL. malloc'd. */
char *exchange_json_object(const char *key, ...) __attribute__((sentinel));

/* Formats a money value as the responses do ("3775.0", "2.67") into out. */
void exchange_format_money(double value, char *out, size_t outlen);

#endif
