/* json: see json.h. */
#include "json.h"

#include <stdlib.h>
#include <string.h>

#include "utf8.h"

const char *json_skip_ws(const char *s, const char *end)
{
    while (s < end && (unsigned char)*s <= 32)
        s++;
    return s;
}

static const char *skip_string(const char *s, const char *end)
{
    for (s++; s < end && *s != '"'; s++)
        if (*s == '\\')
            s++;
    return s < end ? s + 1 : end;
}

static const char *skip_value(const char *s, const char *end)
{
    if (s >= end)
        return end;
    if (*s == '"')
        return skip_string(s, end);
    if (*s == '{' || *s == '[') {
        int depth = 0;
        while (s < end) {
            if (*s == '"') {
                s = skip_string(s, end);
                continue;
            }
            if (*s == '{' || *s == '[')
                depth++;
            else if ((*s == '}' || *s == ']') && --depth == 0)
                return s + 1;
            s++;
        }
        return end;
    }
    while (s < end && (unsigned char)*s > 32 && *s != ',' && *s != '}' &&
           *s != ']')
        s++;
    return s;
}

/* The raw text of the value of the index-th member of the top-level object
 * in [s, end). 0, or -1 if the text is not shaped as expected. */
static int member_span(const char *s, const char *end, int index,
                       const char **vstart, const char **vend)
{
    if (end - s >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0)
        s += 3; /* cJSON skips a UTF-8 byte order mark too */
    s = json_skip_ws(s, end);
    if (s >= end || *s != '{')
        return -1;
    s++;
    for (int k = 0;; k++) {
        s = json_skip_ws(s, end);
        if (s >= end || *s != '"')
            return -1;
        s = json_skip_ws(skip_string(s, end), end);
        if (s >= end || *s != ':')
            return -1;
        s = json_skip_ws(s + 1, end);
        const char *v = s;
        s = skip_value(s, end);
        if (k == index) {
            *vstart = v;
            *vend = s;
            return 0;
        }
        s = json_skip_ws(s, end);
        if (s >= end || *s != ',')
            return -1;
        s++;
    }
}

/* Appends [s, end) to out with whitespace outside strings removed. */
static char *append_minified(char *out, const char *s, const char *end)
{
    bool in_string = false;
    for (; s < end; s++) {
        if (in_string) {
            *out++ = *s;
            if (*s == '\\' && s + 1 < end)
                *out++ = *++s;
            else if (*s == '"')
                in_string = false;
        } else if ((unsigned char)*s > 32) {
            *out++ = *s;
            in_string = *s == '"';
        }
    }
    return out;
}

int json_depth(const char *s, size_t len)
{
    int depth = 0, max = 0;
    const char *end = s + len;
    while (s < end) {
        if (*s == '"') {
            s = skip_string(s, end);
            continue;
        }
        if (*s == '{' || *s == '[') {
            if (++depth > max)
                max = depth;
        } else if (*s == '}' || *s == ']') {
            depth--;
        }
        s++;
    }
    return max;
}

/* Position of the first member named key in a cJSON object (the one
 * cJSON_GetObjectItemCaseSensitive returns), or -1. */
static int member_index(const cJSON *obj, const char *key)
{
    int i = 0;
    for (const cJSON *c = obj->child; c; c = c->next, i++)
        if (c->string && strcmp(c->string, key) == 0)
            return i;
    return -1;
}


/* True if [s, end) is UTF-8 with no raw control byte inside a string. */
static bool span_clean(const char *s, const char *end)
{
    if (!utf8_valid((const unsigned char *)s, (size_t)(end - s)))
        return false;
    bool in_string = false;
    for (; s < end; s++) {
        unsigned char c = (unsigned char)*s;
        if (in_string && c < 0x20)
            return false;
        if (in_string && c == '\\')
            s++; /* an escape: the next byte is its letter */
        else if (c == '"')
            in_string = !in_string;
    }
    return true;
}

const char *json_unclean_member(const char *body, size_t len,
                                const cJSON *root)
{
    static const char *const names[] = {"request_id", "breakdown"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        const char *s, *e;
        if (member_span(body, body + len, member_index(root, names[i]), &s,
                        &e) < 0 ||
            !span_clean(s, e))
            return names[i];
    }
    return NULL;
}

char *json_stored_result(const char *body, size_t len, const cJSON *root,
                         bool *nomem)
{
    const char *end = body + len;
    const char *id_s, *id_e, *bd_s, *bd_e;
    *nomem = false;
    if (member_span(body, end, member_index(root, "request_id"), &id_s,
                    &id_e) < 0 ||
        member_span(body, end, member_index(root, "breakdown"), &bd_s,
                    &bd_e) < 0)
        return NULL;
    static const char k_id[] = "{\"request_id\":", k_bd[] = ",\"breakdown\":";
    char *json = malloc(sizeof k_id + sizeof k_bd + (size_t)(id_e - id_s) +
                        (size_t)(bd_e - bd_s) + 2);
    if (!json) {
        *nomem = true;
        return NULL;
    }
    char *o = json;
    memcpy(o, k_id, sizeof k_id - 1);
    o = append_minified(o + sizeof k_id - 1, id_s, id_e);
    memcpy(o, k_bd, sizeof k_bd - 1);
    o = append_minified(o + sizeof k_bd - 1, bd_s, bd_e);
    *o++ = '}';
    *o = '\0';
    return json;
}
