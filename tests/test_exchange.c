/* Unit tests for common/exchange, common/endpoint and common/callback.
 * No server is started; the callback tests talk to the harness's scripted
 * fake main service, a thread of this process on 127.0.0.1. */
#include "callback.h"
#include "endpoint.h"
#include "exchange.h"
#include "log.h"
#include "timer.h"

#include <check.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"

#define LECTURE_BODY                                                        \
    "{\"request_id\": \"sync_test\", \"exchange_rate\": 75.5, \"bills\": ["  \
    "{\"denomination_id\": 1, \"denomination\": 10.0, \"count\": 5}, "       \
    "{\"denomination_id\": 2, \"denomination\": 20.0, \"count\": 3}]}"

#define E_JSON "body is not valid JSON"
#define E_OBJECT "body must be a JSON object"
#define E_ID "request_id must be a non-empty string of at most 128 characters"
#define E_RATE "exchange_rate must be a positive number"
#define E_BILLS "bills must be a non-empty array"
#define E_MANY "bills must have at most 100 items"
#define E_UTF8 "body is not valid UTF-8"
#define E_DEEP "body nests deeper than 32 levels"

/* ---- helpers ------------------------------------------------------------ */

static int parse(const char *body, struct exchange_request *req, char *err,
                 size_t errlen)
{
    return exchange_parse_request(body, strlen(body), req, err, errlen);
}

/* Parses body, which must be valid, and computes every subtotal. */
static void parse_ok(const char *body, struct exchange_request *req,
                     double *subtotals)
{
    char err[256] = "";
    int rc = parse(body, req, err, sizeof err);
    ck_assert_msg(rc == 0, "rejected %s: %s", body, err);
    for (size_t i = 0; i < req->num_bills; i++)
        subtotals[i] = exchange_subtotal(&req->bills[i], req->exchange_rate);
}

static void expect_sync(const char *body, const char *expected)
{
    struct exchange_request req;
    double sub[EXCHANGE_MAX_BILLS];
    parse_ok(body, &req, sub);
    char *out = exchange_sync_response(&req, sub);
    ck_assert_ptr_nonnull(out);
    ck_assert_str_eq(out, expected);
    free(out);
}

static void expect_error(const char *body, const char *detail)
{
    struct exchange_request req;
    char err[256] = "";
    int rc = parse(body, &req, err, sizeof err);
    ck_assert_msg(rc == -1, "accepted %s", body);
    ck_assert_msg(strcmp(err, detail) == 0, "body %s\n  got  \"%s\"\n  want \"%s\"",
                  body, err, detail);
}

static double subtotal_of(double denomination, long long count, double rate)
{
    struct exchange_bill b = { 1, denomination, count };
    return exchange_subtotal(&b, rate);
}

static const char *money(double v)
{
    static char buf[512];
    exchange_format_money(v, buf, sizeof buf);
    return buf;
}

/* ---- the lecture's example ---------------------------------------------- */

START_TEST(test_lecture_sync)
{
    expect_sync(LECTURE_BODY,
                "{\"status\":\"completed\",\"request_id\":\"sync_test\","
                "\"breakdown\":[{\"denomination_id\":1,\"subtotal_rub\":3775.0},"
                "{\"denomination_id\":2,\"subtotal_rub\":4530.0}],"
                "\"total_rub\":8305.0}");
}
END_TEST

START_TEST(test_lecture_notes_numbers)
{
    /* The lecture's notes print these, from denominations ten times smaller. */
    expect_sync("{\"request_id\":\"async_test\",\"exchange_rate\":75.5,\"bills\":["
                "{\"denomination_id\":1,\"denomination\":1.0,\"count\":5},"
                "{\"denomination_id\":2,\"denomination\":2.0,\"count\":3}]}",
                "{\"status\":\"completed\",\"request_id\":\"async_test\","
                "\"breakdown\":[{\"denomination_id\":1,\"subtotal_rub\":377.5},"
                "{\"denomination_id\":2,\"subtotal_rub\":453.0}],"
                "\"total_rub\":830.5}");
}
END_TEST

START_TEST(test_lecture_callback_body)
{
    struct exchange_request req;
    double sub[EXCHANGE_MAX_BILLS];
    parse_ok(LECTURE_BODY, &req, sub);
    char *out = exchange_callback_body("MY_SECRET_TOKEN", &req, sub);
    ck_assert_ptr_nonnull(out);
    ck_assert_str_eq(out,
                     "{\"token\":\"MY_SECRET_TOKEN\",\"request_id\":\"sync_test\","
                     "\"breakdown\":[{\"denomination_id\":1,\"subtotal_rub\":3775.0},"
                     "{\"denomination_id\":2,\"subtotal_rub\":4530.0}]}");
    free(out);
}
END_TEST

START_TEST(test_parse_fields)
{
    struct exchange_request req;
    double sub[EXCHANGE_MAX_BILLS];
    parse_ok(LECTURE_BODY, &req, sub);
    ck_assert_str_eq(req.request_id, "sync_test");
    ck_assert(req.exchange_rate == 75.5);
    ck_assert_uint_eq(req.num_bills, 2);
    ck_assert_int_eq(req.bills[0].denomination_id, 1);
    ck_assert(req.bills[0].denomination == 10.0);
    ck_assert_int_eq(req.bills[0].count, 5);
    ck_assert_int_eq(req.bills[1].denomination_id, 2);
    ck_assert(req.bills[1].denomination == 20.0);
    ck_assert_int_eq(req.bills[1].count, 3);
    ck_assert(sub[0] == 3775.0 && sub[1] == 4530.0);
}
END_TEST

/* ---- invalid bodies ----------------------------------------------------- */

struct bad_top {
    const char *body, *detail;
};

static const struct bad_top bad_tops[] = {
    { "not json", E_JSON },
    { "", E_JSON },
    { "{", E_JSON },
    { "{\"request_id\":\"r\"} trailing", E_JSON },
    { "{\"request_id\":\"r\"}{}", E_JSON },
    { "[1,2]", E_OBJECT },
    { "\"text\"", E_OBJECT },
    { "null", E_OBJECT },
    { "42", E_OBJECT },
    { "{\"exchange_rate\":1,\"bills\":[]}", E_ID },
    { "{\"request_id\":5,\"exchange_rate\":1}", E_ID },
    { "{\"request_id\":\"\",\"exchange_rate\":1}", E_ID },
    { "{\"request_id\":null,\"exchange_rate\":1}", E_ID },
    { "{\"request_id\":true,\"exchange_rate\":1}", E_ID },
    { "{\"request_id\":[\"r\"],\"exchange_rate\":1}", E_ID },
    { "{\"request_id\":\"r\"}", E_RATE },
    { "{\"request_id\":\"r\",\"exchange_rate\":\"75.5\"}", E_RATE },
    { "{\"request_id\":\"r\",\"exchange_rate\":0}", E_RATE },
    { "{\"request_id\":\"r\",\"exchange_rate\":-1.5}", E_RATE },
    { "{\"request_id\":\"r\",\"exchange_rate\":true}", E_RATE },
    { "{\"request_id\":\"r\",\"exchange_rate\":null}", E_RATE },
    { "{\"request_id\":\"r\",\"exchange_rate\":1e999}", E_RATE },
    { "{\"request_id\":\"r\",\"exchange_rate\":-1e999}", E_RATE },
    { "{\"request_id\":\"r\",\"exchange_rate\":2}", E_BILLS },
    { "{\"request_id\":\"r\",\"exchange_rate\":2,\"bills\":[]}", E_BILLS },
    { "{\"request_id\":\"r\",\"exchange_rate\":2,\"bills\":{}}", E_BILLS },
    { "{\"request_id\":\"r\",\"exchange_rate\":2,\"bills\":\"x\"}", E_BILLS },
    { "{\"request_id\":\"r\",\"exchange_rate\":2,\"bills\":null}", E_BILLS },
    { "{\"request_id\":\"r\",\"exchange_rate\":2,\"bills\":"
      "{\"denomination_id\":1,\"denomination\":1,\"count\":1}}", E_BILLS },
    /* Checked on the raw bytes, before cJSON sees them: each of these is
     * a different way to be not UTF-8, and each has its own check. */
    { "{\"request_id\":\"caf\xe9\"}", E_UTF8 },             /* Latin-1 */
    { "{\"request_id\":\"\xc0\xaf\"}", E_UTF8 },            /* overlong / */
    { "{\"request_id\":\"\xe0\x80\xaf\"}", E_UTF8 },        /* ...in 3 */
    { "{\"request_id\":\"\xf0\x80\x80\xaf\"}", E_UTF8 },    /* ...in 4 */
    { "{\"request_id\":\"\xed\xa0\x80\"}", E_UTF8 },        /* U+D800 */
    { "{\"request_id\":\"\xf4\x90\x80\x80\"}", E_UTF8 },    /* > U+10FFFF */
    { "{\"request_id\":\"\xe2\x82\"}", E_UTF8 },            /* cut short */
    /* 33 levels: one past EXCHANGE_MAX_DEPTH, far below cJSON's own. */
    { "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
      E_DEEP },
};

START_TEST(test_bad_top)
{
    expect_error(bad_tops[_i].body, bad_tops[_i].detail);
}
END_TEST

/* A bill that is wrong in one field; "%zu" in detail is the bill's index. */
struct bad_bill {
    const char *bill, *detail;
};

#define D_ID "bills[%zu].denomination_id must be an integer"
#define D_DEN "bills[%zu].denomination must be a positive number"
#define D_COUNT "bills[%zu].count must be a non-negative integer"
#define D_OBJ "bills[%zu] must be an object"

static const struct bad_bill bad_bills[] = {
    { "5", D_OBJ },
    { "[]", D_OBJ },
    { "\"bill\"", D_OBJ },
    { "null", D_OBJ },
    { "true", D_OBJ },
    { "{\"denomination\":10,\"count\":1}", D_ID },
    { "{\"denomination_id\":1.5,\"denomination\":10,\"count\":1}", D_ID },
    { "{\"denomination_id\":\"1\",\"denomination\":10,\"count\":1}", D_ID },
    { "{\"denomination_id\":true,\"denomination\":10,\"count\":1}", D_ID },
    { "{\"denomination_id\":null,\"denomination\":10,\"count\":1}", D_ID },
    { "{\"denomination_id\":9007199254740992,\"denomination\":10,\"count\":1}",
      D_ID },
    { "{\"denomination_id\":-9007199254740992,\"denomination\":10,\"count\":1}",
      D_ID },
    { "{\"denomination_id\":1e300,\"denomination\":10,\"count\":1}", D_ID },
    { "{\"denomination_id\":1e999,\"denomination\":10,\"count\":1}", D_ID },
    { "{\"denomination_id\":1,\"count\":1}", D_DEN },
    { "{\"denomination_id\":1,\"denomination\":0,\"count\":1}", D_DEN },
    { "{\"denomination_id\":1,\"denomination\":-0.0,\"count\":1}", D_DEN },
    { "{\"denomination_id\":1,\"denomination\":-10,\"count\":1}", D_DEN },
    { "{\"denomination_id\":1,\"denomination\":\"10\",\"count\":1}", D_DEN },
    { "{\"denomination_id\":1,\"denomination\":false,\"count\":1}", D_DEN },
    { "{\"denomination_id\":1,\"denomination\":1e999,\"count\":1}", D_DEN },
    { "{\"denomination_id\":1,\"denomination\":10}", D_COUNT },
    { "{\"denomination_id\":1,\"denomination\":10,\"count\":-1}", D_COUNT },
    { "{\"denomination_id\":1,\"denomination\":10,\"count\":1.5}", D_COUNT },
    { "{\"denomination_id\":1,\"denomination\":10,\"count\":\"5\"}", D_COUNT },
    { "{\"denomination_id\":1,\"denomination\":10,\"count\":true}", D_COUNT },
    { "{\"denomination_id\":1,\"denomination\":10,\"count\":null}", D_COUNT },
    { "{\"denomination_id\":1,\"denomination\":10,\"count\":1000000001}",
      D_COUNT },
    { "{\"denomination_id\":1,\"denomination\":10,\"count\":1e300}", D_COUNT },
};

#define VALID_BILL "{\"denomination_id\":7,\"denomination\":10,\"count\":1}"

START_TEST(test_bad_bill)
{
    const struct bad_bill *b = &bad_bills[_i];
    char body[512], detail[128];
    for (size_t index = 0; index < 2; index++) {
        snprintf(body, sizeof body,
                 "{\"request_id\":\"r\",\"exchange_rate\":2,\"bills\":[%s%s%s]}",
                 index ? VALID_BILL : "", index ? "," : "", b->bill);
        snprintf(detail, sizeof detail, b->detail, index);
        expect_error(body, detail);
    }
}
END_TEST

START_TEST(test_first_error_wins)
{
    /* Fields are checked in order: request_id, exchange_rate, bills, and
     * within a bill denomination_id, denomination, count. */
    expect_error("{\"request_id\":\"\",\"exchange_rate\":0,\"bills\":[]}", E_ID);
    expect_error("{\"request_id\":\"r\",\"exchange_rate\":0,\"bills\":[]}", E_RATE);
    expect_error("{\"request_id\":\"r\",\"exchange_rate\":1,\"bills\":["
                 VALID_BILL ",{\"denomination_id\":1,\"denomination\":0,"
                 "\"count\":-1},{\"count\":1.5}]}",
                 "bills[1].denomination must be a positive number");
}
END_TEST

static char *bills_body(int n)
{
    size_t cap = 64 + (size_t)n * sizeof VALID_BILL;
    char *body = malloc(cap);
    ck_assert_ptr_nonnull(body);
    size_t len = (size_t)snprintf(body, cap,
                                  "{\"request_id\":\"many\",\"exchange_rate\":1,"
                                  "\"bills\":[");
    for (int i = 0; i < n; i++)
        len += (size_t)snprintf(body + len, cap - len, "%s%s", i ? "," : "",
                                VALID_BILL);
    snprintf(body + len, cap - len, "]}");
    return body;
}

START_TEST(test_bill_limit)
{
    char *body = bills_body(EXCHANGE_MAX_BILLS + 1);
    expect_error(body, E_MANY);
    free(body);

    body = bills_body(EXCHANGE_MAX_BILLS);
    struct exchange_request req;
    double sub[EXCHANGE_MAX_BILLS];
    parse_ok(body, &req, sub);
    ck_assert_uint_eq(req.num_bills, EXCHANGE_MAX_BILLS);
    ck_assert_int_eq(req.bills[99].denomination_id, 7);
    free(body);

    /* The limit is checked before the items: a broken 101st bill gets the
     * same answer. */
    body = bills_body(EXCHANGE_MAX_BILLS);
    size_t len = strlen(body);
    body = realloc(body, len + 8);
    ck_assert_ptr_nonnull(body);
    strcpy(body + len - 2, ",5]}");
    expect_error(body, E_MANY);
    free(body);
}
END_TEST

START_TEST(test_request_id_length)
{
    char id[EXCHANGE_MAX_ID_LEN + 2];
    char body[512];
    memset(id, 'x', sizeof id - 1);
    id[EXCHANGE_MAX_ID_LEN + 1] = '\0'; /* 129 characters */
    snprintf(body, sizeof body,
             "{\"request_id\":\"%s\",\"exchange_rate\":1,\"bills\":[" VALID_BILL
             "]}", id);
    expect_error(body, E_ID);

    id[EXCHANGE_MAX_ID_LEN] = '\0'; /* 128 */
    snprintf(body, sizeof body,
             "{\"request_id\":\"%s\",\"exchange_rate\":1,\"bills\":[" VALID_BILL
             "]}", id);
    struct exchange_request req;
    double sub[EXCHANGE_MAX_BILLS];
    parse_ok(body, &req, sub);
    ck_assert_uint_eq(strlen(req.request_id), EXCHANGE_MAX_ID_LEN);

    /* Bytes, not characters: 65 two-byte letters are 130 bytes. */
    char utf8[256] = "";
    for (int i = 0; i < 65; i++)
        strcat(utf8, "\xd0\xaf");
    snprintf(body, sizeof body,
             "{\"request_id\":\"%s\",\"exchange_rate\":1,\"bills\":[" VALID_BILL
             "]}", utf8);
    expect_error(body, E_ID);
}
END_TEST

START_TEST(test_lenient_forms)
{
    struct exchange_request req;
    double sub[EXCHANGE_MAX_BILLS];
    /* Integers written as 5.0 or 1e2, extra fields, whitespace, a negative id,
     * the largest safe integer, count 0 and the largest count. */
    parse_ok(" \r\n\t{\"request_id\":\"r\",\"exchange_rate\":2,\"extra\":[1,{}],"
             "\"bills\":[{\"denomination_id\":1.0,\"denomination\":10,"
             "\"count\":5.0,\"note\":\"x\"},"
             "{\"denomination_id\":1e2,\"denomination\":0.5,\"count\":0},"
             "{\"denomination_id\":-3,\"denomination\":1,\"count\":1000000000},"
             "{\"denomination_id\":9007199254740991,\"denomination\":1,"
             "\"count\":1}]} \n",
             &req, sub);
    ck_assert_uint_eq(req.num_bills, 4);
    ck_assert_int_eq(req.bills[0].denomination_id, 1);
    ck_assert_int_eq(req.bills[0].count, 5);
    ck_assert_int_eq(req.bills[1].denomination_id, 100);
    ck_assert_int_eq(req.bills[1].count, 0);
    ck_assert_int_eq(req.bills[2].denomination_id, -3);
    ck_assert_int_eq(req.bills[2].count, 1000000000);
    ck_assert_int_eq(req.bills[3].denomination_id, 9007199254740991LL);
    char *out = exchange_sync_response(&req, sub);
    ck_assert_str_eq(out,
                     "{\"status\":\"completed\",\"request_id\":\"r\",\"breakdown\":["
                     "{\"denomination_id\":1,\"subtotal_rub\":100.0},"
                     "{\"denomination_id\":100,\"subtotal_rub\":0.0},"
                     "{\"denomination_id\":-3,\"subtotal_rub\":2000000000.0},"
                     "{\"denomination_id\":9007199254740991,\"subtotal_rub\":2.0}],"
                     "\"total_rub\":2000000102.0}");
    free(out);
}
END_TEST

START_TEST(test_body_not_nul_terminated)
{
    /* The length is what counts, not a terminating NUL. */
    char buf[sizeof LECTURE_BODY + 8];
    memcpy(buf, LECTURE_BODY, sizeof LECTURE_BODY - 1);
    memcpy(buf + sizeof LECTURE_BODY - 1, "garbage!", 8);
    struct exchange_request req;
    char err[128];
    ck_assert_int_eq(exchange_parse_request(buf, sizeof LECTURE_BODY - 1, &req,
                                            err, sizeof err), 0);
    ck_assert_uint_eq(req.num_bills, 2);
    /* All the bytes written (sizeof buf would take one uninitialised byte). */
    ck_assert_int_eq(exchange_parse_request(buf, sizeof LECTURE_BODY - 1 + 8,
                                            &req, err, sizeof err), -1);
    ck_assert_str_eq(err, E_JSON);
    ck_assert_int_eq(exchange_parse_request(NULL, 0, &req, err, sizeof err), -1);
    ck_assert_str_eq(err, E_JSON);
    /* A short err buffer is truncated, never overrun. */
    char tiny[5];
    ck_assert_int_eq(exchange_parse_request("[]", 2, &req, tiny, sizeof tiny),
                     -1);
    ck_assert_str_eq(tiny, "body");
    ck_assert_int_eq(exchange_parse_request("[]", 2, &req, NULL, 0), -1);
}
END_TEST

START_TEST(test_too_large_results)
{
    expect_error("{\"request_id\":\"r\",\"exchange_rate\":10,\"bills\":["
                 VALID_BILL ",{\"denomination_id\":1,\"denomination\":1e308,"
                 "\"count\":1000000000}]}",
                 "bills[1] subtotal is too large");
    expect_error("{\"request_id\":\"r\",\"exchange_rate\":1.5,\"bills\":["
                 "{\"denomination_id\":1,\"denomination\":1e308,\"count\":1},"
                 "{\"denomination_id\":2,\"denomination\":1e308,\"count\":1}]}",
                 "total_rub is too large");
}
END_TEST

/* ---- numbers ------------------------------------------------------------ */

START_TEST(test_rounding)
{
    ck_assert(subtotal_of(2.675, 1, 1.0) == 2.67);
    ck_assert(subtotal_of(1.005, 1, 1.0) == 1.0);
    ck_assert(subtotal_of(0.125, 1, 1.0) == 0.12);
    ck_assert(subtotal_of(0.375, 1, 1.0) == 0.38);
    ck_assert(subtotal_of(999999999.995, 1, 1.0) == 1000000000.0);
    ck_assert(subtotal_of(10.0, 0, 75.5) == 0.0);
    ck_assert(subtotal_of(1e-300, 1, 1.0) == 0.0);
    ck_assert(subtotal_of(1e15, 3, 1.1) == 3300000000000000.5);
    ck_assert(subtotal_of(1234567890123.45, 1, 1.0) == 1234567890123.45);
    /* Left to right: (19.99 * 7) * 75.5 = 10564.714999..., while
     * (19.99 * 75.5) * 7 would round to 10564.72. */
    ck_assert(subtotal_of(19.99, 7, 75.5) == 10564.71);

    ck_assert_str_eq(money(subtotal_of(2.675, 1, 1.0)), "2.67");
    ck_assert_str_eq(money(subtotal_of(1.005, 1, 1.0)), "1.0");
    ck_assert_str_eq(money(subtotal_of(0.125, 1, 1.0)), "0.12");
    ck_assert_str_eq(money(subtotal_of(1e15, 3, 1.1)), "3300000000000000.5");
    ck_assert_str_eq(money(subtotal_of(19.99, 7, 75.5)), "10564.71");
    ck_assert_str_eq(money(subtotal_of(10.0, 0, 75.5)), "0.0");
}
END_TEST

/* Cents are rounded without printf on the common range (exchange.c says
 * how); printf's "%.2f" stays the reference, so every figure is checked
 * against it: sums of cents and their halves (the ties), dyadic ties that
 * round to even, lecture-like products, random bit patterns, and the edges
 * of the range. */
static void same_as_printf(double v)
{
    char want[512];
    int n = snprintf(want, sizeof want, "%.2f", v);
    double back = strtod(want, NULL);
    while (n >= 2 && want[n - 1] == '0' && want[n - 2] != '.')
        want[--n] = '\0';
    struct exchange_bill b = {1, v, 1};
    double got = exchange_subtotal(&b, 1.0);
    ck_assert_msg(got == back || (isnan(got) && isnan(back)),
                  "%.17g: rounded to %.17g, printf says %.17g", v, got, back);
    ck_assert_msg(strcmp(money(v), want) == 0, "%.17g: \"%s\", printf says "
                  "\"%s\"", v, money(v), want);
}

/* The answers are written without cJSON now (exchange.c); its printer
 * stays the reference for how a string is escaped: every byte alone and
 * in company, a key as well as a value, and null. */
static void same_as_cjson(const char *key, const char *value)
{
    cJSON *o = cJSON_CreateObject();
    ck_assert_ptr_nonnull(o);
    ck_assert_ptr_nonnull(value ? cJSON_AddStringToObject(o, key, value)
                                : cJSON_AddNullToObject(o, key));
    char *want = cJSON_PrintUnformatted(o);
    char *got = exchange_json_object(key, value, (char *)NULL);
    ck_assert_ptr_nonnull(want);
    ck_assert_ptr_nonnull(got);
    ck_assert_msg(strcmp(got, want) == 0, "got %s, cJSON says %s", got, want);
    free(got);
    cJSON_free(want);
    cJSON_Delete(o);
}

START_TEST(test_strings_escaped_as_cjson_does)
{
    char all[256];
    for (int c = 1; c < 256; c++) {
        char one[4] = {'a', (char)c, 'z', 0};
        same_as_cjson("k", one);
        same_as_cjson(one, "v");
        all[c - 1] = (char)c;
    }
    all[255] = 0;
    same_as_cjson("all", all);
    same_as_cjson("", "");
    same_as_cjson("nothing", NULL);
    char *empty = exchange_json_object(NULL, NULL);
    ck_assert_str_eq(empty, "{}");
    free(empty);
}
END_TEST

START_TEST(test_rounding_matches_printf)
{
    static const double edges[] = {0.0, 0.005, 0.015, 0.025, 0.125, 0.375,
                                   0.625, 2.5e-3, 1e-200, 9.99e-201, 1e-300,
                                   9999999999999.995, 1e13, 1e13 - 1.0 / 64,
                                   4503599627370495.5, 1e15, 1e300};
    for (size_t i = 0; i < sizeof edges / sizeof edges[0]; i++)
        same_as_printf(edges[i]);
    unsigned long long x = 88172645463325252ULL; /* xorshift64 */
    for (int i = 0; i < 200000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        double v;
        switch (i % 5) {
        case 0: /* cents and half cents, as decimals */
            v = (double)(x % 100000000000ULL) / 1000.0;
            break;
        case 1: /* dyadic fractions: exact ties at the third decimal */
            v = (double)(x % 1000000000ULL) / 1024.0;
            break;
        case 2: /* a bill times a count times a rate, as requests give */
            v = (double)(x % 1000000) / 100.0 * (double)(x >> 40 & 1023) *
                ((double)(x >> 20 & 0xfffff) / 1000.0);
            break;
        case 3: /* any finite positive double below 1e14 */
            memcpy(&v, &x, sizeof v);
            v = fabs(v);
            if (!isfinite(v) || v >= 1e14)
                v = fmod(v, 1e14);
            if (!isfinite(v))
                v = 1.0;
            break;
        default: /* near the top of the range */
            v = 1e13 - (double)(x % 100000000) / 1000.0;
            break;
        }
        same_as_printf(v);
    }
}
END_TEST

START_TEST(test_format_money)
{
    ck_assert_str_eq(money(3775.0), "3775.0");
    ck_assert_str_eq(money(377.5), "377.5");
    ck_assert_str_eq(money(377.50), "377.5");
    ck_assert_str_eq(money(2.67), "2.67");
    ck_assert_str_eq(money(0.0), "0.0");
    ck_assert_str_eq(money(0.1), "0.1");
    ck_assert_str_eq(money(0.05), "0.05");
    ck_assert_str_eq(money(100.0), "100.0");
    ck_assert_str_eq(money(1e15), "1000000000000000.0");
    ck_assert_str_eq(money(1.0 / 0.0), "null");
    char small[4];
    exchange_format_money(3775.0, small, sizeof small);
    ck_assert_str_eq(small, "377");
    exchange_format_money(3775.0, small, 0); /* no write at all */
}
END_TEST

START_TEST(test_total_rounding)
{
    /* 0.1 + 0.2 is 0.30000000000000004 in doubles; the total is rounded. */
    struct exchange_request req = { .request_id = "t", .exchange_rate = 1,
                                    .num_bills = 2,
                                    .bills = { { 1, 0.1, 1 }, { 2, 0.2, 1 } } };
    double sub[2] = { exchange_subtotal(&req.bills[0], 1),
                      exchange_subtotal(&req.bills[1], 1) };
    char *out = exchange_sync_response(&req, sub);
    ck_assert_str_eq(out,
                     "{\"status\":\"completed\",\"request_id\":\"t\",\"breakdown\":["
                     "{\"denomination_id\":1,\"subtotal_rub\":0.1},"
                     "{\"denomination_id\":2,\"subtotal_rub\":0.2}],"
                     "\"total_rub\":0.3}");
    free(out);
}
END_TEST

/* ---- JSON out ----------------------------------------------------------- */

START_TEST(test_escaping)
{
    struct exchange_request req;
    double sub[EXCHANGE_MAX_BILLS];
    parse_ok("{\"request_id\":\"a\\\"b\\\\c\\n\\u0001\xd0\xaf\",\"exchange_rate\":1,"
             "\"bills\":[" VALID_BILL "]}",
             &req, sub);
    ck_assert_str_eq(req.request_id, "a\"b\\c\n\x01\xd0\xaf");
    char *out = exchange_sync_response(&req, sub);
    ck_assert_str_eq(out,
                     "{\"status\":\"completed\",\"request_id\":"
                     "\"a\\\"b\\\\c\\n\\u0001\xd0\xaf\",\"breakdown\":["
                     "{\"denomination_id\":7,\"subtotal_rub\":10.0}],"
                     "\"total_rub\":10.0}");
    free(out);
    out = exchange_callback_body("to\"ken", &req, sub);
    ck_assert_str_eq(out,
                     "{\"token\":\"to\\\"ken\",\"request_id\":"
                     "\"a\\\"b\\\\c\\n\\u0001\xd0\xaf\",\"breakdown\":["
                     "{\"denomination_id\":7,\"subtotal_rub\":10.0}]}");
    free(out);
    out = exchange_error_body("bad \"x\"\\");
    ck_assert_str_eq(out, "{\"detail\":\"bad \\\"x\\\"\\\\\"}");
    free(out);
}
END_TEST

START_TEST(test_small_objects)
{
    char *out = exchange_json_object("status", "ok", (char *)NULL);
    ck_assert_str_eq(out, "{\"status\":\"ok\"}");
    free(out);
    out = exchange_json_object("message", "Exchange service is running",
                               "stage", "01-blocking", (char *)NULL);
    ck_assert_str_eq(out, "{\"message\":\"Exchange service is running\","
                          "\"stage\":\"01-blocking\"}");
    free(out);
    out = exchange_json_object("a", (char *)NULL, (char *)NULL);
    ck_assert_str_eq(out, "{\"a\":null}");
    free(out);
    out = exchange_error_body("Not Found");
    ck_assert_str_eq(out, "{\"detail\":\"Not Found\"}");
    free(out);
}
END_TEST

/* ---- endpoint ----------------------------------------------------------- */

static enum endpoint_route route(const char *method, const char *path,
                                 const char *query, const char *body,
                                 struct exchange_request *job,
                                 struct endpoint_reply *reply)
{
    struct http_request req;
    memset(&req, 0, sizeof req);
    req.method = method;
    req.path = path;
    req.query = query ? query : "";
    req.minor_version = 1;
    req.body = body ? body : "";
    req.body_len = body ? strlen(body) : 0;
    req.keep_alive = true;
    return endpoint_route(&req, "03-threads", job, reply);
}

static void expect_reply(const char *method, const char *path,
                         const char *query, const char *body, int status,
                         const char *expected)
{
    struct exchange_request job;
    struct endpoint_reply reply;
    enum endpoint_route r = route(method, path, query, body, &job, &reply);
    ck_assert_msg(r == ENDPOINT_REPLY, "%s %s: route %d", method, path, r);
    ck_assert_msg(reply.status == status, "%s %s: status %d, want %d", method,
                  path, reply.status, status);
    ck_assert_ptr_nonnull(reply.body);
    ck_assert_str_eq(reply.body, expected);
    endpoint_reply_free(&reply);
    ck_assert_ptr_null(reply.body);
}

#define NOT_FOUND "{\"detail\":\"Not Found\"}"
#define NOT_ALLOWED "{\"detail\":\"Method Not Allowed\"}"

START_TEST(test_route_root)
{
    const char *hello = "{\"message\":\"Exchange service is running\","
                        "\"stage\":\"03-threads\"}";
    expect_reply("GET", "/", NULL, NULL, 200, hello);
    expect_reply("GET", "/", "x=1&y", NULL, 200, hello);
    expect_reply("POST", "/", NULL, LECTURE_BODY, 405, NOT_ALLOWED);
    expect_reply("HEAD", "/", NULL, NULL, 405, NOT_ALLOWED);
    expect_reply("DELETE", "/", NULL, NULL, 405, NOT_ALLOWED);
    expect_reply("get", "/", NULL, NULL, 405, NOT_ALLOWED);
}
END_TEST

START_TEST(test_route_not_found)
{
    expect_reply("GET", "/nope", NULL, NULL, 404, NOT_FOUND);
    expect_reply("POST", "/api", NULL, LECTURE_BODY, 404, NOT_FOUND);
    expect_reply("POST", "/api/exchange_sync/", NULL, LECTURE_BODY, 404,
                 NOT_FOUND);
    expect_reply("POST", "/api/exchange_result", NULL, LECTURE_BODY, 404,
                 NOT_FOUND);
    expect_reply("POST", "/API/EXCHANGE_SYNC", NULL, LECTURE_BODY, 404,
                 NOT_FOUND);
    expect_reply("GET", "", NULL, NULL, 404, NOT_FOUND);
    expect_reply("GET", "//", NULL, NULL, 404, NOT_FOUND);
}
END_TEST

START_TEST(test_route_wrong_method)
{
    static const char *paths[] = { "/api/exchange_sync", "/api/exchange_async" };
    static const char *methods[] = { "GET", "PUT", "DELETE", "HEAD", "PATCH",
                                     "OPTIONS", "post" };
    for (size_t p = 0; p < 2; p++)
        for (size_t m = 0; m < sizeof methods / sizeof *methods; m++)
            expect_reply(methods[m], paths[p], NULL, LECTURE_BODY, 405,
                         NOT_ALLOWED);
}
END_TEST

START_TEST(test_route_bad_body)
{
    static const char *paths[] = { "/api/exchange_sync", "/api/exchange_async" };
    for (size_t p = 0; p < 2; p++) {
        expect_reply("POST", paths[p], NULL, NULL, 400,
                     "{\"detail\":\"body is not valid JSON\"}");
        expect_reply("POST", paths[p], NULL, "{oops", 400,
                     "{\"detail\":\"body is not valid JSON\"}");
        expect_reply("POST", paths[p], "q=1", "[]", 400,
                     "{\"detail\":\"body must be a JSON object\"}");
        expect_reply("POST", paths[p], NULL,
                     "{\"request_id\":\"r\",\"exchange_rate\":1,\"bills\":["
                     VALID_BILL ",{\"denomination_id\":2,\"denomination\":5,"
                     "\"count\":-2}]}",
                     400,
                     "{\"detail\":\"bills[1].count must be a non-negative "
                     "integer\"}");
    }
}
END_TEST

START_TEST(test_route_sync)
{
    struct exchange_request job;
    struct endpoint_reply reply;
    ck_assert_int_eq(route("POST", "/api/exchange_sync", "debug=1",
                           LECTURE_BODY, &job, &reply),
                     ENDPOINT_SYNC);
    ck_assert_ptr_null(reply.body);
    ck_assert_str_eq(job.request_id, "sync_test");
    ck_assert_uint_eq(job.num_bills, 2);
    endpoint_reply_free(&reply); /* harmless on an empty reply */

    double sub[2];
    for (size_t i = 0; i < job.num_bills; i++) {
        sub[i] = exchange_subtotal(&job.bills[i], job.exchange_rate);
        endpoint_log_bill(&job, i, sub[i]);
    }
    endpoint_log_bill(&job, 5, 0); /* out of range: ignored */
    endpoint_sync_done(&job, sub, &reply);
    ck_assert_int_eq(reply.status, 200);
    ck_assert_str_eq(reply.body,
                     "{\"status\":\"completed\",\"request_id\":\"sync_test\","
                     "\"breakdown\":[{\"denomination_id\":1,\"subtotal_rub\":3775.0},"
                     "{\"denomination_id\":2,\"subtotal_rub\":4530.0}],"
                     "\"total_rub\":8305.0}");
    endpoint_reply_free(&reply);
}
END_TEST

START_TEST(test_route_async)
{
    struct exchange_request job;
    struct endpoint_reply reply;
    ck_assert_int_eq(route("POST", "/api/exchange_async", NULL, LECTURE_BODY,
                           &job, &reply),
                     ENDPOINT_ASYNC);
    ck_assert_int_eq(reply.status, 200);
    ck_assert_str_eq(reply.body, "{\"status\":\"ok\"}");
    ck_assert_str_eq(job.request_id, "sync_test");
    ck_assert_uint_eq(job.num_bills, 2);
    ck_assert(job.bills[1].denomination == 20.0);
    endpoint_reply_free(&reply);
}
END_TEST

START_TEST(test_endpoint_other_replies)
{
    struct endpoint_reply reply;
    endpoint_parse_error(413, "body too large", &reply);
    ck_assert_int_eq(reply.status, 413);
    ck_assert_str_eq(reply.body, "{\"detail\":\"body too large\"}");
    endpoint_reply_free(&reply);

    endpoint_busy("too many threads (1024)", &reply);
    ck_assert_int_eq(reply.status, 503);
    ck_assert_str_eq(reply.body,
                     "{\"detail\":\"server busy: too many threads (1024)\"}");
    endpoint_reply_free(&reply);
    endpoint_reply_free(&reply); /* twice is fine */
    endpoint_reply_free(NULL);
}
END_TEST

START_TEST(test_endpoint_render)
{
    struct endpoint_reply reply;
    endpoint_busy("x", &reply);
    size_t len = 0;
    char *out = endpoint_reply_render(&reply, false, &len);
    ck_assert_ptr_nonnull(out);
    ck_assert_uint_eq(strlen(out), len);
    ck_assert_msg(strncmp(out, "HTTP/1.1 503 ", 13) == 0, "%s", out);
    const char *body = "{\"detail\":\"server busy: x\"}";
    ck_assert_uint_ge(len, strlen(body));
    ck_assert_str_eq(out + len - strlen(body), body);
    free(out);
    endpoint_reply_free(&reply);

    /* An allocation failure leaves a NULL body: still a complete answer. */
    struct endpoint_reply failed = { .status = 500, .body = NULL };
    out = endpoint_reply_render(&failed, true, &len);
    ck_assert_ptr_nonnull(out);
    ck_assert_msg(strncmp(out, "HTTP/1.1 500 ", 13) == 0, "%s", out);
    body = "{\"detail\":\"Internal Server Error\"}";
    ck_assert_str_eq(out + len - strlen(body), body);
    free(out);
    endpoint_reply_free(&failed);
}
END_TEST

/* ---- callback ----------------------------------------------------------- */

START_TEST(test_callback_retry_policy)
{
    struct callback *cb = callback_new("http://127.0.0.1:9/", strdup("{}"),
                                       "policy", 120000);
    ck_assert_ptr_nonnull(cb);
    ck_assert_str_eq(cb->request_id, "policy");
    long wait = -1;
    strcpy(cb->errbuf, "Failed to connect to 127.0.0.1 port 9");
    ck_assert_int_eq(callback_after_attempt(cb, CURLE_COULDNT_CONNECT, &wait),
                     CALLBACK_RETRY);
    ck_assert_int_ge(wait, 250); /* 500 ms with jitter: [250, 500] */
    ck_assert_int_le(wait, 500);
    ck_assert_int_eq(cb->tries, 1);
    ck_assert_str_eq(cb->errbuf, ""); /* cleared for the next attempt */
    ck_assert_int_eq(callback_after_attempt(cb, CURLE_COULDNT_CONNECT, &wait),
                     CALLBACK_RETRY);
    ck_assert_int_ge(wait, 500);
    ck_assert_int_le(wait, 1000);
    /* No count of tries any more: only the deadline ends the retries. */
    ck_assert_int_eq(callback_after_attempt(cb, CURLE_COULDNT_CONNECT, &wait),
                     CALLBACK_RETRY);
    cb->give_up_at_ms = timer_now_ms();
    ck_assert_int_eq(callback_after_attempt(cb, CURLE_COULDNT_CONNECT, &wait),
                     CALLBACK_FAILED);
    ck_assert_int_eq(cb->tries, 4);
    callback_free(cb);

    /* A "successful" transfer without a status (never performed: code 0)
     * is neither 2xx nor 4xx, so it is retried like a 5xx. */
    cb = callback_new("http://127.0.0.1:9", strdup("{}"), "zero", 120000);
    ck_assert_ptr_nonnull(cb);
    ck_assert_int_eq(callback_after_attempt(cb, CURLE_OK, &wait),
                     CALLBACK_RETRY);
    ck_assert_int_ge(wait, 250);
    ck_assert_int_le(wait, 500);
    ck_assert_int_eq(callback_after_attempt(cb, CURLE_OPERATION_TIMEDOUT, NULL),
                     CALLBACK_RETRY);
    callback_free(cb);
}
END_TEST

START_TEST(test_callback_new_edges)
{
    ck_assert_ptr_null(callback_new("http://x", NULL, "r", 1000)); /* ENOMEM */
    char long_id[300];
    memset(long_id, 'i', sizeof long_id - 1);
    long_id[sizeof long_id - 1] = '\0';
    struct callback *cb = callback_new("http://127.0.0.1:9", strdup("{}"),
                                       long_id, 1000);
    ck_assert_ptr_nonnull(cb);
    ck_assert_uint_eq(strlen(cb->request_id), sizeof cb->request_id - 1);
    callback_free(cb);
    cb = callback_new("http://127.0.0.1:9", strdup("{}"), NULL, 1000);
    ck_assert_ptr_nonnull(cb);
    ck_assert_str_eq(cb->request_id, "");
    callback_free(cb);
    callback_free(NULL);
}
END_TEST

/* Callbacks to the fake main service, retried for CALLBACK_TEST_DEADLINE_MS. */
#define CALLBACK_TEST_DEADLINE_MS 1500
static struct callback *callback_to(int port, const char *suffix)
{
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, suffix);
    return callback_new(url, strdup("{\"token\":\"t\"}"), "cb_test",
                        CALLBACK_TEST_DEADLINE_MS);
}

START_TEST(test_callback_delivered)
{
    static const int script[] = { 200 };
    struct fake_main rs;
    fake_main_start(&rs, 0, script, 1);
    struct callback *cb = callback_to(rs.port, "//");
    ck_assert(callback_send_blocking(cb));
    ck_assert_int_eq(cb->tries, 1);
    char *url = NULL;
    curl_easy_getinfo(cb->easy, CURLINFO_EFFECTIVE_URL, &url);
    char want[128];
    snprintf(want, sizeof want, "http://127.0.0.1:%d/api/exchange_result",
             rs.port);
    ck_assert_str_eq(url, want);
    void *priv = NULL;
    curl_easy_getinfo(cb->easy, CURLINFO_PRIVATE, &priv);
    ck_assert_ptr_eq(priv, cb);
    callback_free(cb);

    ck_assert_int_eq(fake_main_requests(&rs), 1);
    const char *head = fake_main_head(&rs, 0);
    ck_assert_msg(strncmp(head, "PUT /api/exchange_result HTTP/1.1\r\n",
                          35) == 0, "%s", head);
    ck_assert_ptr_nonnull(strcasestr(head,
                                     "\r\nContent-Type: application/json\r\n"));
    ck_assert_ptr_nonnull(strcasestr(head, "\r\nContent-Length: 13\r\n"));
    ck_assert_ptr_null(strcasestr(head, "Expect:"));
    ck_assert_str_eq(head + strlen(head) - 4, "\r\n\r\n");
    ck_assert_str_eq(fake_main_body(&rs, 0), "{\"token\":\"t\"}");
    fake_main_close(&rs);
}
END_TEST

START_TEST(test_callback_retries_5xx)
{
    static const int script[] = { 503, 500, 201 };
    struct fake_main rs;
    fake_main_start(&rs, 0, script, 3);
    struct callback *cb = callback_to(rs.port, "");
    double t0 = log_elapsed();
    ck_assert(callback_send_blocking(cb));
    double took = log_elapsed() - t0;
    ck_assert_int_eq(cb->tries, 3);
    /* Backoff 500 then 1000 ms, each with jitter down to half. */
    ck_assert_msg(took >= 0.74, "backoff >= 250 + 500 ms, took %.3f s", took);
    callback_free(cb);
    fake_main_close(&rs);
}
END_TEST

START_TEST(test_callback_4xx_not_retried)
{
    static const int script[] = { 403 };
    struct fake_main rs;
    fake_main_start(&rs, 0, script, 1);
    struct callback *cb = callback_to(rs.port, "/");
    ck_assert(!callback_send_blocking(cb));
    ck_assert_int_eq(cb->tries, 1);
    callback_free(cb);
    fake_main_close(&rs);
}
END_TEST

START_TEST(test_callback_refused)
{
    /* A bound socket that never listens refuses connections at once. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET,
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t alen = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &alen);
    struct callback *cb = callback_to(ntohs(a.sin_port), "");
    double t0 = log_elapsed();
    ck_assert(!callback_send_blocking(cb));
    double took = log_elapsed() - t0;
    /* Retried until the deadline (the last try starts right at it), and
     * not long after: 0.5 + 1 s of nominal backoff fits in 1.5 s, so at
     * least three tries. */
    ck_assert_int_ge(cb->tries, 3);
    ck_assert_msg(took >= CALLBACK_TEST_DEADLINE_MS / 1000.0 - 0.01 &&
                  took < CALLBACK_TEST_DEADLINE_MS / 1000.0 + 1.0,
                  "gave up after %.3f s", took);
    callback_free(cb);
    close(fd);
}
END_TEST

/* ---- main --------------------------------------------------------------- */

static Suite *exchange_suite(void)
{
    Suite *s = suite_create("exchange");
    TCase *tc = tcase_create("exchange");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_lecture_sync);
    tcase_add_test(tc, test_rounding_matches_printf);
    tcase_add_test(tc, test_strings_escaped_as_cjson_does);
    tcase_add_test(tc, test_lecture_notes_numbers);
    tcase_add_test(tc, test_lecture_callback_body);
    tcase_add_test(tc, test_parse_fields);
    tcase_add_loop_test(tc, test_bad_top, 0,
                        (int)(sizeof bad_tops / sizeof *bad_tops));
    tcase_add_loop_test(tc, test_bad_bill, 0,
                        (int)(sizeof bad_bills / sizeof *bad_bills));
    tcase_add_test(tc, test_first_error_wins);
    tcase_add_test(tc, test_bill_limit);
    tcase_add_test(tc, test_request_id_length);
    tcase_add_test(tc, test_lenient_forms);
    tcase_add_test(tc, test_body_not_nul_terminated);
    tcase_add_test(tc, test_too_large_results);
    tcase_add_test(tc, test_rounding);
    tcase_add_test(tc, test_format_money);
    tcase_add_test(tc, test_total_rounding);
    tcase_add_test(tc, test_escaping);
    tcase_add_test(tc, test_small_objects);
    suite_add_tcase(s, tc);

    tc = tcase_create("endpoint");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_route_root);
    tcase_add_test(tc, test_route_not_found);
    tcase_add_test(tc, test_route_wrong_method);
    tcase_add_test(tc, test_route_bad_body);
    tcase_add_test(tc, test_route_sync);
    tcase_add_test(tc, test_route_async);
    tcase_add_test(tc, test_endpoint_other_replies);
    tcase_add_test(tc, test_endpoint_render);
    suite_add_tcase(s, tc);

    tc = tcase_create("callback");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_callback_retry_policy);
    tcase_add_test(tc, test_callback_new_edges);
    tcase_add_test(tc, test_callback_delivered);
    tcase_add_test(tc, test_callback_retries_5xx);
    tcase_add_test(tc, test_callback_4xx_not_retried);
    tcase_add_test(tc, test_callback_refused);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    log_init("test_exchange", true);
    callback_global_init();
    int failed = harness_run(exchange_suite());
    callback_global_cleanup();
    return failed;
}
