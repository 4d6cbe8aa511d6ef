/* LECTURE.ru.md follows LECTURE.md (issue 18): the same "## N." sections
 * with the same number of "###" subsections each, the same fenced blocks
 * and HTML comments byte for byte in the same order, the same figures in
 * the same table cells, and both link the glossary. When the English
 * lecture changes, this fails, naming the section and the first line that
 * differs, until the Russian one follows. Prose is free: only what a
 * reader copies or compares is held identical. */
#include <check.h>
#include <ctype.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

enum { MAX_ITEMS = 1024 };

/* One thing that must match: a section heading, a fenced block, an HTML
 * comment or a table row. `text` points into the document (a whole line
 * or, for blocks and comments, every line of it); `key` is what is
 * compared: the text itself, except for a table row, whose key is the
 * digit runs of each cell (the words around them are translated). */
enum kind { SECTION, FENCE, COMMENT, ROW, NKINDS };

struct item {
    int section;            /* index of the enclosing "## " heading, -1 before any */
    int line;               /* 1-based line of its first line */
    int table;              /* for ROW: which table, counted from 0 */
    int h3;                 /* for SECTION: how many "###" headings it has */
    const char *text;
    size_t len;
    char key[512];
};

struct outline {
    const char *name;
    struct item items[NKINDS][MAX_ITEMS];
    int n[NKINDS];
};

static const char *const kind_name[NKINDS] = {
    "section", "fenced block", "HTML comment", "table row"};

static size_t line_len(const char *p)
{
    const char *nl = strchr(p, '\n');
    return nl ? (size_t)(nl - p) : strlen(p);
}

static const char *next_line(const char *p)
{
    const char *nl = strchr(p, '\n');
    return nl ? nl + 1 : p + strlen(p);
}

static const char *skip_blanks(const char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

static struct item *add(struct outline *o, enum kind k, int section,
                        int line, const char *text, size_t len)
{
    if (o->n[k] == MAX_ITEMS)
        return NULL;
    struct item *it = &o->items[k][o->n[k]++];
    memset(it, 0, sizeof *it);
    it->section = section;
    it->line = line;
    it->text = text;
    it->len = len;
    return it;
}

/* "| 100 sync | 10.04 s |" -> "100|10 04|": the digit runs of each cell. */
static void row_key(const char *p, size_t len, char *key, size_t cap)
{
    size_t k = 0;
    bool in_digits = false, cell_has = false;
    for (size_t i = 1; i < len && k + 2 < cap; i++) {
        if (p[i] == '|') {
            key[k++] = '|';
            in_digits = cell_has = false;
        } else if (isdigit((unsigned char)p[i])) {
            if (!in_digits && cell_has)
                key[k++] = ' ';
            key[k++] = p[i];
            in_digits = cell_has = true;
        } else {
            in_digits = false;
        }
    }
    key[k] = '\0';
}

/* Splits a document into its items; returns false if it has more than
 * MAX_ITEMS of a kind (a sign the parser is fed something else). */
static bool outline_parse(struct outline *o, const char *name, const char *text)
{
    memset(o->n, 0, sizeof o->n);
    o->name = name;
    int line = 1, section = -1, table = -1;
    bool in_table = false;
    const char *p = text;
    while (*p) {
        const char *body = skip_blanks(p);
        size_t len = line_len(p);
        const char *end = next_line(p);
        struct item *it = NULL;
        if (strncmp(body, "```", 3) == 0) {
            /* A fence runs to the next line that is only a fence. */
            while (*end) {
                const char *q = skip_blanks(end);
                size_t ql = line_len(end) - (size_t)(q - end);
                end = next_line(end);
                if (ql == 3 && strncmp(q, "```", 3) == 0)
                    break;
            }
            it = add(o, FENCE, section, line, p, (size_t)(end - p));
        } else if (strncmp(body, "<!--", 4) == 0) {
            /* A comment runs to the line holding its "-->". */
            const char *close = strstr(body, "-->");
            end = close ? next_line(close) : p + strlen(p);
            it = add(o, COMMENT, section, line, p, (size_t)(end - p));
        } else if (strncmp(p, "## ", 3) == 0) {
            section = o->n[SECTION];
            it = add(o, SECTION, section, line, p, len);
            if (it)
                snprintf(it->key, sizeof it->key, "%d", atoi(p + 3));
        } else if (strncmp(p, "### ", 4) == 0 && section >= 0) {
            o->items[SECTION][section].h3++;
        } else if (*p == '|') {
            if (!in_table)
                table++;
            it = add(o, ROW, section, line, p, len);
            if (it) {
                it->table = table;
                row_key(p, len, it->key, sizeof it->key);
            }
        }
        if (it == NULL && (strncmp(body, "```", 3) == 0 ||
                           strncmp(body, "<!--", 4) == 0 ||
                           strncmp(p, "## ", 3) == 0 || *p == '|'))
            return false;
        in_table = *p == '|';
        for (const char *c = p; c < end; c++)
            line += *c == '\n';
        p = end;
    }
    return true;
}

static const char *section_title(const struct outline *o, int section)
{
    return section < 0 ? "(before the first section)" : o->items[SECTION][section].text;
}

static size_t title_len(const struct outline *o, int section)
{
    return section < 0 ? strlen("(before the first section)")
                       : o->items[SECTION][section].len;
}

/* Names where a difference is, and the first line of it on each side. */
static void show_difference(char **msg, const struct outline *a,
                            const struct item *x, const struct outline *b,
                            const struct item *y, enum kind k, int index)
{
    int sec = x ? x->section : y->section;
    const struct outline *o = x ? a : b;
    harness_appendf(msg, "%s #%d differs in section \"%.*s\"\n", kind_name[k], index + 1,
        (int)title_len(o, sec), section_title(o, sec));
    /* First differing line: walk both texts line by line. */
    const char *p = x ? x->text : "", *q = y ? y->text : "";
    const char *pe = x ? x->text + x->len : p, *qe = y ? y->text + y->len : q;
    int off = 0;
    while (p < pe && q < qe) {
        size_t pl = line_len(p), ql = line_len(q);
        if (pl > (size_t)(pe - p))
            pl = (size_t)(pe - p);
        if (ql > (size_t)(qe - q))
            ql = (size_t)(qe - q);
        if (pl != ql || memcmp(p, q, pl) != 0 ||
            (k == ROW && strcmp(x->key, y->key) != 0))
            break;
        p = next_line(p);
        q = next_line(q);
        off++;
    }
    if (x)
        harness_appendf(msg, "  %s:%d: %.*s\n", a->name, x->line + off,
            (int)(p < pe ? line_len(p) : 0), p < pe ? p : "(ends here)");
    else
        harness_appendf(msg, "  %s: (missing)\n", a->name);
    if (y)
        harness_appendf(msg, "  %s:%d: %.*s\n", b->name, y->line + off,
            (int)(q < qe ? line_len(q) : 0), q < qe ? q : "(ends here)");
    else
        harness_appendf(msg, "  %s: (missing)\n", b->name);
    if (k == ROW && x && y)
        harness_appendf(msg, "  figures per cell: \"%s\" versus \"%s\"\n", x->key, y->key);
}

static bool same(const struct item *x, const struct item *y, enum kind k)
{
    switch (k) {
    case SECTION:
        return strcmp(x->key, y->key) == 0 && x->h3 == y->h3;
    case ROW:
        return x->table == y->table && strcmp(x->key, y->key) == 0;
    default:
        return x->len == y->len && memcmp(x->text, y->text, x->len) == 0;
    }
}

/* NULL when `b` follows `a`; otherwise a message naming the first
 * difference of each kind (the caller frees it). */
static char *lecture_diff(const char *a_name, const char *a_text,
                          const char *b_name, const char *b_text)
{
    static struct outline a, b;
    char *msg = NULL;
    if (!outline_parse(&a, a_name, a_text) || !outline_parse(&b, b_name, b_text)) {
        harness_appendf(&msg, "more than %d items of a kind: not a lecture?\n", MAX_ITEMS);
        return msg;
    }
    for (enum kind k = 0; k < NKINDS; k++) {
        int n = a.n[k] > b.n[k] ? a.n[k] : b.n[k];
        for (int i = 0; i < n; i++) {
            const struct item *x = i < a.n[k] ? &a.items[k][i] : NULL;
            const struct item *y = i < b.n[k] ? &b.items[k][i] : NULL;
            if (x && y && same(x, y, k))
                continue;
            if (k == SECTION && x && y && strcmp(x->key, y->key) == 0)
                harness_appendf(&msg, "section \"%.*s\" has %d \"###\" headings in %s, "
                    "%d in %s\n", (int)x->len, x->text, x->h3, a_name, y->h3,
                    b_name);
            else
                show_difference(&msg, &a, x, &b, y, k, i);
            break;
        }
    }
    return msg;
}

START_TEST(russian_lecture_follows_english)
{
    char *en = harness_read_file("LECTURE.md"), *ru = harness_read_file("LECTURE.ru.md");
    ck_assert_msg(en != NULL, "cannot read LECTURE.md (run from the top)");
    ck_assert_msg(ru != NULL, "cannot read LECTURE.ru.md");
    char *msg = lecture_diff("LECTURE.md", en, "LECTURE.ru.md", ru);
    ck_assert_msg(msg == NULL, "LECTURE.ru.md no longer follows LECTURE.md:\n%s", msg);
    free(en);
    free(ru);
}
END_TEST

START_TEST(both_lectures_link_the_glossary)
{
    static const char *const docs[] = {"LECTURE.md", "LECTURE.ru.md"};
    FILE *g = fopen("docs/glossary.md", "r");
    ck_assert_msg(g != NULL, "docs/glossary.md is missing");
    fclose(g);
    for (size_t i = 0; i < sizeof docs / sizeof docs[0]; i++) {
        char *text = harness_read_file(docs[i]);
        ck_assert_msg(text != NULL, "cannot read %s", docs[i]);
        ck_assert_msg(strstr(text, "](docs/glossary.md)") != NULL,
                      "%s does not link docs/glossary.md", docs[i]);
        free(text);
    }
}
END_TEST

/* The checker itself: a small English lecture, and Russian versions that
 * each break one rule, which it must report with the section's title. */
static const char en_doc[] =
    "# T\n\nintro\n\n## 1. One\n\n### The idea\n\ntext\n\n"
    "<!-- doc-test: run id=s1-x timeout=5\nexpect: ^a\n-->\n"
    "```sh\necho a\necho b\n```\n\n"
    "| what | time |\n|---|---|\n| 100 sync | 10.04 s |\n\n"
    "## 2. Two\n\n   ```c\n   int x;\n   ```\n";

static const char ru_doc[] =
    "# Т\n\nвведение\n\n## 1. Один\n\n### Идея\n\nтекст\n\n"
    "<!-- doc-test: run id=s1-x timeout=5\nexpect: ^a\n-->\n"
    "```sh\necho a\necho b\n```\n\n"
    "| что | время |\n|---|---|\n| 100 синхронных | 10.04 с |\n\n"
    "## 2. Два\n\n   ```c\n   int x;\n   ```\n";

/* ru_doc with its first `from` replaced by `to`. */
static char *edit(const char *from, const char *to)
{
    const char *at = strstr(ru_doc, from);
    ck_assert_ptr_nonnull(at);
    char *out = NULL;
    ck_assert_int_ge(asprintf(&out, "%.*s%s%s", (int)(at - ru_doc), ru_doc, to,
                              at + strlen(from)), 0);
    return out;
}

static void expect_caught(const char *from, const char *to,
                          const char *section, const char *shown)
{
    char *ru = edit(from, to);
    char *msg = lecture_diff("en", en_doc, "ru", ru);
    ck_assert_msg(msg != NULL, "replacing \"%s\" by \"%s\" went unnoticed", from, to);
    ck_assert_msg(strstr(msg, section) != NULL, "message does not name \"%s\":\n%s",
                  section, msg);
    ck_assert_msg(strstr(msg, shown) != NULL, "message does not show \"%s\":\n%s",
                  shown, msg);
    free(msg);
    free(ru);
}

START_TEST(checker_accepts_a_faithful_translation)
{
    char *msg = lecture_diff("en", en_doc, "ru", ru_doc);
    ck_assert_msg(msg == NULL, "%s", msg);
}
END_TEST

START_TEST(checker_catches_each_kind_of_drift)
{
    expect_caught("echo b", "echo c", "## 1. One", "ru:16: echo c");
    expect_caught("expect: ^a", "expect: ^b", "## 1. One", "ru:12: expect: ^b");
    expect_caught("10.04 с", "10.4 с", "## 1. One", "\"100|10 04|\" versus \"100|10 4|\"");
    expect_caught("### Идея\n", "", "## 1. One", "1 \"###\" headings in en, 0 in ru");
    expect_caught("## 2. Два", "## 3. Два", "## 2. Two", "ru:23: ## 3. Два");
    expect_caught("   int x;", "    int x;", "## 2. Two", "ru:26:     int x;");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("lecture_sync");
    TCase *tc = tcase_create("sync");
    tcase_add_test(tc, checker_accepts_a_faithful_translation);
    tcase_add_test(tc, checker_catches_each_kind_of_drift);
    tcase_add_test(tc, russian_lecture_follows_english);
    tcase_add_test(tc, both_lectures_link_the_glossary);
    suite_add_tcase(s, tc);
    return harness_run(s);
}
