/* The documents cannot silently rot: every relative link and every
 * `file:line` reference in LECTURE.md and README.md must point at a file
 * that exists and, for a line, at a line that exists; and every table is
 * whole (figures pasted from a terminal once brought progress lines into
 * the middle of tables, which then rendered as broken text). */
#include <check.h>
#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "harness.h"

static char *read_text(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    char *buf = malloc((size_t)n + 1);
    size_t got = buf ? fread(buf, 1, (size_t)n, f) : 0;
    fclose(f);
    if (buf)
        buf[got] = '\0';
    return buf;
}

static long count_lines(const char *path)
{
    char *text = read_text(path);
    if (!text)
        return -1;
    long lines = 0;
    for (const char *p = text; *p; p++)
        lines += *p == '\n';
    if (*text && text[strlen(text) - 1] != '\n')
        lines++;
    free(text);
    return lines;
}

static int exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* Checks "path", "path#L12" or "path:12"; complains through Check. */
static int check_target(const char *doc, const char *target, size_t len)
{
    char path[512];
    if (len == 0 || len >= sizeof path)
        return 0;
    memcpy(path, target, len);
    path[len] = '\0';
    long line = 0;
    char *anchor = strstr(path, "#L");
    char *colon = strrchr(path, ':');
    if (anchor) {
        line = atol(anchor + 2);
        *anchor = '\0';
    } else if (strchr(path, '#')) {
        *strchr(path, '#') = '\0'; /* a heading anchor: the file must exist */
    } else if (colon && isdigit((unsigned char)colon[1])) {
        line = atol(colon + 1);
        *colon = '\0';
    }
    if (!*path)
        return 0; /* "#section" inside the same document */
    if (!exists(path)) {
        fprintf(stderr, "%s: broken reference to %s\n", doc, path);
        return 1;
    }
    if (line > 0 && line > count_lines(path)) {
        fprintf(stderr, "%s: %s has no line %ld\n", doc, path, line);
        return 1;
    }
    return 0;
}

/* Markdown links "](target)" that are not URLs, and `path:line` spans. */
static int check_document(const char *doc, int *checked)
{
    char *text = read_text(doc);
    ck_assert_msg(text != NULL, "%s is missing", doc);
    int broken = 0;
    for (char *p = strstr(text, "]("); p; p = strstr(p + 1, "](")) {
        char *start = p + 2, *end = strchr(start, ')');
        if (!end || strncmp(start, "http", 4) == 0 ||
            strncmp(start, "mailto:", 7) == 0)
            continue;
        broken += check_target(doc, start, (size_t)(end - start));
        (*checked)++;
    }
    for (char *p = strchr(text, '`'); p; p = strchr(p + 1, '`')) {
        char *start = p + 1, *end = strchr(start, '`');
        if (!end)
            break;
        size_t len = (size_t)(end - start);
        char *colon = memchr(start, ':', len);
        /* Only spans that look like "dir/file.c:123". */
        if (colon && colon > start && colon + 1 < end &&
            isdigit((unsigned char)colon[1]) && memchr(start, '/', len) &&
            !memchr(start, ' ', len) && strncmp(start, "http", 4) != 0) {
            broken += check_target(doc, start, len);
            (*checked)++;
        }
        p = end;
    }
    free(text);
    return broken;
}

/* Cells in a table row: its '|' count less one (rows start and end with
 * '|'; none of ours has an escaped \| in a cell). */
static int cells(const char *line, size_t len)
{
    int bars = 0;
    for (size_t i = 0; i < len; i++)
        bars += line[i] == '|';
    return bars - 1;
}

/* A table is a header row, a |---| row, then rows of as many cells, ended
 * by a blank line. Returns the number of broken tables; fills *tables. */
static int check_tables(const char *doc, int *tables)
{
    char *text = read_text(doc);
    ck_assert_msg(text != NULL, "cannot read %s", doc);
    int broken = 0, want = 0, lineno = 0;
    bool in_code = false;
    for (char *line = text; *line;) {
        char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        lineno++;
        if (len >= 3 && strncmp(line, "```", 3) == 0)
            in_code = !in_code;
        bool row = !in_code && len > 1 && line[0] == '|' &&
                   line[len - 1] == '|';
        if (want) { /* inside a table */
            if (row && cells(line, len) != want) {
                fprintf(stderr, "%s:%d: %d cells, the header has %d\n", doc,
                        lineno, cells(line, len), want);
                broken++;
            } else if (!row && len) {
                fprintf(stderr, "%s:%d: a table must end with a blank line: "
                                "%.*s\n", doc, lineno, (int)len, line);
                broken++;
            }
            if (!row)
                want = 0;
        } else if (row && nl && strncmp(nl + 1, "|---", 4) == 0) {
            want = cells(line, len);
            (*tables)++;
        }
        line = nl ? nl + 1 : line + len;
    }
    free(text);
    return broken;
}

START_TEST(tables_are_whole)
{
    static const char *const docs[] = {"README.md", "LECTURE.md",
                                       "bench/README.md"};
    for (size_t i = 0; i < sizeof docs / sizeof docs[0]; i++) {
        int tables = 0;
        ck_assert_msg(check_tables(docs[i], &tables) == 0, "%s: broken "
                      "tables (see above)", docs[i]);
        ck_assert_int_gt(tables, 0);
    }
}
END_TEST

START_TEST(readme_links_resolve)
{
    int checked = 0;
    ck_assert_int_eq(check_document("README.md", &checked), 0);
    ck_assert_int_gt(checked, 0);
}
END_TEST

START_TEST(lecture_links_resolve)
{
    int checked = 0;
    ck_assert_int_eq(check_document("LECTURE.md", &checked), 0);
    ck_assert_int_gt(checked, 10);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("docs");
    TCase *tc = tcase_create("links");
    tcase_add_test(tc, readme_links_resolve);
    tcase_add_test(tc, lecture_links_resolve);
    tcase_add_test(tc, tables_are_whole);
    suite_add_tcase(s, tc);
    return harness_run(s);
}
