/* fuzz_common: what both fuzz targets share, included by them and by
 * tests/test_fuzz_regressions.c (which replays saved inputs through the very
 * same checks, without libFuzzer).
 *
 * An invariant that does not hold is a finding: FUZZ_CHECK reports it through
 * FUZZ_FAIL, which under libFuzzer prints and aborts (libFuzzer then saves
 * the input as a crash file). The regression test defines FUZZ_FAIL itself so
 * a broken invariant becomes an ordinary Check failure naming the file. */
#ifndef TESTS_FUZZ_COMMON_H
#define TESTS_FUZZ_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#ifndef FUZZ_FAIL
#define FUZZ_FAIL(...)                                                   \
    do {                                                                 \
        fprintf(stderr, "fuzz invariant broken (%s:%d): ", __FILE__,     \
                __LINE__);                                               \
        fprintf(stderr, __VA_ARGS__);                                    \
        fputc('\n', stderr);                                             \
        abort();                                                         \
    } while (0)
#endif

#define FUZZ_CHECK(cond, ...)                                            \
    do {                                                                 \
        if (!(cond))                                                     \
            FUZZ_FAIL(__VA_ARGS__);                                      \
    } while (0)

/* FNV-1a, 64 bits: a cheap fingerprint of bytes, chained through h. */
static inline uint64_t fuzz_hash(uint64_t h, const void *data, size_t n)
{
    const unsigned char *s = data;
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

#define FUZZ_HASH_INIT 0xcbf29ce484222325ULL

/* splitmix64: a tiny PRNG, seeded from the input so a run is reproducible
 * from the input file alone. */
static inline uint64_t fuzz_rand(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Strict UTF-8 (RFC 3629): no overlong forms, no surrogates, nothing past
 * U+10FFFF. JSON sent between systems must be UTF-8 (RFC 8259 8.1). */
static inline bool fuzz_utf8_valid(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        size_t len;
        uint32_t cp, min;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xc2 && c <= 0xdf) {
            len = 2, cp = c & 0x1f, min = 0x80;
        } else if (c >= 0xe0 && c <= 0xef) {
            len = 3, cp = c & 0x0f, min = 0x800;
        } else if (c >= 0xf0 && c <= 0xf4) {
            len = 4, cp = c & 0x07, min = 0x10000;
        } else {
            return false;
        }
        if (n - i < len)
            return false;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += len;
    }
    return true;
}

#endif
