/* LECTURE.ru.md follows LECTURE.md: the same "## N." sections with the
 * same number of "###" subsections each, the same fenced blocks and HTML
 * comments in the same order, the same figures in the same table cells,
 * and both link the glossary. What a reader copies or runs is held
 * identical byte for byte: commands, code, output, the doc-test markers.
 * What a reader only reads is free: prose, table headers and labels, and
 * the labels of a Mermaid diagram, whose structure (the diagram's kind,
 * its nodes, arrows and blocks) must still match line by line. When the
 * English lecture changes, this fails, naming the section and the first
 * line that differs, until the Russian one follows.
 *
 * And the Russian lecture writes numbers the Russian way: a comma is its
 * decimal sign, so "32,440" in its prose reads as thirty-two and a bit.
 * Thousands are grouped with a space (U+202F, a narrow no-break space, in
 * the figures of tables and prose); commands and code stay as they are. */
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

/* The bytes of a no-break space that groups thousands ("10 000" with
 * U+202F, U+00A0 or U+2009 between the digits), 0 if p holds none. */
static size_t group_space(const char *p)
{
    if ((unsigned char)p[0] == 0xC2 && (unsigned char)p[1] == 0xA0)
        return 2; /* U+00A0 */
    if ((unsigned char)p[0] == 0xE2 && (unsigned char)p[1] == 0x80 &&
        ((unsigned char)p[2] == 0xAF || (unsigned char)p[2] == 0x89))
        return 3; /* U+202F, U+2009 */
    return 0;
}

/* "| 100 sync | 10.04 s |" -> "100|10 04|": the digit runs of each cell.
 * A group space between a digit and exactly three more joins them, so
 * the Russian "193 880" (U+202F) has the key of the English "193880". */
static void row_key(const char *p, size_t len, char *key, size_t cap)
{
    size_t k = 0;
    bool in_digits = false, cell_has = false;
    for (size_t i = 1; i < len && k + 2 < cap; i++) {
        size_t g = in_digits ? group_space(p + i) : 0;
        if (g && i + g + 3 <= len && isdigit((unsigned char)p[i + g]) &&
            isdigit((unsigned char)p[i + g + 1]) &&
            isdigit((unsigned char)p[i + g + 2]) &&
            (i + g + 3 == len || !isdigit((unsigned char)p[i + g + 3]))) {
            i += g - 1; /* the digits that follow continue the run */
        } else if (p[i] == '|') {
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

/* A Mermaid line without its labels: what a diagram says, not how its
 * boxes are captioned. "A[label] -->|label| B{label}" -> "A -->B",
 * "P->>C: label" -> "P->>C", "participant P as label" -> "participant
 * P", "alt label" -> "alt"; runs of blanks become one. */
static void mermaid_key(const char *p, size_t len, char *key, size_t cap)
{
    static const char *const blocks[] = {"alt", "else", "opt", "loop", "par",
        "and", "critical", "break", "rect", "end"};
    while (len && (*p == ' ' || *p == '\t'))
        p++, len--;
    while (len && (p[len - 1] == ' ' || p[len - 1] == '\t'))
        len--;
    for (size_t b = 0; b < sizeof blocks / sizeof blocks[0]; b++) {
        size_t n = strlen(blocks[b]);
        if (len >= n && strncmp(p, blocks[b], n) == 0 &&
            (len == n || p[n] == ' ')) {
            snprintf(key, cap, "%s", blocks[b]);
            return;
        }
    }
    size_t k = 0, stop = len;
    if (len > 12 && strncmp(p, "participant ", 12) == 0) {
        const char *as = strstr(p, " as ");
        if (as && as < p + len)
            stop = (size_t)(as - p);
    }
    for (size_t i = 0; i < stop && k + 1 < cap; i++) {
        char c = p[i], close = c == '[' ? ']' : c == '{' ? '}' :
                               c == '(' ? ')' : c == '|' ? '|' : 0;
        if (c == '[' && i + 2 < stop && p[i + 1] == '*' && p[i + 2] == ']') {
            close = 0; /* "[*]", a state diagram's start or end */
        }
        if (close) { /* a node's or an edge's label: skip to its end */
            int depth = 1;
            while (++i < stop && depth > 0)
                depth += p[i] == close ? -1 : (p[i] == c && c != '|');
            i--;
            continue;
        }
        if (c == ':' && !(i + 1 < stop && p[i + 1] == ':'))
            break; /* the message or transition label */
        if ((c == ' ' || c == '\t') && (k == 0 || key[k - 1] == ' '))
            continue;
        key[k++] = c == '\t' ? ' ' : c;
    }
    while (k && key[k - 1] == ' ')
        k--;
    key[k] = '\0';
}

static bool is_mermaid(const char *fence)
{
    return strncmp(skip_blanks(fence), "```mermaid", 10) == 0;
}

/* Whether two lines say the same: byte for byte, or, inside a Mermaid
 * fence, the same without their labels. */
static bool same_line(const char *a, size_t al, const char *b, size_t bl,
                      bool mermaid)
{
    if (!mermaid)
        return al == bl && memcmp(a, b, al) == 0;
    char ka[512], kb[512];
    mermaid_key(a, al, ka, sizeof ka);
    mermaid_key(b, bl, kb, sizeof kb);
    return strcmp(ka, kb) == 0;
}

/* Compares two fences line by line; the 0-based index of the first line
 * that differs, or -1 if none does. */
static int fence_difference(const struct item *x, const struct item *y)
{
    bool mermaid = is_mermaid(x->text) && is_mermaid(y->text);
    const char *p = x->text, *q = y->text;
    const char *pe = p + x->len, *qe = q + y->len;
    for (int line = 0;; line++) {
        if (p >= pe || q >= qe)
            return p >= pe && q >= qe ? -1 : line;
        size_t pl = line_len(p), ql = line_len(q);
        if (pl > (size_t)(pe - p))
            pl = (size_t)(pe - p);
        if (ql > (size_t)(qe - q))
            ql = (size_t)(qe - q);
        if (!same_line(p, pl, q, ql, mermaid))
            return line;
        p = next_line(p);
        q = next_line(q);
    }
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
    int off = 0, stop = k == FENCE && x && y ? fence_difference(x, y) : -1;
    while (p < pe && q < qe) {
        size_t pl = line_len(p), ql = line_len(q);
        if (pl > (size_t)(pe - p))
            pl = (size_t)(pe - p);
        if (ql > (size_t)(qe - q))
            ql = (size_t)(qe - q);
        if (off == stop || (k != FENCE && (pl != ql || memcmp(p, q, pl) != 0)) ||
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
    case FENCE:
        return fence_difference(x, y) < 0;
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

/* NULL when the prose of a Russian text (outside fences, HTML comments,
 * tables, `code` spans and link targets) has no English thousands comma,
 * `\d,\d{3}`; otherwise a message naming each line that has one (the
 * caller frees it). Tables are left to the figures-per-cell comparison:
 * the English tables write no thousands commas, so "10,000" in a Russian
 * cell has other digit runs than "10000", and a column of decimals such
 * as "0,967" is no thousand there. */
static char *english_thousands(const char *name, const char *text)
{
    char *msg = NULL;
    int line = 1;
    bool in_fence = false, in_comment = false;
    for (const char *p = text; *p; p = next_line(p), line++) {
        const char *body = skip_blanks(p);
        size_t len = line_len(p);
        if (in_comment) {
            const char *close = strstr(p, "-->");
            in_comment = !close || close > p + len;
            continue;
        }
        if (in_fence) { /* a fence ends at a line that is only a fence */
            in_fence = !(strncmp(body, "```", 3) == 0 && line_len(body) == 3);
            continue;
        }
        if (strncmp(body, "```", 3) == 0) {
            in_fence = true;
            continue;
        }
        if (strncmp(body, "<!--", 4) == 0) {
            const char *close = strstr(body, "-->");
            in_comment = !close || close > p + len;
            continue;
        }
        if (*p == '|')
            continue;
        bool in_code = false, in_target = false;
        for (size_t i = 0; i < len; i++) {
            if (p[i] == '`')
                in_code = !in_code;
            else if (!in_code && p[i] == ']' && i + 1 < len && p[i + 1] == '(')
                in_target = true;
            else if (in_target && p[i] == ')')
                in_target = false;
            else if (!in_code && !in_target && p[i] == ',' && i > 0 &&
                     isdigit((unsigned char)p[i - 1]) && i + 3 < len &&
                     isdigit((unsigned char)p[i + 1]) &&
                     isdigit((unsigned char)p[i + 2]) &&
                     isdigit((unsigned char)p[i + 3])) {
                harness_appendf(&msg, "  %s:%d: %.*s\n", name, line, (int)len, p);
                break;
            }
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
    "## 2. Two\n\n   ```c\n   int x;\n   ```\n\n"
    "```mermaid\nsequenceDiagram\n    participant P as parent\n"
    "    P->>C: fork()\n    alt full\n        P->>P: write 503\n    end\n```\n\n"
    "```mermaid\nflowchart TD\n    A[wait: the timer] -->|ready| B{next event}\n"
    "    [*] --> READ: accepted (init)\n```\n\n"
    "| clients | GET /s |\n|---|---|\n| 5000 | 193880 |\n";

static const char ru_doc[] =
    "# Т\n\nвведение\n\n## 1. Один\n\n### Идея\n\nтекст\n\n"
    "<!-- doc-test: run id=s1-x timeout=5\nexpect: ^a\n-->\n"
    "```sh\necho a\necho b\n```\n\n"
    "| что | время |\n|---|---|\n| 100 синхронных | 10.04 с |\n\n"
    "## 2. Два\n\n   ```c\n   int x;\n   ```\n\n"
    "```mermaid\nsequenceDiagram\n    participant P as родитель\n"
    "    P->>C: fork()\n    alt всё занято\n        P->>P: пишет 503\n    end\n```\n\n"
    "```mermaid\nflowchart TD\n    A[ждать: таймер] -->|готов| B{следующее событие}\n"
    "    [*] --> READ: принято (init)\n```\n\n"
    "| клиентов | GET /с |\n|---|---|\n| 5000 | 193\u202F880 |\n";

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
    /* A diagram's labels are free, its nodes and arrows are not. */
    expect_caught("P->>C: fork()", "C->>P: fork()", "## 2. Two", "ru:32:     C->>P");
    expect_caught("B{следующее", "D{следующее", "## 2. Two", "ru:40:     A[ждать");
    expect_caught("[*] --> READ", "[*] --> WRITE", "## 2. Two", "ru:41:     [*] --> WRITE");
    expect_caught("    alt всё", "    opt всё", "## 2. Two", "ru:33:     opt");
    /* A figure is compared whatever its grouping; a plain space splits it. */
    expect_caught("193\u202F880", "193\u202F890", "## 2. Two",
                  "\"5000|193880|\" versus \"5000|193890|\"");
    expect_caught("193\u202F880", "193 880", "## 2. Two",
                  "\"5000|193880|\" versus \"5000|193 880|\"");
    /* An English thousands comma in a Russian cell is caught here. */
    expect_caught("193\u202F880", "193,880", "## 2. Two",
                  "\"5000|193880|\" versus \"5000|193 880|\"");
}
END_TEST

/* The Russian-number rule itself: English thousands commas in prose and
 * table rows are named with their line; decimal commas, grouped
 * thousands and whatever code, fences and comments hold are not. */
START_TEST(thousands_check_finds_english_commas)
{
    static const char good[] =
        "# Т\n\n0,5 с, 10\u202F000 клиентов, 10 000 потоков, 1,2 и 3.\n"
        "Команда `loadgen -n 1,000` и [ссылка](a,1000.md).\n"
        "```sh\necho 1,000\n```\n<!-- doc-test: run id=x timeout=5\n"
        "expect: ^200,000 -->\n| 1,5 | 2,25 |\n";
    char *msg = english_thousands("ru", good);
    ck_assert_msg(msg == NULL, "%s", msg);
    static const char bad[] =
        "# Т\n\nзапустить 32,440 потоков\n```\n1,000\n```\n"
        "| a | 0,967 |\n\nи 200,000 вызовов\n";
    msg = english_thousands("ru", bad);
    ck_assert_ptr_nonnull(msg);
    ck_assert_msg(strstr(msg, "ru:3: запустить 32,440") != NULL, "%s", msg);
    ck_assert_msg(strstr(msg, "ru:9: и 200,000") != NULL, "%s", msg);
    ck_assert_msg(strstr(msg, "ru:5") == NULL && strstr(msg, "ru:7") == NULL,
                  "%s", msg);
    free(msg);
}
END_TEST

START_TEST(russian_numbers_are_russian)
{
    char *ru = harness_read_file("LECTURE.ru.md");
    ck_assert_msg(ru != NULL, "cannot read LECTURE.ru.md");
    char *msg = english_thousands("LECTURE.ru.md", ru);
    ck_assert_msg(msg == NULL, "LECTURE.ru.md writes thousands the English way "
                  "(a Russian reader sees a decimal comma); write 32\u202F440, "
                  "with a narrow no-break space (U+202F):\n%s", msg);
    free(ru);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("lecture_sync");
    TCase *tc = tcase_create("sync");
    tcase_add_test(tc, checker_accepts_a_faithful_translation);
    tcase_add_test(tc, checker_catches_each_kind_of_drift);
    tcase_add_test(tc, thousands_check_finds_english_commas);
    tcase_add_test(tc, russian_lecture_follows_english);
    tcase_add_test(tc, russian_numbers_are_russian);
    tcase_add_test(tc, both_lectures_link_the_glossary);
    suite_add_tcase(s, tc);
    return harness_run(s);
}
