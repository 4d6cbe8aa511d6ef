/* Replays saved fuzz inputs without libFuzzer, so that what a fuzzer once
 * found stays fixed in every `make test` (and under SAN=1, where AddressSanitizer
 * and UBSan watch the same code paths libFuzzer ran).
 *
 * Every file under tests/fuzz/regressions/http/ goes through the checks of
 * tests/fuzz/fuzz_http.c, every file under .../exchange/ through those of
 * tests/fuzz/fuzz_exchange.c: the very same source, included below, so the
 * replay cannot drift from the fuzz targets. The seed corpora are replayed
 * too (they are small and name every limit case).
 *
 * Adding a regression: save the input libFuzzer wrote (build/fuzz/artifacts/)
 * under a name that says what it broke, e.g. regressions/exchange/
 * invalid-utf8-request-id. FUZZ_REGRESSIONS_DIR and FUZZ_CORPUS_DIR override
 * the directories (default: relative to the repository root, where make
 * runs the tests). */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A broken invariant is a Check failure that names the input file. */
static char current_input[1024];

#define FUZZ_FAIL(...)                                                   \
    do {                                                                 \
        char fuzz_msg_[512];                                             \
        snprintf(fuzz_msg_, sizeof fuzz_msg_, __VA_ARGS__);              \
        ck_abort_msg("%s: %s", current_input, fuzz_msg_);                \
    } while (0)

#define FUZZ_NO_MAIN
#include "fuzz/fuzz_exchange.c"
#include "fuzz/fuzz_http.c"
#include "harness.h"

typedef int (*fuzz_fn)(const uint8_t *data, size_t size);

static const char *dir_from_env(const char *var, const char *fallback)
{
    const char *d = getenv(var);
    return d && *d ? d : fallback;
}

/* Reads a whole file; NULL (and the test fails) if it cannot. */
static uint8_t *read_file(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "%s: %s", path, strerror(errno));
    size_t cap = 4096, len = 0;
    uint8_t *buf = malloc(cap);
    ck_assert(buf != NULL);
    for (;;) {
        size_t n = fread(buf + len, 1, cap - len, f);
        len += n;
        if (len < cap)
            break;
        cap *= 2;
        buf = realloc(buf, cap);
        ck_assert(buf != NULL);
    }
    ck_assert_msg(!ferror(f), "%s: read error", path);
    fclose(f);
    *size = len;
    return buf;
}

static int not_hidden(const struct dirent *e)
{
    return e->d_name[0] != '.';
}

/* Runs fn on every file of dir/kind; returns how many there were. */
static int replay_dir(const char *dir, const char *kind, fuzz_fn fn)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, kind);
    struct dirent **names;
    int n = scandir(path, &names, not_hidden, alphasort);
    ck_assert_msg(n >= 0, "%s: %s", path, strerror(errno));
    for (int i = 0; i < n; i++) {
        snprintf(current_input, sizeof current_input, "%s/%s", path,
                 names[i]->d_name);
        size_t size;
        uint8_t *data = read_file(current_input, &size);
        fn(data, size);
        free(data);
        free(names[i]);
    }
    free(names);
    return n;
}

/* Replays dir/kind and fails if it holds nothing: an empty directory would
 * pass while replaying nothing. */
static void replay_all(const char *env, const char *fallback,
                       const char *kind, fuzz_fn fn)
{
    const char *dir = dir_from_env(env, fallback);
    ck_assert_msg(replay_dir(dir, kind, fn) > 0, "no inputs in %s/%s", dir,
                  kind);
}

START_TEST(http_regressions_stay_fixed)
{
    replay_all("FUZZ_REGRESSIONS_DIR", "tests/fuzz/regressions", "http",
               fuzz_http_input);
}
END_TEST

START_TEST(exchange_regressions_stay_fixed)
{
    replay_all("FUZZ_REGRESSIONS_DIR", "tests/fuzz/regressions", "exchange",
               fuzz_exchange_input);
}
END_TEST

START_TEST(http_seed_corpus_passes)
{
    replay_all("FUZZ_CORPUS_DIR", "tests/fuzz/corpus", "http",
               fuzz_http_input);
}
END_TEST

START_TEST(exchange_seed_corpus_passes)
{
    replay_all("FUZZ_CORPUS_DIR", "tests/fuzz/corpus", "exchange",
               fuzz_exchange_input);
}
END_TEST

/* The checks themselves must bite: inputs that the code once got wrong are
 * refused now, with the detail the fix introduced. */
START_TEST(fixed_findings_are_refused)
{
    struct exchange_request req;
    char err[160];
    const char *latin1 = "{\"request_id\":\"caf\xe9\",\"exchange_rate\":1,"
                         "\"bills\":[{\"denomination_id\":1,"
                         "\"denomination\":1,\"count\":1}]}";
    ck_assert_int_eq(exchange_parse_request(latin1, strlen(latin1), &req, err,
                                            sizeof err), -1);
    ck_assert_str_eq(err, "body is not valid UTF-8");
    const char *dup = "{\"request_id\":\"a\",\"exchange_rate\":1,\"bills\":["
                      "{\"denomination_id\":1,\"denomination\":1,\"count\":1,"
                      "\"count\":1000}]}";
    ck_assert_int_eq(exchange_parse_request(dup, strlen(dup), &req, err,
                                            sizeof err), -1);
    ck_assert_str_eq(err, "bills[0].count is given more than once");

    /* Depth: the object and 31 levels in an extra field pass, 32 do not. */
    char deep[512];
    for (int levels = 31; levels <= 32; levels++) {
        int n = snprintf(deep, sizeof deep, "{\"request_id\":\"d\","
                         "\"exchange_rate\":1,\"bills\":[{\"denomination_id\""
                         ":1,\"denomination\":1,\"count\":1}],\"x\":");
        for (int k = 0; k < levels; k++)
            deep[n++] = '[';
        for (int k = 0; k < levels; k++)
            deep[n++] = ']';
        deep[n++] = '}';
        int rc = exchange_parse_request(deep, (size_t)n, &req, err,
                                        sizeof err);
        if (levels == 31) {
            ck_assert_int_eq(rc, 0);
        } else {
            ck_assert_int_eq(rc, -1);
            ck_assert_str_eq(err, "body nests deeper than 32 levels");
        }
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("fuzz regressions");
    TCase *tc = tcase_create("replay");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, http_regressions_stay_fixed);
    tcase_add_test(tc, exchange_regressions_stay_fixed);
    tcase_add_test(tc, http_seed_corpus_passes);
    tcase_add_test(tc, exchange_seed_corpus_passes);
    tcase_add_test(tc, fixed_findings_are_refused);
    suite_add_tcase(s, tc);
    return harness_run(s);
}
