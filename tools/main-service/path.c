/* path: see path.h. */
#include "path.h"

#include <string.h>

#include "opts.h"

const char *result_id_in(const char *path)
{
    static const char prefix[] = RESULT_PATH "/";
    if (strncmp(path, prefix, sizeof prefix - 1) != 0)
        return NULL;
    const char *id = path + sizeof prefix - 1;
    return *id && !strchr(id, '/') ? id : NULL;
}

int percent_decode(const char *src, char *dst)
{
    for (; *src; src++) {
        if (*src != '%') {
            *dst++ = *src;
            continue;
        }
        int v = 0;
        for (int k = 1; k <= 2; k++) {
            char c = src[k];
            int d = c >= '0' && c <= '9'   ? c - '0'
                    : c >= 'a' && c <= 'f' ? c - 'a' + 10
                    : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                           : -1;
            if (d < 0)
                return -1;
            v = v * 16 + d;
        }
        if (v == 0)
            return -1;
        *dst++ = (char)v;
        src += 2;
    }
    *dst = '\0';
    return 0;
}

int query_wait_ms(const char *query, int *ms)
{
    *ms = -1;
    for (const char *p = query; *p;) {
        size_t len = strcspn(p, "&");
        if (len > 8 && memcmp(p, "wait_ms=", 8) == 0) {
            long v = 0;
            for (size_t i = 8; i < len; i++) {
                if (p[i] < '0' || p[i] > '9' || v > MS_MAX_WAIT_MS)
                    return -1;
                v = v * 10 + (p[i] - '0');
            }
            if (v > MS_MAX_WAIT_MS)
                return -1;
            *ms = (int)v;
        } else if (len == 7 && memcmp(p, "wait_ms", 7) == 0) {
            return -1; /* "wait_ms" or "wait_ms=" with no number */
        } else if (len == 8 && memcmp(p, "wait_ms=", 8) == 0) {
            return -1;
        }
        p += len;
        if (*p == '&')
            p++;
    }
    return 0;
}
