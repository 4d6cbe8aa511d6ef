/* utf8: see utf8.h. */
#include "utf8.h"

size_t utf8_char_len(const unsigned char *s, size_t n, unsigned *cp_out)
{
    if (n == 0)
        return 0;
    unsigned char c = s[0];
    size_t len;
    unsigned cp, min;
    if (c < 0x80) {
        len = 1, cp = c, min = 0;
    } else if (c >= 0xc2 && c <= 0xdf) {
        len = 2, cp = c & 0x1fu, min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3, cp = c & 0x0fu, min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4, cp = c & 0x07u, min = 0x10000;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t k = 1; k < len; k++) {
        if ((s[k] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[k] & 0x3fu);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    if (cp_out)
        *cp_out = cp;
    return len;
}

bool utf8_valid(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        if (s[i] < 0x80) { /* ASCII, most of a JSON body: no call */
            i++;
            continue;
        }
        size_t len = utf8_char_len(s + i, n - i, NULL);
        if (len == 0)
            return false;
        i += len;
    }
    return true;
}
