/* The lecture runs as written. Every ```sh block of
 * LECTURE.md, LECTURE.ru.md, README.md and bench/README.md carries, on the
 * line right before its fence, one marker:
 *
 *   <!-- doc-test: run id=s2-watch timeout=15
 *   expect: ^request 1: (0\.9|1\.[0-3])     some output line matches (ERE)
 *   expect-not: refused                      no output line matches
 *   status: 0                                the exit status (default 0)
 *   -->
 *
 * or "<!-- doc-test: manual (why it cannot run unattended) -->". A run
 * block is executed by bash in a scratch directory whose entries are
 * symlinks to the repository's (so ./build and tools/ resolve), in its own
 * process group, stdout and stderr together, under its time limit; then
 * what is left of the group gets 3 s to stop before it is killed (and the
 * block fails: it must stop its servers). A block must leave nothing in
 * the repository either: a file it writes in the scratch directory itself
 * would land in the repository's top directory when a student runs it
 * there, and a file it writes through a symlink lands in the repository
 * now; both fail it (write under build/ or a mktemp directory). A
 * failure names the file, the section and the id, and prints the block's
 * output.
 *   DOC_BLOCK=s2-watch build/tests/test_doc_blocks   runs one block.
 * Under sanitizer builds it skips: it tests documents, not memory. */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <regex.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SAN_BUILD 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SAN_BUILD 1
#endif
#endif

#define MAX_ASSERTS 16
#define OUTPUT_MAX (4 << 20) /* what a block may print before it is cut */
#define CLEANUP_MS 3000      /* a block's servers must be gone by then */

struct assertion {
    enum { EXPECT, EXPECT_NOT } kind;
    char *ere;
};

struct block {
    const char *doc;
    char section[160];
    int line;         /* of the opening fence */
    bool run;         /* false: manual */
    char id[64];
    int timeout_s;
    int status;       /* the exit status wanted */
    struct assertion asserts[MAX_ASSERTS];
    int nasserts;
    char *script;
};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Appends a complaint to *errs (one line each). */
#define complain(errs, ...) (harness_appendf((errs), __VA_ARGS__), \
                             harness_appendf((errs), "\n"))

/* Parses a marker's text (from "doc-test:" to before "-->") into b. */
static bool parse_marker(struct block *b, char *text, char **errs)
{
    char *save = NULL;
    char *first = strtok_r(text, "\n", &save);
    first += strspn(first, " ");
    if (strncmp(first, "manual", 6) == 0) {
        char *open = strchr(first, '('), *close = strrchr(first, ')');
        if (!open || !close || close - open < 3) {
            complain(errs, "%s:%d: a manual block needs its reason: "
                     "<!-- doc-test: manual (why) -->", b->doc, b->line);
            return false;
        }
        return true;
    }
    if (strncmp(first, "run", 3) != 0) {
        complain(errs, "%s:%d: the marker says neither run nor manual",
                 b->doc, b->line);
        return false;
    }
    b->run = true;
    char *id = strstr(first, "id="), *to = strstr(first, "timeout=");
    if (!id || !to || sscanf(id + 3, "%63[A-Za-z0-9_-]", b->id) != 1 ||
        (b->timeout_s = atoi(to + 8)) <= 0) {
        complain(errs, "%s:%d: a run marker needs id=... and timeout=N",
                 b->doc, b->line);
        return false;
    }
    for (char *l = strtok_r(NULL, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        l += strspn(l, " ");
        if (!*l)
            continue;
        bool not = strncmp(l, "expect-not:", 11) == 0;
        if ((not || strncmp(l, "expect:", 7) == 0) && b->nasserts < MAX_ASSERTS) {
            char *ere = l + (not ? 11 : 7);
            ere += strspn(ere, " ");
            b->asserts[b->nasserts].kind = not ? EXPECT_NOT : EXPECT;
            b->asserts[b->nasserts++].ere = strdup(ere);
        } else if (strncmp(l, "status:", 7) == 0) {
            b->status = atoi(l + 7);
        } else {
            complain(errs, "%s:%d (id=%s): unknown marker line: %s", b->doc,
                     b->line, b->id, l);
            return false;
        }
    }
    return true;
}

/* Every ```sh block of doc, with its marker; NULL-terminated array.
 * Problems with markers (missing, malformed, duplicate id) go to *errs. */
static struct block *find_blocks(const char *doc, int *count, char **errs)
{
    char *text = harness_read_file(doc);
    *count = 0;
    if (!text)
        return NULL;
    struct block *blocks = NULL;
    char section[160] = "(top)";
    char *marker = NULL; /* the last marker seen, and the line it ended on */
    int marker_end = -1, lineno = 0;
    bool in_code = false;
    char *line = text;
    while (*line) {
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = '\0';
        lineno++;
        if (strncmp(line, "```", 3) == 0 && !in_code &&
            strcmp(line, "```sh") == 0) {
            blocks = realloc(blocks, sizeof *blocks * (size_t)(*count + 1));
            struct block *b = &blocks[(*count)++];
            memset(b, 0, sizeof *b);
            b->doc = doc;
            b->line = lineno;
            snprintf(b->section, sizeof b->section, "%s", section);
            if (!marker || marker_end != lineno - 1)
                complain(errs, "%s:%d (%s): a ```sh block without a "
                         "<!-- doc-test: ... --> marker on the line before",
                         doc, lineno, section);
            else
                parse_marker(b, marker, errs);
            for (int i = 0; b->run && i < *count - 1; i++)
                if (blocks[i].run && strcmp(blocks[i].id, b->id) == 0)
                    complain(errs, "%s:%d: id %s is used twice", doc, lineno,
                             b->id);
            /* The body, up to the closing fence. */
            char *body = nl ? nl + 1 : line + strlen(line);
            char *end = strstr(body, "\n```\n");
            size_t len = end ? (size_t)(end - body) + 1 : strlen(body);
            b->script = strndup(body, len);
            for (char *p = body; p < body + len; p++)
                lineno += *p == '\n';
            line = end ? end + 5 : body + len;
            lineno++; /* the closing fence */
            continue;
        }
        if (strncmp(line, "```", 3) == 0) {
            in_code = !in_code;
        } else if (!in_code && strncmp(line, "## ", 3) == 0) {
            snprintf(section, sizeof section, "%s", line + 3);
        } else if (!in_code && strncmp(line, "<!-- doc-test:", 14) == 0) {
            /* The marker may span lines; it ends at "-->". */
            char *start = line + 14;
            if (nl)
                *nl = '\n';
            char *close = strstr(start, "-->");
            if (!close)
                break;
            free(marker);
            marker = strndup(start, (size_t)(close - start));
            for (char *p = start; p < close; p++)
                lineno += *p == '\n';
            marker_end = lineno;
            nl = strchr(close, '\n');
        }
        line = nl ? nl + 1 : line + strlen(line);
    }
    free(marker);
    free(text);
    return blocks;
}

/* A directory whose entries are symlinks to the repository's (cwd), so a
 * block sees ./build, tools/... and may write files of its own. */
static char *make_scratch(void)
{
    char *dir = strdup("/tmp/doc-block.XXXXXX");
    char top[4096];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    ck_assert_ptr_nonnull(getcwd(top, sizeof top));
    DIR *d = opendir(".");
    ck_assert_ptr_nonnull(d);
    for (struct dirent *e; (e = readdir(d));) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char from[8192], to[8192];
        snprintf(from, sizeof from, "%s/%s", top, e->d_name);
        snprintf(to, sizeof to, "%s/%s", dir, e->d_name);
        ck_assert_msg(symlink(from, to) == 0, "symlink %s: %s", to,
                      strerror(errno));
    }
    closedir(d);
    return dir;
}

static void remove_scratch(char *dir)
{
    char *cmd = NULL;
    /* The block's own files too; the symlinks' targets are left alone. */
    if (asprintf(&cmd, "rm -rf '%s'", dir) >= 0 && system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    free(cmd);
    free(dir);
}

/* The repository's untracked files (not ignored), one a line, as git
 * lists them; NULL where git cannot say (no git, not a checkout). */
static char *untracked_files(void)
{
    FILE *f = popen("git ls-files --others --exclude-standard 2>/dev/null", "r");
    if (!f)
        return NULL;
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    ck_assert_ptr_nonnull(out);
    char buf[4096];
    for (size_t n; (n = fread(buf, 1, sizeof buf, f)) > 0;)
        fwrite(buf, 1, n, out);
    fclose(out);
    if (pclose(f) != 0) {
        free(text);
        return NULL;
    }
    return text;
}

/* What a block left behind: entries of its scratch directory that are not
 * the symlinks make_scratch put there, and untracked files of the
 * repository that were not in `before`; one name a line in *litter. */
static void find_litter(const char *dir, const char *before, char **litter)
{
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    for (struct dirent *e; (e = readdir(d));) {
        char path[8192];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0 &&
            lstat(path, &st) == 0 && !S_ISLNK(st.st_mode))
            harness_appendf(litter, "%s\n", e->d_name);
    }
    closedir(d);
    char *after = before ? untracked_files() : NULL;
    for (char *line = after, *nl; line && *line; line = nl + 1) {
        nl = strchr(line, '\n');
        if (!nl)
            break;
        *nl = '\0';
        /* A whole line of before: the file was there already. */
        const char *at = before;
        size_t n = strlen(line);
        while ((at = strstr(at, line)) && !((at == before || at[-1] == '\n') &&
                                            at[n] == '\n'))
            at++;
        if (!at)
            harness_appendf(litter, "%s\n", line);
    }
    free(after);
}

/* Reaps what is left of the group (orphans come to us: we are their
 * subreaper). True once nothing of it remains. */
static bool group_gone(pid_t pgid)
{
    while (waitpid(-pgid, NULL, WNOHANG) > 0)
        ;
    return kill(-pgid, 0) != 0 && errno == ESRCH;
}

/* Runs b; returns its output (stdout and stderr together), sets *rc to
 * its exit status (-1: timed out), *left to whether it left processes
 * running after it exited, and *litter to the files it left (NULL if
 * none). */
static char *run_block(const struct block *b, int *rc, bool *left,
                       char **litter)
{
    char *before = untracked_files();
    char *dir = make_scratch();
    int fds[2];
    ck_assert_int_eq(pipe2(fds, O_CLOEXEC), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        setpgid(0, 0);
        int null = open("/dev/null", O_RDONLY);
        if (chdir(dir) != 0 || null < 0 || dup2(null, 0) < 0 ||
            dup2(fds[1], 1) < 0 || dup2(fds[1], 2) < 0)
            _exit(126);
        signal(SIGPIPE, SIG_DFL);
        /* A student's fresh shell: the documented defaults apply. */
        unsetenv("SECRET_TOKEN");
        unsetenv("MAIN_SERVICE_URL");
        execlp("bash", "bash", "-c", b->script, (char *)NULL);
        _exit(127);
    }
    setpgid(pid, pid); /* also here, so the group exists before we kill it */
    close(fds[1]);
    char *out = malloc(OUTPUT_MAX + 1);
    size_t len = 0;
    uint64_t deadline = now_ms() + (uint64_t)b->timeout_s * 1000;
    int status = 0;
    bool exited = false, eof = false;
    *rc = -1;
    *left = false;
    while (!eof) {
        uint64_t now = now_ms();
        if (!exited && now >= deadline)
            break; /* timed out */
        if (exited && now >= deadline + CLEANUP_MS) {
            *left = true; /* something still holds the output open */
            break;
        }
        struct pollfd p = {.fd = fds[0], .events = POLLIN};
        int n = poll(&p, 1, 50);
        if (n > 0) {
            char buf[65536];
            ssize_t got = read(fds[0], buf, sizeof buf);
            if (got == 0)
                eof = true;
            else if (got > 0 && len + (size_t)got <= OUTPUT_MAX) {
                memcpy(out + len, buf, (size_t)got);
                len += (size_t)got;
            }
        }
        if (!exited && waitpid(pid, &status, WNOHANG) == pid) {
            exited = true;
            *rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
            /* The block is done; what it left gets CLEANUP_MS to stop. */
            deadline = now_ms();
        }
    }
    /* The output ends as bash closes it, a moment before it can be
     * reaped; and a block may close its output and go on. */
    while (eof && !exited && now_ms() < deadline) {
        if (waitpid(pid, &status, WNOHANG) == pid) {
            exited = true;
            *rc = WIFEXITED(status) ? WEXITSTATUS(status)
                                    : 128 + WTERMSIG(status);
        } else {
            usleep(10000);
        }
    }
    if (exited && !*left) {
        uint64_t until = now_ms() + CLEANUP_MS;
        while (!group_gone(pid) && now_ms() < until)
            usleep(20000);
        *left = !group_gone(pid);
    }
    kill(-pid, SIGKILL);
    if (!exited)
        waitpid(pid, NULL, 0);
    while (waitpid(-pid, NULL, WNOHANG) > 0)
        ;
    close(fds[0]);
    out[len] = '\0';
    *litter = NULL;
    find_litter(dir, before, litter);
    free(before);
    remove_scratch(dir);
    return out;
}

/* True if some line of out matches ere. */
static bool some_line_matches(const char *out, const char *ere, char **errs)
{
    regex_t re;
    if (regcomp(&re, ere, REG_EXTENDED | REG_NOSUB | REG_NEWLINE) != 0) {
        complain(errs, "bad regular expression: %s", ere);
        return false;
    }
    bool hit = regexec(&re, out, 0, NULL, 0) == 0;
    regfree(&re);
    return hit;
}

/* True if something accepts connections on 127.0.0.1:port. */
static bool port_taken(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bool taken = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return taken;
}

/* The fixed ports a block waits for (tools/wait-port N) must be free
 * first, or its clients would talk to someone else's server. Another
 * run's block holds one for a few seconds: wait that out, up to 20 s. */
static bool ports_free(const struct block *b, char **errs)
{
    for (const char *p = strstr(b->script, "tools/wait-port "); p;
         p = strstr(p + 1, "tools/wait-port ")) {
        int port = atoi(p + 16);
        uint64_t until = now_ms() + 20000;
        while (port > 0 && port_taken(port) && now_ms() < until)
            usleep(100000);
        if (port > 0 && port_taken(port)) {
            complain(errs, "%s, section \"%s\", block %s: port %d is taken "
                     "by another program; not run", b->doc, b->section,
                     b->id, port);
            return false;
        }
    }
    return true;
}

/* Runs one block and checks it; complaints go to *errs. */
static void check_block(const struct block *b, char **errs)
{
    if (!ports_free(b, errs))
        return;
    int rc;
    bool left;
    char *litter;
    uint64_t t0 = now_ms();
    char *out = run_block(b, &rc, &left, &litter);
    double secs = (double)(now_ms() - t0) / 1000;
    char *before = *errs ? strdup(*errs) : NULL;
    const char *where = b->section;
    if (rc == -1)
        complain(errs, "%s, section \"%s\", block %s: timed out after %d s",
                 b->doc, where, b->id, b->timeout_s);
    else if (rc != b->status)
        complain(errs, "%s, section \"%s\", block %s: exit status %d, wanted "
                 "%d", b->doc, where, b->id, rc, b->status);
    if (left)
        complain(errs, "%s, section \"%s\", block %s: left processes running "
                 "(a server not stopped with kill %%N?)", b->doc, where, b->id);
    for (char *name = litter, *nl; name && (nl = strchr(name, '\n')); name = nl + 1)
        complain(errs, "%s, section \"%s\", block %s: left %.*s in the "
                 "repository (write under build/ or a mktemp directory)",
                 b->doc, where, b->id, (int)(nl - name), name);
    free(litter);
    for (int i = 0; i < b->nasserts; i++) {
        bool hit = some_line_matches(out, b->asserts[i].ere, errs);
        if (hit != (b->asserts[i].kind == EXPECT))
            complain(errs, "%s, section \"%s\", block %s: %s %s", b->doc,
                     where, b->id, hit ? "a line matches expect-not:" :
                     "no line matches expect:", b->asserts[i].ere);
    }
    bool failed = (before ? strlen(before) : 0) != (*errs ? strlen(*errs) : 0);
    fprintf(stderr, "doc block %s (%s): %s in %.1f s\n", b->id, b->doc,
            failed ? "FAILED" : "ok", secs);
    if (failed)
        fprintf(stderr, "---- its output:\n%s---- end of %s\n", out, b->id);
    free(before);
    free(out);
}

static void free_blocks(struct block *blocks, int n)
{
    for (int i = 0; i < n; i++) {
        free(blocks[i].script);
        for (int j = 0; j < blocks[i].nasserts; j++)
            free(blocks[i].asserts[j].ere);
    }
    free(blocks);
}

static const char *const docs[] = {"LECTURE.md", "README.md",
                                   "bench/README.md", "LECTURE.ru.md"};

/* Checks the markers of one document and runs its run blocks (only the
 * one named by DOC_BLOCK if set); returns its complaints, NULL if none. */
static char *document_errors(const char *doc)
{
    const char *only = getenv("DOC_BLOCK");
    char *errs = NULL;
    int n;
    struct block *blocks = find_blocks(doc, &n, &errs);
    for (int i = 0; i < n; i++)
        if (blocks[i].run && (!only || !*only || !strcmp(only, blocks[i].id)))
            check_block(&blocks[i], &errs);
    free_blocks(blocks, n);
    return errs;
}

START_TEST(blocks_run_as_written)
{
#ifdef SAN_BUILD
    if (_i == 0)
        fprintf(stderr, "SKIP: the doc blocks run in the plain build only "
                        "(they test documents, not memory)\n");
    return;
#endif
    /* Orphaned servers of a block come back to us to be reaped. */
    ck_assert_int_eq(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
    signal(SIGPIPE, SIG_IGN);
    if (access(docs[_i], F_OK) != 0) {
        ck_assert_msg(_i == 3, "%s is missing", docs[_i]); /* .ru is optional */
        return;
    }
    char *errs = document_errors(docs[_i]);
    ck_assert_msg(errs == NULL, "%s", errs ? errs : "");
}
END_TEST

/* The checker itself: a document with one block of each kind of fault
 * gets one complaint for each, and none for the good block. */
START_TEST(faults_are_named)
{
    /* Under sanitizers too: this is the checker's own memory at work. */
    ck_assert_int_eq(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
    unsetenv("DOC_BLOCK");
    fprintf(stderr, "faults_are_named: the FAILED blocks below are planted\n");
    char doc[] = "/tmp/doc-faults.XXXXXX";
    int fd = mkstemp(doc);
    ck_assert_int_ge(fd, 0);
    static const char text[] =
        "## 1. Good\n<!-- doc-test: run id=good timeout=5\nexpect: ^hi$\n"
        "expect-not: ^bye$\nstatus: 3\n-->\n```sh\necho hi; exit 3\n```\n"
        "## 2. Unmarked\n\n```sh\necho unmarked\n```\n"
        "## 3. Hangs\n<!-- doc-test: run id=hang timeout=1 -->\n```sh\n"
        "sleep 30 & wait\n```\n"
        "## 4. Wrong\n<!-- doc-test: run id=wrong timeout=5\n"
        "expect: ^never$\nexpect-not: ^oops$\n-->\n```sh\necho oops; false\n```\n"
        "## 5. Leaves\n<!-- doc-test: run id=leaves timeout=5 -->\n```sh\n"
        "sleep 30 &\n```\n"
        "## 6. Manual\n<!-- doc-test: manual -->\n```sh\nexit 1\n```\n"
        "## 7. Litters\n<!-- doc-test: run id=litters timeout=5 -->\n```sh\n"
        "echo x > litter.txt; echo y > docs/doc-block-litter.tmp\n```\n"
        "## 8. Tidy\n<!-- doc-test: run id=tidy timeout=5 -->\n```sh\n"
        "echo x > build/doc-block-tidy.tmp; t=$(mktemp); echo y > $t; rm $t build/doc-block-tidy.tmp\n```\n";
    ck_assert_int_eq(write(fd, text, sizeof text - 1), (ssize_t)sizeof text - 1);
    close(fd);
    static const char repo_litter[] = "docs/doc-block-litter.tmp";
    unlink(repo_litter); /* left by a run that crashed */
    bool git = true;
    free(untracked_files() ?: (git = false, NULL));
    char *errs = document_errors(doc);
    bool littered = unlink(repo_litter) == 0;
    unlink(doc);
    ck_assert_ptr_nonnull(errs);
    static const char *const wanted[] = {
        ":12 (2. Unmarked): a ```sh block without",
        "section \"3. Hangs\", block hang: timed out after 1 s",
        "block wrong: exit status 1, wanted 0",
        "block wrong: no line matches expect: ^never$",
        "block wrong: a line matches expect-not: ^oops$",
        "block leaves: left processes running",
        "a manual block needs its reason",
        "block litters: left litter.txt in the repository"};
    for (size_t i = 0; i < sizeof wanted / sizeof wanted[0]; i++)
        ck_assert_msg(strstr(errs, wanted[i]), "missing \"%s\" in:\n%s",
                      wanted[i], errs);
    ck_assert(littered);
    if (git) /* the file written through the docs/ symlink, seen by git */
        ck_assert_msg(strstr(errs, "block litters: left docs/doc-block-litter.tmp "
                             "in the repository"), "%s", errs);
    ck_assert_msg(!strstr(errs, "block good"), "%s", errs);
    ck_assert_msg(!strstr(errs, "block tidy"), "%s", errs);
    free(errs);
}
END_TEST

/* DOC_BLOCK=<id> that names no block is a typo, not a pass. */
START_TEST(doc_block_names_a_block)
{
    const char *only = getenv("DOC_BLOCK");
    if (!only || !*only)
        return;
    int found = 0;
    char *errs = NULL;
    for (size_t i = 0; i < sizeof docs / sizeof docs[0]; i++) {
        int n;
        struct block *blocks = find_blocks(docs[i], &n, &errs);
        for (int j = 0; j < n; j++)
            found += blocks[j].run && strcmp(blocks[j].id, only) == 0;
        free_blocks(blocks, n);
    }
    free(errs);
    ck_assert_msg(found > 0, "DOC_BLOCK=%s: no run block has that id", only);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("doc_blocks");
    TCase *tc = tcase_create("blocks");
    tcase_set_timeout(tc, 240); /* the blocks' own limits come first */
    /* One test per document, so one document's failure hides no other's. */
    tcase_add_loop_test(tc, blocks_run_as_written, 0,
                        (int)(sizeof docs / sizeof docs[0]));
    tcase_add_test(tc, doc_block_names_a_block);
    tcase_add_test(tc, faults_are_named);
    suite_add_tcase(s, tc);
    return harness_run(s);
}
