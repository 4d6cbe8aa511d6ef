/* The documents cannot silently rot: every relative link and every
 * `file:line` reference in LECTURE.md and README.md must point at a file
 * that exists and, for a line, at a line that exists; and every table is
 * whole (figures pasted from a terminal once brought progress lines into
 * the middle of tables, which then rendered as broken text). And each
 * stage section's "Start reading at" line names functions by line range:
 * every range must still hold its function. And students read README.md
 * and the lectures, not the tracker this toolkit is built with: no issue
 * numbers, goals, CI or developers in them. */
#include <check.h>
#include <ctype.h>
#include <regex.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"

static long count_lines(const char *path)
{
    char *text = harness_read_file(path);
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
    char *text = harness_read_file(doc);
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
    char *text = harness_read_file(doc);
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

/* Where a function is in lines[0..n): its definition line (1-based), the
 * first line of the comment just above it, and its closing brace. The
 * house style puts a definition's return type on its line and its braces
 * at column 0; a prototype ends with ';' before any '{'. */
struct span {
    int comment, def, close;
};

static bool find_function(char **lines, int n, const char *name,
                          struct span *sp)
{
    size_t len = strlen(name);
    for (int i = 0; i < n; i++) {
        const char *l = lines[i], *at = strstr(l, name);
        if (!at || !isalpha((unsigned char)l[0]) || at[len] != '(' ||
            (at > l && (isalnum((unsigned char)at[-1]) || at[-1] == '_') ) ||
            (at > l && at[-1] != ' ' && at[-1] != '*'))
            continue;
        int j = i; /* the first line ending in '{' or ';' decides */
        while (j < n) {
            size_t k = strlen(lines[j]);
            if (k && (lines[j][k - 1] == '{' || lines[j][k - 1] == ';'))
                break;
            j++;
        }
        if (j >= n || lines[j][strlen(lines[j]) - 1] == ';')
            continue; /* a prototype */
        int c = j + 1;
        while (c < n && strcmp(lines[c], "}") != 0)
            c++;
        int top = i;
        if (i > 0 && strstr(lines[i - 1], "*/"))
            while (top > 0 && strncmp(lines[top], "/*", 2) != 0)
                top--;
        sp->comment = top + 1;
        sp->def = i + 1;
        sp->close = c + 1;
        return c < n;
    }
    return false;
}

/* Checks one "[`name`](path#LA-LB) (WORD A-B)" link, WORD being "lines"
 * (or the Russian lecture's "строки"); 0 if it holds. */
static int check_reading_link(const char *doc, const char *link,
                              const char *word)
{
    char format[96];
    snprintf(format, sizeof format,
             "[`%%63[A-Za-z0-9_]`](%%255[^#)]#L%%d-L%%d) (%s %%d-%%d)", word);
    char name[64], path[256];
    int a, b, ta = -1, tb = -1;
    if (sscanf(link, format, name, path, &a, &b, &ta, &tb) < 4) {
        fprintf(stderr, "%s: a start-reading link is not "
                "[`function`](file#LA-LB) (lines A-B): %.60s\n", doc, link);
        return 1;
    }
    char *text = harness_read_file(path);
    if (!text) {
        fprintf(stderr, "%s: %s (for %s) is missing\n", doc, path, name);
        return 1;
    }
    char **lines = NULL; /* lines[i] is line i + 1 */
    int n = 0;
    for (char *p = text; *p;) {
        lines = realloc(lines, sizeof *lines * (size_t)(n + 1));
        lines[n++] = p;
        char *nl = strchr(p, '\n');
        if (!nl)
            break;
        *nl = '\0';
        p = nl + 1;
    }
    struct span sp;
    int bad = 0;
    if (!find_function(lines, n, name, &sp)) {
        fprintf(stderr, "%s: %s defines no function %s\n", doc, path, name);
        bad = 1;
    } else {
        /* The range starts at the function's comment or its definition
         * and ends at its closing brace (or a line after). */
        if (a < sp.comment || a > sp.def || b < sp.close || b > sp.close + 1 ||
            ta != a || tb != b) {
            fprintf(stderr, "%s: [`%s`](%s#L%d-L%d) (%s %d-%d) is stale: "
                    "%s is at lines %d-%d (its comment from %d); write "
                    "[`%s`](%s#L%d-L%d) (%s %d-%d)\n", doc, name, path,
                    a, b, word, ta, tb, name, sp.def, sp.close, sp.comment,
                    name, path, sp.comment, sp.close, word, sp.comment,
                    sp.close);
            bad = 1;
        }
    }
    free(lines);
    free(text);
    return bad;
}

/* Every stage section (2, 3, 4, 6, 7, 8) of both lectures has a "Start
 * reading at" line whose links each name a function and the lines that
 * still hold it. Row 0 the English lecture, row 1 the Russian one. */
static const struct {
    const char *doc, *opening, *word;
} reading_docs[] = {
    {"LECTURE.md", "\nStart reading at ", "lines"},
    {"LECTURE.ru.md", "\nНачните чтение с ", "строки"},
};

START_TEST(start_reading_ranges_hold)
{
    static const int stage_sections[] = {2, 3, 4, 6, 7, 8};
    const char *doc = reading_docs[_i].doc;
    char *text = harness_read_file(doc);
    ck_assert_ptr_nonnull(text);
    int bad = 0, links = 0;
    for (size_t i = 0; i < sizeof stage_sections / sizeof stage_sections[0];
         i++) {
        char head[16];
        snprintf(head, sizeof head, "\n## %d. ", stage_sections[i]);
        char *sec = strstr(text, head);
        ck_assert_msg(sec, "%s has no section %d", doc, stage_sections[i]);
        char *end = strstr(sec + 1, "\n## ");
        char *line = strstr(sec, reading_docs[_i].opening);
        if (!line || (end && line > end)) {
            fprintf(stderr, "%s: section %d has no \"%s\" line\n", doc,
                    stage_sections[i], reading_docs[_i].opening + 1);
            bad++;
            continue;
        }
        char *stop = strstr(line + 1, "\n\n"); /* the paragraph */
        for (char *l = strstr(line, "[`"); l && (!stop || l < stop);
             l = strstr(l + 2, "[`")) {
            bad += check_reading_link(doc, l, reading_docs[_i].word);
            links++;
        }
    }
    free(text);
    ck_assert_msg(bad == 0, "%d stale start-reading line(s) or link(s), "
                  "see above", bad);
    ck_assert_int_ge(links, 6);
}
END_TEST

/* The range check itself, on a file with a two-line prototype before the
 * definition (which must not count) and a comment above it. */
START_TEST(start_reading_check_finds_functions)
{
    char path[] = "/tmp/start-reading.XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    static const char code[] =
        "static void on_x(int a,\n"        /* 1 */
        "                 int b);\n"       /* 2 */
        "\n"                               /* 3 */
        "/* Says why.\n"                   /* 4 */
        " * Twice. */\n"                   /* 5 */
        "static void on_x(int a, int b)\n" /* 6 */
        "{\n"                              /* 7 */
        "    if (a) {\n"                   /* 8 */
        "    }\n"                          /* 9 */
        "}\n";                             /* 10 */
    ck_assert_int_eq(write(fd, code, sizeof code - 1), (ssize_t)sizeof code - 1);
    close(fd);
    char link[512];
    static const int good[][2] = {{4, 10}, {6, 10}, {6, 11}};
    static const int stale[][2] = {{1, 10}, {3, 10}, {7, 10}, {4, 9}, {4, 12}};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        snprintf(link, sizeof link, "[`on_x`](%s#L%d-L%d) (lines %d-%d)", path,
                 good[i][0], good[i][1], good[i][0], good[i][1]);
        ck_assert_msg(check_reading_link("test", link, "lines") == 0, "%s", link);
    }
    for (size_t i = 0; i < sizeof stale / sizeof stale[0]; i++) {
        snprintf(link, sizeof link, "[`on_x`](%s#L%d-L%d) (lines %d-%d)", path,
                 stale[i][0], stale[i][1], stale[i][0], stale[i][1]);
        ck_assert_msg(check_reading_link("test", link, "lines") == 1, "%s", link);
    }
    /* The text's numbers must match the anchor's; a missing name fails. */
    snprintf(link, sizeof link, "[`on_x`](%s#L4-L10) (lines 4-11)", path);
    ck_assert_int_eq(check_reading_link("test", link, "lines"), 1);
    snprintf(link, sizeof link, "[`on_y`](%s#L4-L10) (lines 4-10)", path);
    ck_assert_int_eq(check_reading_link("test", link, "lines"), 1);
    unlink(path);
}
END_TEST

/* Words of the workflow that builds this toolkit, which a student has
 * no use for: each an extended regular expression, and whether its case
 * matters. */
static const struct {
    const char *ere;
    bool icase;
} workflow_words[] = {
    {"issues? ?#?[0-9]+", true},          /* "issue 14", "issue #3" */
    {"(^|[^[:alpha:]])goals?([^[:alpha:]]|$)", true}, /* "goal: 0.95" */
    {"(^|[^[:alpha:]])CI([^[:alpha:]]|$)", false},    /* "what CI runs" */
    {"developers?", true},
    {"commit [0-9a-f]{7,}", true},
    {"TODO|FIXME", false},
    {"цель( —|:)|\\| *цель *\\||разработчик", false}, /* "(цель — 0,95)" */
};

/* NULL if no line of text has a workflow word; otherwise a message
 * naming each such line (the caller frees it). */
static char *workflow_lines(const char *name, const char *text)
{
    char *msg = NULL;
    size_t n = sizeof workflow_words / sizeof workflow_words[0];
    regex_t re[sizeof workflow_words / sizeof workflow_words[0]];
    for (size_t i = 0; i < n; i++)
        ck_assert_int_eq(regcomp(&re[i], workflow_words[i].ere, REG_EXTENDED |
            REG_NOSUB | (workflow_words[i].icase ? REG_ICASE : 0)), 0);
    int lineno = 0;
    for (const char *p = text; *p;) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        char *line = strndup(p, len);
        lineno++;
        for (size_t i = 0; i < n; i++)
            if (regexec(&re[i], line, 0, NULL, 0) == 0) {
                size_t at = msg ? strlen(msg) : 0;
                char *grown = realloc(msg, at + len + strlen(name) + 32);
                ck_assert_ptr_nonnull(grown);
                msg = grown;
                sprintf(msg + at, "  %s:%d: %s\n", name, lineno, line);
                break;
            }
        free(line);
        p = nl ? nl + 1 : p + len;
    }
    for (size_t i = 0; i < n; i++)
        regfree(&re[i]);
    return msg;
}

START_TEST(no_workflow_words)
{
    static const char *const docs[] = {"README.md", "LECTURE.md", "LECTURE.ru.md"};
    char *all = NULL;
    for (size_t i = 0; i < sizeof docs / sizeof docs[0]; i++) {
        char *text = harness_read_file(docs[i]);
        ck_assert_msg(text != NULL, "cannot read %s", docs[i]);
        char *msg = workflow_lines(docs[i], text);
        if (msg) {
            size_t at = all ? strlen(all) : 0;
            all = realloc(all, at + strlen(msg) + 1);
            strcpy(all + at, msg);
            free(msg);
        }
        free(text);
    }
    ck_assert_msg(all == NULL, "words of the toolkit's own workflow in what "
                  "students read (say what a reader needs instead):\n%s", all);
}
END_TEST

/* The check itself: each planted phrase is caught on its line; words that
 * merely contain the letters ("CIDR", "Cinema", "целиком") are not. */
START_TEST(workflow_check_catches_planted_phrases)
{
    static const char *const planted[] = {
        "Against the goals of issue 14, in this run:",
        "06 reaches 0.96 of 05 (goal: 0.95).",
        "on the machine every developer and CI of this project uses",
        "Run of 2026-11-27 (commit 2f0c3ed, plain build)",
        "Цели issue 14 в этом прогоне:",
        "а 06 даёт 0,96 от 05 (цель — 0,95).",
        "| работа | эталон | цель |",
    };
    for (size_t i = 0; i < sizeof planted / sizeof planted[0]; i++) {
        char *text = NULL;
        ck_assert_int_ge(asprintf(&text, "clean line\n%s\nclean again\n", planted[i]), 0);
        char *msg = workflow_lines("doc", text);
        ck_assert_msg(msg != NULL, "not caught: %s", planted[i]);
        ck_assert_msg(strstr(msg, "doc:2: ") != NULL, "%s", msg);
        free(msg);
        free(text);
    }
    static const char clean[] =
        "CIDR blocks, a Cinema, целиком, the ideal is one delay, a score of 14\n";
    char *msg = workflow_lines("doc", clean);
    ck_assert_msg(msg == NULL, "%s", msg);
}
END_TEST

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
    tcase_add_test(tc, no_workflow_words);
    tcase_add_test(tc, workflow_check_catches_planted_phrases);
    tcase_add_loop_test(tc, start_reading_ranges_hold, 0, 2);
    tcase_add_test(tc, start_reading_check_finds_functions);
    suite_add_tcase(s, tc);
    return harness_run(s);
}
