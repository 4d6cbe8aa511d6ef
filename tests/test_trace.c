/* test_trace: --trace and tools/trace (issue 16).
 *
 *   format   the line format, O_APPEND from a forked child and its parent
 *            at once, and nothing written while tracing is off
 *   model    tools/trace's pairing of begins and ends, rows, and that the
 *            JSON and the page hold one drawing per span
 *   stages   every stage traces accept, request, each bill and the
 *            callback, paired
 *   browser  headless Chromium opens the page of a real run (a stage and
 *            loadgen, both tracing): the bars and spans it drew, counted by
 *            the page's own script, equal the trace's begin events, and
 *            its screenshot shows the bars' colours. Skipped with a message
 *            only where chromium is not installed. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#ifdef HAVE_ZLIB
#include <zlib.h>
#endif

#include "harness.h"
#include "trace.h"
#include "../tools/trace/tracetool.h"

/* ---- helpers ---- */

static char *make_temp_dir(void)
{
    char tmpl[] = "/tmp/test_trace.XXXXXX";
    char *d = mkdtemp(tmpl);
    ck_assert_ptr_nonnull(d);
    return strdup(d);
}

static void remove_dir(const char *dir)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "test_trace: could not remove %s\n", dir);
}

static size_t count_of(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p++)
        n++;
    return n;
}

/* Lines of a trace with this name and phase (" bill B "), counted by the
 * test itself, not by the tool under test. */
static size_t trace_lines(const char *text, const char *name, char ph)
{
    char needle[32];
    snprintf(needle, sizeof needle, " %s %c ", name, ph);
    return count_of(text, needle);
}

/* ---- format ---- */

START_TEST(format_is_seven_fields)
{
    char line[TRACE_LINE_MAX];
    int n = trace_format(line, 1234567, 42, 43, -1, TRACE_BILL_BEGIN, 99,
                         NULL);
    ck_assert_str_eq(line, "1234567 42 43 -1 bill B 99\n");
    ck_assert_int_eq(n, (int)strlen(line));
    trace_format(line, 5, 1, 1, 7, TRACE_CLIENT_FIRST, 3, NULL);
    ck_assert_str_eq(line, "5 1 1 7 first_byte I 3\n");
    trace_format(line, 5, 1, 1, -1, TRACE_ACCEPT, 0, "04-select");
    ck_assert_str_eq(line, "5 1 1 -1 stage M 0 04-select\n");
}
END_TEST

START_TEST(off_writes_nothing_and_fork_appends_whole_lines)
{
    char *dir = make_temp_dir();
    char path[256];
    snprintf(path, sizeof path, "%s/t.trace", dir);
    ck_assert_int_eq(trace_fd, -1);
    TRACE(TRACE_ACCEPT, NULL, 1); /* off: no file appears */
    ck_assert_int_ne(access(path, F_OK), 0);

    ck_assert_int_eq(trace_open(path, "unit"), 0);
    pid_t child = fork();
    ck_assert_int_ge(child, 0);
    for (int i = 0; i < 500; i++)
        TRACE(TRACE_BILL_BEGIN, NULL, i);
    if (child == 0)
        _exit(0); /* no flush needed: every event is already written */
    int st;
    ck_assert_int_eq(waitpid(child, &st, 0), child);
    trace_close();

    char *text = harness_read_file(path);
    ck_assert_ptr_nonnull(text);
    size_t lines = 0, from_child = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        unsigned long long t, id;
        long pid, tid, co;
        char name[16], ph;
        ck_assert_int_eq(sscanf(line, "%llu %ld %ld %ld %15s %c %llu", &t,
                                &pid, &tid, &co, name, &ph, &id), 7);
        lines++;
        if (pid == (long)child) {
            from_child++;
            ck_assert_int_eq(tid, pid); /* its own tid, not the parent's */
        }
    }
    ck_assert_uint_eq(lines, 1 + 1000);
    ck_assert_uint_eq(from_child, 500);
    free(text);
    remove_dir(dir);
    free(dir);
}
END_TEST

/* ---- model ---- */

/* Two requests interleaved on one lane (04's way), one bill left open, an
 * end nobody began, a client request with its first byte, a bad line. */
static const char model_trace[] =
    "100 7 7 -1 stage M 0 04-select\n"
    "100 7 7 -1 accept I 5\n"
    "110 7 7 -1 request B 5\n"
    "120 7 7 -1 request B 6\n"
    "130 7 7 -1 bill B 1000\n"
    "400 7 7 -1 request E 5\n"
    "450 7 7 -1 request E 6\n"
    "460 7 7 -1 request E 9\n"
    "105 8 8 -1 client B 77\n"
    "390 8 8 -1 first_byte I 77\n"
    "410 8 8 -1 client E 77\n"
    "500 7 9 -1 callback B 3\n"
    "not a trace line\n";

static void load_model(struct panel *p)
{
    FILE *in = fmemopen((void *)model_trace, sizeof model_trace - 1, "r");
    ck_assert_ptr_nonnull(in);
    ck_assert(panel_read(p, in, "04-select"));
    fclose(in);
}

START_TEST(model_pairs_and_stacks)
{
    struct panel p;
    load_model(&p);
    ck_assert_uint_eq(p.bad_lines, 1);
    ck_assert_uint_eq(p.unmatched_ends, 1);
    ck_assert_uint_eq(p.events, 11);
    ck_assert_uint_eq(p.length, 400);
    ck_assert_uint_eq(panel_count(&p, true), 1);
    ck_assert_uint_eq(panel_count(&p, false), 4);
    ck_assert_uint_eq(p.nlanes, 2); /* the loop, and thread 9 */
    ck_assert_int_eq(p.lanes[0].rows, 3); /* two requests and a bill overlap */
    ck_assert_uint_eq(p.nmarks, 1);
    for (size_t i = 0; i < p.nspans; i++) {
        const struct span *s = &p.spans[i];
        if (s->kind == SPAN_CLIENT) {
            ck_assert_uint_eq(s->t0, 5);
            ck_assert_uint_eq(s->first, 290);
            ck_assert_uint_eq(s->t1, 310);
        }
        if (s->kind == SPAN_BILL) { /* open: drawn to the end */
            ck_assert(s->open);
            ck_assert_uint_eq(s->t1, p.length);
        }
        if (s->kind == SPAN_REQUEST && s->id == 6)
            ck_assert_uint_eq(s->t1 - s->t0, 330);
    }
    panel_free(&p);
}
END_TEST

START_TEST(json_and_page_draw_every_span)
{
    struct panel p;
    load_model(&p);
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    ck_assert(write_chrome_json(out, &p, 1));
    fclose(out);
    ck_assert_uint_eq(count_of(buf, "\"ph\":\"X\""), 5);
    ck_assert_uint_eq(count_of(buf, "\"name\":\"accept\""), 1);
    ck_assert_ptr_nonnull(strstr(buf, "\"args\":{\"name\":\"04-select\"}"));
    free(buf);

    out = open_memstream(&buf, &len);
    ck_assert(write_html(out, &p, 1, "a <test> page"));
    fclose(out);
    ck_assert_uint_eq(count_of(buf, "<rect class=\"client "), 1);
    ck_assert_uint_eq(count_of(buf, "<rect class=\"span "), 4);
    ck_assert_uint_eq(count_of(buf, " open\""), 2); /* the bill, the PUT */
    ck_assert_ptr_nonnull(strstr(buf, "a &lt;test&gt; page"));
    /* Self-contained: nothing to fetch, so it opens offline. */
    ck_assert_ptr_null(strstr(buf, "src="));
    ck_assert_ptr_null(strstr(buf, "<link"));
    free(buf);
    panel_free(&p);
}
END_TEST

/* ---- stages ---- */

static const char sync_body[] =
    "{\"request_id\":\"trace-sync\",\"exchange_rate\":2.0,\"bills\":["
    "{\"denomination_id\":1,\"denomination\":10.0,\"count\":1},"
    "{\"denomination_id\":2,\"denomination\":20.0,\"count\":1},"
    "{\"denomination_id\":3,\"denomination\":50.0,\"count\":1}]}";
static const char async_body[] =
    "{\"request_id\":\"trace-async\",\"exchange_rate\":2.0,\"bills\":["
    "{\"denomination_id\":1,\"denomination\":10.0,\"count\":1},"
    "{\"denomination_id\":2,\"denomination\":20.0,\"count\":1}]}";

/* Waits until the trace holds n lines like " name ph ", up to 5 s. */
static char *wait_trace(const char *path, const char *name, char ph, size_t n)
{
    for (int i = 0; i < 100; i++) {
        char *text = harness_read_file(path);
        if (text && trace_lines(text, name, ph) >= n)
            return text;
        free(text);
        harness_sleep_ms(50);
    }
    return harness_read_file(path);
}

START_TEST(every_stage_traces_its_steps)
{
    const char *stage = harness_stages[_i].name;
    if (!harness_row_selected(_i))
        return;
    char *dir = make_temp_dir();
    char path[256], main_url[64];
    snprintf(path, sizeof path, "%s/%s.trace", dir, stage);
    struct fake_main fm;
    fake_main_listen(&fm, 0, (const int[]){200}, 1);
    snprintf(main_url, sizeof main_url, "http://127.0.0.1:%d", fm.port);
    struct proc p;
    harness_stage_start(&p, stage, &(struct stage_opts){
        .delay_ms = 30, .main_url = main_url,
        .args = (const char *const[]){"--trace", path, NULL}});
    fake_main_run(&fm);

    struct http_result r;
    http_request("POST", p.port, "/api/exchange_sync", sync_body, &r);
    ck_assert_int_eq(r.status, 200);
    http_result_free(&r);
    http_request("POST", p.port, "/api/exchange_async", async_body, &r);
    ck_assert_int_eq(r.status, 200);
    http_result_free(&r);
    fake_main_wait_requests(&fm, 1, 5000);

    char *text = wait_trace(path, "callback", 'E', 1);
    ck_assert_ptr_nonnull(text);
    ck_assert_msg(strstr(text, " stage M 0 ") != NULL, "%s: no label", stage);
    ck_assert_uint_ge(trace_lines(text, "accept", 'I'), 1);
    ck_assert_uint_eq(trace_lines(text, "request", 'B'), 2);
    ck_assert_uint_eq(trace_lines(text, "request", 'E'), 2);
    ck_assert_uint_eq(trace_lines(text, "bill", 'B'), 5);
    ck_assert_uint_eq(trace_lines(text, "bill", 'E'), 5);
    ck_assert_uint_eq(trace_lines(text, "callback", 'B'), 1);
    ck_assert_uint_eq(trace_lines(text, "callback", 'E'), 1);
    /* The tool pairs every one of them. */
    struct panel pn;
    ck_assert(panel_load(&pn, path));
    ck_assert_uint_eq(panel_count(&pn, false), 8);
    for (size_t k = 0; k < pn.nspans; k++)
        ck_assert_msg(!pn.spans[k].open, "%s: a %s span has no end", stage,
                      span_names[pn.spans[k].kind]);
    ck_assert_str_eq(pn.title, stage);
    panel_free(&pn);
    if (strcmp(stage, "06-coroutines") == 0) /* lanes are coroutines */
        ck_assert_ptr_null(strstr(text, " -1 bill B "));
    free(text);
    proc_stop(&p, 5000);
    fake_main_close(&fm);
    remove_dir(dir);
    free(dir);
}
END_TEST

/* ---- browser ---- */

/* Runs argv with stdout to out_path (or /dev/null) and stderr to
 * /dev/null, in its own process group, killed after timeout_ms. Its exit
 * status, or -1 if it had to be killed or did not start. */
static int run(char *const argv[], const char *out_path, int timeout_ms)
{
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        setpgid(0, 0);
        int out = open(out_path ? out_path : "/dev/null",
                       O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int null = open("/dev/null", O_RDWR);
        if (out < 0 || null < 0 || dup2(out, 1) < 0 || dup2(null, 2) < 0 ||
            dup2(null, 0) < 0)
            _exit(126);
        execvp(argv[0], argv);
        _exit(127);
    }
    for (int waited = 0;; waited += 20) {
        int st;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
        if (r < 0 && errno != EINTR)
            return -1;
        if (waited >= timeout_ms) {
            kill(-pid, SIGKILL);
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            return -1;
        }
        harness_sleep_ms(20);
    }
}

/* "chromium" (Debian) or "chromium-browser", if one is on PATH. */
static const char *find_chromium(void)
{
    static const char *const names[] = {"chromium", "chromium-browser"};
    const char *path = getenv("PATH");
    for (size_t k = 0; path && k < 2; k++) {
        char *copy = strdup(path), *save = NULL;
        for (char *d = strtok_r(copy, ":", &save); d;
             d = strtok_r(NULL, ":", &save)) {
            char full[512];
            snprintf(full, sizeof full, "%s/%s", d, names[k]);
            if (access(full, X_OK) == 0) {
                free(copy);
                return names[k];
            }
        }
        free(copy);
    }
    return NULL;
}

/* Headless Chromium on page: the DOM after its script ran (dump != NULL),
 * or a screenshot (shot != NULL). A fresh profile each time. */
static int chromium(const char *browser, const char *dir, const char *page,
                    const char *dump, const char *shot)
{
    char profile[300], url[300], shot_arg[300];
    snprintf(profile, sizeof profile, "--user-data-dir=%s/profile%s", dir,
             shot ? "-shot" : "-dom");
    snprintf(url, sizeof url, "file://%s", page);
    snprintf(shot_arg, sizeof shot_arg, "--screenshot=%s", shot ? shot : "");
    char *argv[] = {(char *)browser, "--headless", "--no-sandbox",
                    "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--hide-scrollbars", "--window-size=1100,1400", profile,
                    shot ? shot_arg : "--dump-dom", url, NULL};
    return run(argv, dump, 20000);
}

/* ---- a PNG, decoded just enough to look at its pixels ---- */
#ifdef HAVE_ZLIB

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
           p[3];
}

static int paeth(int a, int b, int c)
{
    int p = a + b - c, pa = abs(p - a), pb = abs(p - b), pc = abs(p - c);
    return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}

struct pixels { unsigned char *rgb; uint32_t w, h; size_t bpp; };

/* 8-bit RGB or RGBA, not interlaced: what Chromium writes. */
static bool png_decode(const char *path, struct pixels *px)
{
    char *raw = NULL;
    size_t len = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return false;
    FILE *mem = open_memstream(&raw, &len);
    char chunk[8192];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        fwrite(chunk, 1, n, mem);
    fclose(f);
    fclose(mem);
    const unsigned char *b = (const unsigned char *)raw;
    bool ok = len > 33 && memcmp(b, "\x89PNG\r\n\x1a\n", 8) == 0 && b[24] == 8 &&
              (b[25] == 2 || b[25] == 6) && b[28] == 0;
    unsigned char *z = NULL;
    size_t zlen = 0;
    if (ok) {
        px->w = be32(b + 16);
        px->h = be32(b + 20);
        px->bpp = b[25] == 6 ? 4 : 3;
        for (size_t at = 8; at + 12 <= len;) {
            uint32_t clen = be32(b + at);
            if (at + 12 + clen > len)
                break;
            if (memcmp(b + at + 4, "IDAT", 4) == 0) {
                z = realloc(z, zlen + clen);
                memcpy(z + zlen, b + at + 8, clen);
                zlen += clen;
            }
            at += 12 + clen;
        }
    }
    size_t stride = ok ? px->w * px->bpp : 0;
    uLongf out_len = ok ? (uLongf)(stride + 1) * px->h : 0;
    unsigned char *data = ok ? malloc(out_len) : NULL;
    ok = ok && data && z && uncompress(data, &out_len, z, zlen) == Z_OK &&
         out_len == (stride + 1) * px->h;
    px->rgb = ok ? malloc(stride * px->h) : NULL;
    for (uint32_t y = 0; ok && y < px->h; y++) {
        const unsigned char *in = data + y * (stride + 1) + 1;
        unsigned char *row = px->rgb + y * stride;
        const unsigned char *up = y ? row - stride : NULL;
        for (size_t x = 0; x < stride; x++) {
            int a = x >= px->bpp ? row[x - px->bpp] : 0, u = up ? up[x] : 0;
            int c = x >= px->bpp && up ? up[x - px->bpp] : 0;
            int pred[] = {0, a, u, (a + u) / 2, paeth(a, u, c)};
            int ft = in[-1];
            ok = ft <= 4;
            row[x] = (unsigned char)(in[x] + (ok ? pred[ft] : 0));
        }
    }
    free(raw);
    free(z);
    free(data);
    return ok;
}

/* Pixels of exactly this colour (the page's bars are solid rectangles). */
static size_t pixels_of(const struct pixels *px, unsigned rgb)
{
    size_t n = 0;
    for (size_t i = 0; i < (size_t)px->w * px->h; i++) {
        const unsigned char *p = px->rgb + i * px->bpp;
        n += ((unsigned)p[0] << 16 | (unsigned)p[1] << 8 | p[2]) == rgb;
    }
    return n;
}


/* Not blank: the bars are there, in their own colours. */
static void expect_drawn(const char *browser, const char *dir,
                         const char *shot)
{
    (void)browser;
    (void)dir;
    struct pixels px = {0};
    ck_assert_msg(png_decode(shot, &px), "cannot read the screenshot");
    size_t all = (size_t)px.w * px.h;
    ck_assert_uint_lt(pixels_of(&px, 0xffffff), all * 98 / 100);
    ck_assert_uint_gt(pixels_of(&px, 0x8a8f98), 100); /* client bars */
    ck_assert_uint_gt(pixels_of(&px, 0xf58518), 100); /* bills */
    ck_assert_uint_gt(pixels_of(&px, 0x4c78a8), 100); /* requests */
    free(px.rgb);
}
#else
/* Without zlib the pixels stay unread: the screenshot must at least be
 * far bigger than a blank page's (a white PNG compresses to almost
 * nothing). */
static void expect_drawn(const char *browser, const char *dir,
                         const char *shot)
{
    char blank[300], blank_shot[300];
    snprintf(blank, sizeof blank, "%s/blank.html", dir);
    snprintf(blank_shot, sizeof blank_shot, "%s/blank.png", dir);
    FILE *f = fopen(blank, "w");
    ck_assert_ptr_nonnull(f);
    fputs("<!DOCTYPE html><html><body></body></html>\n", f);
    fclose(f);
    ck_assert_int_eq(chromium(browser, dir, blank, NULL, blank_shot), 0);
    struct stat ours, empty;
    ck_assert_int_eq(stat(shot, &ours), 0);
    ck_assert_int_eq(stat(blank_shot, &empty), 0);
    printf("test_trace: no zlib: screenshot %lld bytes, a blank page's "
           "%lld\n", (long long)ours.st_size, (long long)empty.st_size);
    ck_assert_int_gt(ours.st_size, 3 * empty.st_size);
}
#endif

/* The attribute's number in the DOM after #drawn, or -1. */
static long drawn_count(const char *dom, const char *attr)
{
    const char *d = dom ? strstr(dom, "id=\"drawn\"") : NULL;
    const char *a = d ? strstr(d, attr) : NULL;
    return a ? strtol(a + strlen(attr), NULL, 10) : -1;
}

START_TEST(chromium_draws_every_event)
{
    const char *browser = find_chromium();
    if (!browser) {
        printf("test_trace: SKIPPED the browser test: no chromium on PATH "
               "(apt-get install chromium; .ci/run does)\n");
        return;
    }
    int row = -1;
    for (int i = 0; i < HARNESS_NUM_STAGES && row < 0; i++)
        if (harness_row_selected(i) && harness_stages[i].overlaps)
            row = i;
    if (row < 0)
        return; /* STAGES names no stage that overlaps */
    char *dir = make_temp_dir();
    char tr[300], page[300], dom[300], shot[300], url[96];
    snprintf(tr, sizeof tr, "%s/%s.trace", dir, harness_stages[row].name);
    snprintf(page, sizeof page, "%s/page.html", dir);
    snprintf(dom, sizeof dom, "%s/dom.html", dir);
    snprintf(shot, sizeof shot, "%s/shot.png", dir);

    struct proc p;
    harness_stage_start(&p, harness_stages[row].name, &(struct stage_opts){
        .delay_ms = 150, .args = (const char *const[]){"--trace", tr, NULL}});
    snprintf(url, sizeof url, "http://127.0.0.1:%d/api/exchange_sync", p.port);
    char *lg[] = {(char *)harness_bin("loadgen"), "--quiet", "-c", "4", "-n",
                  "6", "--trace", tr, "--body", (char *)sync_body, url, NULL};
    ck_assert_int_eq(run(lg, NULL, 10000), 0);
    proc_stop(&p, 5000);
    char *tool[] = {(char *)harness_bin("trace"), "--html", page, tr, NULL};
    ck_assert_int_eq(run(tool, NULL, 10000), 0);

    char *text = harness_read_file(tr);
    ck_assert_ptr_nonnull(text);
    long client = (long)trace_lines(text, "client", 'B');
    long worker = (long)(trace_lines(text, "request", 'B') +
                         trace_lines(text, "bill", 'B') +
                         trace_lines(text, "callback", 'B'));
    ck_assert_int_eq(client, 6);
    ck_assert_int_eq(worker, 6 + 6 * 3);
    free(text);

    ck_assert_int_eq(chromium(browser, dir, page, dom, NULL), 0);
    char *html = harness_read_file(dom);
    ck_assert_int_eq(drawn_count(html, "data-client-bars=\""), client);
    ck_assert_int_eq(drawn_count(html, "data-worker-spans=\""), worker);
    free(html);

    ck_assert_int_eq(chromium(browser, dir, page, NULL, shot), 0);
    expect_drawn(browser, dir, shot);
    remove_dir(dir);
    free(dir);
}
END_TEST

static Suite *trace_suite(void)
{
    Suite *s = suite_create("trace");
    TCase *tc = tcase_create("format");
    tcase_add_test(tc, format_is_seven_fields);
    tcase_add_test(tc, off_writes_nothing_and_fork_appends_whole_lines);
    suite_add_tcase(s, tc);
    tc = tcase_create("model");
    tcase_add_test(tc, model_pairs_and_stacks);
    tcase_add_test(tc, json_and_page_draw_every_span);
    suite_add_tcase(s, tc);
    tc = tcase_create("stages");
    tcase_set_timeout(tc, 30);
    tcase_add_loop_test(tc, every_stage_traces_its_steps, 0,
                        HARNESS_NUM_STAGES);
    suite_add_tcase(s, tc);
    tc = tcase_create("browser");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, chromium_draws_every_event);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return harness_run(trace_suite());
}
