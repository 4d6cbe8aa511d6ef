/* utf8: strict UTF-8, the one check every text that leaves a server passes:
 * JSON strings (RFC 8259 8.1) and log lines. Strict means no overlong
 * forms, no surrogates, nothing past U+10FFFF. */
#ifndef COMMON_UTF8_H
#define COMMON_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/* Length (1-4) of the valid UTF-8 sequence that starts s (n bytes
 * available), or 0 if none does. *cp gets its code point if cp != NULL. */
size_t utf8_char_len(const unsigned char *s, size_t n, unsigned *cp);

/* True if all n bytes are valid UTF-8. */
bool utf8_valid(const unsigned char *s, size_t n);

#endif
