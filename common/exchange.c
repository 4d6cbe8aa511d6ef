/* exchange: request validation, subtotals and the JSON answers. See
 * exchange.h. Pure functions: no I/O, no globals, no waiting. */
#include "exchange.h"
#include "utf8.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Enough for "%.2f" of any finite double: DBL_MAX has 309 integer digits. */
#define MONEY_BUF 400

/* The largest integer a double holds exactly together with all smaller ones
 * (JavaScript's Number.MAX_SAFE_INTEGER). 2^53 itself is refused, because
 * "9007199254740993" parses to it too: beyond this, ids would change. */
#define MAX_SAFE_INTEGER 9007199254740991.0

#define MAX_COUNT 1e9

/* ---- validation --------------------------------------------------------- */

static int fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    if (err && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* A JSON number with no fraction within the exact range of a double. JSON
 * has one number type, so 5.0 counts as the integer 5. */
static bool json_integer(const cJSON *item, double min, double max,
                         long long *out)
{
    if (!cJSON_IsNumber(item))
        return false;
    double d = item->valuedouble;
    if (!isfinite(d) || d != floor(d) || d < min || d > max)
        return false;
    *out = (long long)d;
    return true;
}

static bool json_positive(const cJSON *item, double *out)
{
    if (!cJSON_IsNumber(item))
        return false;
    double d = item->valuedouble;
    if (!isfinite(d) || !(d > 0))
        return false;
    *out = d;
    return true;
}

/* True if bytes [from, len) are only JSON whitespace: cJSON on its own
 * accepts "{} trailing garbage", which no JSON parser should. */
static bool only_whitespace(const char *s, size_t from, size_t len)
{
    for (size_t i = from; i < len; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\n' && s[i] != '\r')
            return false;
    return true;
}

/* RFC 8259 8.1: JSON exchanged between systems is UTF-8. cJSON copies the
 * bytes of a string as they come, so without a check (common/utf8) a
 * request_id in Latin-1 or with stray bytes would be echoed into answers and
 * callbacks that no strict JSON reader accepts (found by
 * tests/fuzz/fuzz_exchange.c). */

/* cJSON recurses once per level of nesting and allows 1000 levels: a 2 KB
 * body of "[[[[..." costs it some 100 KiB of stack, which overflows a
 * coroutine's 64 KiB stack in 06 (found by tests/test_hostile.c; fuzz_exchange
 * now parses on a stack that small). A flat scan refuses deep bodies before
 * cJSON sees them, so the parse needs little stack in every model. */
static bool nesting_within(const char *s, size_t n, int max_depth)
{
    int depth = 0;
    bool in_string = false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (in_string) {
            if (c == '\\')
                i++; /* the escaped byte cannot end the string */
            else if (c == '"')
                in_string = false;
        } else if (c == '"') {
            in_string = true;
        } else if (c == '[' || c == '{') {
            if (++depth > max_depth)
                return false;
        } else if (c == ']' || c == '}') {
            depth--; /* unbalanced brackets: cJSON refuses them anyway */
        }
    }
    return true;
}

/* A key given twice ({"count": 1, "count": 2}) means the first to cJSON and
 * the last to Python: two readers of one body would disagree on what was
 * asked (a known JSON interoperability attack), so such a body is refused.
 * Only the keys this endpoint reads are checked. Returns the repeated key. */
static const char *duplicate_key(const cJSON *obj, const char *const *keys)
{
    for (const char *const *k = keys; *k; k++) {
        int seen = 0;
        for (const cJSON *it = obj->child; it; it = it->next)
            if (it->string && strcmp(it->string, *k) == 0 && ++seen > 1)
                return *k;
    }
    return NULL;
}

static int parse_bill(const cJSON *item, size_t i, struct exchange_bill *b,
                      char *err, size_t errlen)
{
    static const char *const keys[] = {"denomination_id", "denomination",
                                       "count", NULL};
    if (!cJSON_IsObject(item))
        return fail(err, errlen, "bills[%zu] must be an object", i);
    const char *dup = duplicate_key(item, keys);
    if (dup)
        return fail(err, errlen, "bills[%zu].%s is given more than once", i,
                    dup);
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(item, "denomination_id");
    if (!json_integer(id, -MAX_SAFE_INTEGER, MAX_SAFE_INTEGER,
                      &b->denomination_id))
        return fail(err, errlen, "bills[%zu].denomination_id must be an integer",
                    i);
    const cJSON *den = cJSON_GetObjectItemCaseSensitive(item, "denomination");
    if (!json_positive(den, &b->denomination))
        return fail(err, errlen,
                    "bills[%zu].denomination must be a positive number", i);
    const cJSON *count = cJSON_GetObjectItemCaseSensitive(item, "count");
    if (!json_integer(count, 0, MAX_COUNT, &b->count))
        return fail(err, errlen,
                    "bills[%zu].count must be a non-negative integer", i);
    return 0;
}

static int parse_bills(const cJSON *bills, struct exchange_request *out,
                       char *err, size_t errlen)
{
    if (!cJSON_IsArray(bills) || bills->child == NULL)
        return fail(err, errlen, "bills must be a non-empty array");
    size_t n = 0;
    for (const cJSON *it = bills->child; it; it = it->next)
        if (++n > EXCHANGE_MAX_BILLS)
            return fail(err, errlen, "bills must have at most %d items",
                        EXCHANGE_MAX_BILLS);
    n = 0;
    for (const cJSON *it = bills->child; it; it = it->next, n++)
        if (parse_bill(it, n, &out->bills[n], err, errlen) < 0)
            return -1;
    out->num_bills = n;
    return 0;
}

/* Each field is checked on its own above; this refuses the rare request
 * whose valid fields multiply past the largest double, because "inf" cannot
 * be written as a JSON number. */
static int check_results_finite(const struct exchange_request *req,
                                char *err, size_t errlen)
{
    double total = 0;
    for (size_t i = 0; i < req->num_bills; i++) {
        double s = exchange_subtotal(&req->bills[i], req->exchange_rate);
        if (!isfinite(s))
            return fail(err, errlen, "bills[%zu] subtotal is too large", i);
        total += s;
    }
    if (!isfinite(total))
        return fail(err, errlen, "total_rub is too large");
    return 0;
}

static int parse_fields(const cJSON *root, struct exchange_request *out,
                        char *err, size_t errlen)
{
    static const char *const keys[] = {"request_id", "exchange_rate", "bills",
                                       NULL};
    if (!cJSON_IsObject(root))
        return fail(err, errlen, "body must be a JSON object");
    const char *dup = duplicate_key(root, keys);
    if (dup)
        return fail(err, errlen, "%s is given more than once", dup);

    const cJSON *id = cJSON_GetObjectItemCaseSensitive(root, "request_id");
    size_t id_len = cJSON_IsString(id) && id->valuestring
                        ? strlen(id->valuestring) : 0;
    if (id_len == 0 || id_len > EXCHANGE_MAX_ID_LEN)
        return fail(err, errlen, "request_id must be a non-empty string of "
                                 "at most %d characters", EXCHANGE_MAX_ID_LEN);
    memcpy(out->request_id, id->valuestring, id_len + 1);

    const cJSON *rate = cJSON_GetObjectItemCaseSensitive(root, "exchange_rate");
    if (!json_positive(rate, &out->exchange_rate))
        return fail(err, errlen, "exchange_rate must be a positive number");

    const cJSON *bills = cJSON_GetObjectItemCaseSensitive(root, "bills");
    if (parse_bills(bills, out, err, errlen) < 0)
        return -1;
    return check_results_finite(out, err, errlen);
}

int exchange_parse_request(const char *json, size_t len,
                           struct exchange_request *out,
                           char *err, size_t errlen)
{
    if (err && errlen > 0)
        err[0] = '\0';
    out->request_id[0] = '\0';
    out->exchange_rate = 0;
    out->num_bills = 0;
    out->slot = -1;
    if (json == NULL || len == 0)
        return fail(err, errlen, "body is not valid JSON");
    if (!utf8_valid((const unsigned char *)json, len))
        return fail(err, errlen, "body is not valid UTF-8");
    if (!nesting_within(json, len, EXCHANGE_MAX_DEPTH))
        return fail(err, errlen, "body nests deeper than %d levels",
                    EXCHANGE_MAX_DEPTH);

    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, len, &end, false);
    if (root == NULL || end == NULL || end < json ||
        !only_whitespace(json, (size_t)(end - json), len)) {
        cJSON_Delete(root);
        return fail(err, errlen, "body is not valid JSON");
    }
    int rc = parse_fields(root, out, err, errlen);
    cJSON_Delete(root);
    if (rc < 0)
        out->num_bills = 0;
    return rc;
}

/* ---- numbers ------------------------------------------------------------ */

/* The whole cents "%.2f" rounds v to: v's exact binary value rounded to
 * the nearest cent, ties to even (printf's rounding, and Python's round).
 * printf gets there through big-number arithmetic, a third of a sync
 * request's user time; this does it in a few float operations. fma gives
 * the rounding error of v * 100 exactly (v * 100 == p + e), and below 2^52
 * p lies at a multiple of ulp(p) <= 0.5 from its nearest integer, so e can
 * only decide a tie. Outside that range (and for negatives, whose "-0.00"
 * printf spells with its sign) it says no and the caller asks printf. */
static bool cents_of(double v, long long *cents)
{
    if (v == 0 && !signbit(v)) {
        *cents = 0;
        return true;
    }
    if (!(v >= 1e-200 && v < 1e13)) /* NaN and negatives fail here too */
        return false;
    double p = v * 100.0;
    double e = fma(v, 100.0, -p);
    double n = nearbyint(p); /* ties to even, like printf */
    double d = p - n;        /* exact: both within 2^52 */
    if (d == 0.5 && e > 0)
        n += 1;
    else if (d == -0.5 && e < 0)
        n -= 1;
    *cents = (long long)n;
    return true;
}

/* The value "%.2f" prints, read back: Python's round(x, 2) gives the same,
 * both being correctly rounded from the double's exact decimal value. The
 * quotient of two exact numbers is rounded once, as strtod rounds. */
static double round_cents(double v)
{
    long long c;
    if (cents_of(v, &c))
        return (double)c / 100.0;
    char buf[MONEY_BUF];
    snprintf(buf, sizeof buf, "%.2f", v);
    return strtod(buf, NULL);
}

double exchange_subtotal(const struct exchange_bill *bill, double rate)
{
    double v = bill->denomination * (double)bill->count * rate;
    return round_cents(v);
}

void exchange_format_money(double value, char *out, size_t outlen)
{
    if (out == NULL || outlen == 0)
        return;
    char buf[MONEY_BUF];
    long long c;
    int n;
    if (!isfinite(value)) {
        /* Never produced for a validated request; keeps the JSON valid. */
        snprintf(out, outlen, "null");
        return;
    }
    if (cents_of(value, &c)) { /* "%lld.%02lld" by hand: below 1e15 */
        char *p = buf + 32;
        *--p = (char)('0' + c % 10);
        *--p = (char)('0' + c / 10 % 10);
        *--p = '.';
        long long whole = c / 100;
        do
            *--p = (char)('0' + whole % 10);
        while (whole /= 10);
        n = (int)(buf + 32 - p);
        memmove(buf, p, (size_t)n);
        buf[n] = '\0';
    } else {
        n = snprintf(buf, sizeof buf, "%.2f", value);
        if (n < 0)
            n = 0, buf[0] = '\0';
    }
    /* "%.2f" always has a point and two decimals: drop trailing zeros but
     * keep one digit after the point, as Python's repr does. */
    while (n >= 2 && buf[n - 1] == '0' && buf[n - 2] != '.')
        buf[--n] = '\0';
    size_t len = (size_t)n < outlen ? (size_t)n : outlen - 1;
    memcpy(out, buf, len); /* cut short, as snprintf would */
    out[len] = '\0';
}

/* ---- JSON out ----------------------------------------------------------- */

/* The answers are written straight into one buffer, byte for byte what
 * cJSON_PrintUnformatted made of a tree of them (tests/test_exchange.c
 * compares the two): building and printing a tree was a malloc per node
 * and most of a sync request's rendering time. */
struct jbuf {
    char *p;
    size_t len, cap;
    bool bad; /* out of memory: the answer is NULL */
};

static void jb_put(struct jbuf *b, const char *s, size_t n)
{
    if (b->bad)
        return;
    if (b->cap - b->len <= n) { /* room for the NUL too */
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->len <= n)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (p == NULL) {
            b->bad = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void jb_lit(struct jbuf *b, const char *s) { jb_put(b, s, strlen(s)); }

/* A JSON string as cJSON prints it: '"' and '\\' and the C0 controls
 * escaped (\b \f \n \r \t by name, the rest as \u00XX), every other
 * byte as it is. */
static void jb_str(struct jbuf *b, const char *s)
{
    jb_put(b, "\"", 1);
    const char *run = s;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c >= 32 && c != '"' && c != '\\')
            continue;
        jb_put(b, run, (size_t)(s - run));
        run = s + 1;
        char esc[8];
        const char *named = c == '"' ? "\\\"" : c == '\\' ? "\\\\"
                            : c == '\b' ? "\\b" : c == '\f' ? "\\f"
                            : c == '\n' ? "\\n" : c == '\r' ? "\\r"
                            : c == '\t' ? "\\t" : NULL;
        if (named == NULL) {
            snprintf(esc, sizeof esc, "\\u%04x", c);
            named = esc;
        }
        jb_lit(b, named);
    }
    jb_put(b, run, (size_t)(s - run));
    jb_put(b, "\"", 1);
}

/* "key": as the first member (open is "{") or a later one (","). */
static void jb_key(struct jbuf *b, const char *open, const char *key)
{
    jb_lit(b, open);
    jb_str(b, key);
    jb_put(b, ":", 1);
}

static void jb_money(struct jbuf *b, double value)
{
    char buf[MONEY_BUF];
    exchange_format_money(value, buf, sizeof buf);
    jb_lit(b, buf);
}

/* The buffer as the caller's string; NULL when memory ran out. */
static char *jb_done(struct jbuf *b)
{
    if (b->bad || b->p == NULL) {
        free(b->p);
        return NULL;
    }
    return b->p;
}

static void add_breakdown(struct jbuf *b, const struct exchange_request *req,
                          const double *subtotals)
{
    jb_key(b, ",", "breakdown");
    jb_put(b, "[", 1);
    for (size_t i = 0; i < req->num_bills; i++) {
        char id[32];
        jb_lit(b, i ? ",{\"denomination_id\":" : "{\"denomination_id\":");
        snprintf(id, sizeof id, "%lld", req->bills[i].denomination_id);
        jb_lit(b, id);
        jb_lit(b, ",\"subtotal_rub\":");
        jb_money(b, subtotals[i]);
        jb_put(b, "}", 1);
    }
    jb_put(b, "]", 1);
}

char *exchange_sync_response(const struct exchange_request *req,
                             const double *subtotals)
{
    double total = 0;
    for (size_t i = 0; i < req->num_bills; i++)
        total += subtotals[i];
    total = round_cents(total);

    struct jbuf b = {0};
    jb_lit(&b, "{\"status\":\"completed\"");
    jb_key(&b, ",", "request_id");
    jb_str(&b, req->request_id);
    add_breakdown(&b, req, subtotals);
    jb_key(&b, ",", "total_rub");
    jb_money(&b, total);
    jb_put(&b, "}", 1);
    return jb_done(&b);
}

char *exchange_callback_body(const char *token,
                             const struct exchange_request *req,
                             const double *subtotals)
{
    struct jbuf b = {0};
    jb_key(&b, "{", "token");
    jb_str(&b, token ? token : "");
    jb_key(&b, ",", "request_id");
    jb_str(&b, req->request_id);
    add_breakdown(&b, req, subtotals);
    jb_put(&b, "}", 1);
    return jb_done(&b);
}

/* A double in the fewest significant digits (15 to 17) that read back
 * to it exactly: "2", "1.1", "0.30000000000000004". 17 always do. */
static void jb_exact(struct jbuf *b, double v)
{
    char buf[32];
    for (int digits = 15; digits <= 17; digits++) {
        snprintf(buf, sizeof buf, "%.*g", digits, v);
        if (strtod(buf, NULL) == v)
            break;
    }
    jb_lit(b, buf);
}

char *exchange_request_body(const struct exchange_request *req)
{
    struct jbuf b = {0};
    jb_key(&b, "{", "request_id");
    jb_str(&b, req->request_id);
    jb_key(&b, ",", "exchange_rate");
    jb_exact(&b, req->exchange_rate);
    jb_key(&b, ",", "bills");
    for (size_t i = 0; i < req->num_bills; i++) {
        const struct exchange_bill *bill = &req->bills[i];
        char num[32];
        jb_lit(&b, i ? ",{\"denomination_id\":" : "[{\"denomination_id\":");
        snprintf(num, sizeof num, "%lld", bill->denomination_id);
        jb_lit(&b, num);
        jb_lit(&b, ",\"denomination\":");
        jb_exact(&b, bill->denomination);
        jb_lit(&b, ",\"count\":");
        snprintf(num, sizeof num, "%lld", bill->count);
        jb_lit(&b, num);
        jb_put(&b, "}", 1);
    }
    jb_lit(&b, req->num_bills ? "]}" : "[]}");
    return jb_done(&b);
}

char *exchange_error_body(const char *detail)
{
    return exchange_json_object("detail", detail ? detail : "", (char *)NULL);
}

char *exchange_json_object(const char *key, ...)
{
    struct jbuf b = {0};
    va_list ap;
    va_start(ap, key);
    for (const char *k = key; k; k = va_arg(ap, const char *)) {
        const char *v = va_arg(ap, const char *);
        jb_key(&b, k == key ? "{" : ",", k);
        if (v)
            jb_str(&b, v);
        else
            jb_lit(&b, "null");
    }
    va_end(ap);
    jb_put(&b, key ? "}" : "{}", key ? 1 : 2);
    return jb_done(&b);
}
