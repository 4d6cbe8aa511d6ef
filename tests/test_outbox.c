/* test_outbox: common/outbox, the file of promised jobs. What is replayed
 * at start (every job without an end, once per id, in order) and what the
 * compacted file then holds; lines a crash tore in the middle skipped with
 * a warning, never fatal; a job read back exactly as it was written; one
 * server per file; and the flush: "synced" only once fdatasync covered a
 * record, on the caller's thread or on the sync thread of 04 and 05.
 *
 * The module keeps one outbox per process (outbox_open once, in main):
 * Check runs each test in a process of its own, so each opens its own. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include "exchange.h"
#include "harness.h"
#include "log.h"
#include "outbox.h"

static char dir[] = "/tmp/test_outbox.XXXXXX";
static char path[256];

static void setup(void)
{
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/outbox.jsonl", dir);
    log_init("test_outbox", true);
}

static void teardown(void)
{
    char tmp[300];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    unlink(path);
    unlink(tmp);
    rmdir(dir);
}

static void write_file(const char *text)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

static char *file_text(void)
{
    char *t = harness_read_file(path);
    ck_assert_ptr_nonnull(t);
    return t;
}

#define JOB(id) "{\"outbox\":\"job\",\"request_id\":\"" id "\",\"exchange_rate\":2," \
                "\"bills\":[{\"denomination_id\":1,\"denomination\":1.5,\"count\":2}]}\n"
#define END(id) "{\"outbox\":\"end\",\"request_id\":\"" id "\"}\n"

static const char *replayed_id(size_t i)
{
    static struct exchange_request job;
    ck_assert(outbox_replay_job(i, &job));
    ck_assert_int_eq(job.slot, -1);
    return job.request_id;
}

/* Every job without an end is replayed, once per id, in the file's order;
 * torn and foreign lines are skipped; the file is rewritten with only the
 * jobs to replay. */
START_TEST(replays_jobs_without_an_end_and_compacts)
{
    write_file(JOB("a") JOB("b") END("a")
               "{\"outbox\":\"job\",\"request_id\":\"torn\",\"exch\n"
               "not json at all\n"
               "{\"outbox\":\"job\",\"request_id\":\"bad\",\"exchange_rate\":-1,"
               "\"bills\":[]}\n"
               "{\"outbox\":\"what\",\"request_id\":\"x\"}\n"
               JOB("c") JOB("b") END("nobody") JOB("a")
               "{\"outbox\":\"job\",\"request_id\":\"cut\"");
    ck_assert_int_eq(outbox_open(path, false), 0);
    ck_assert(outbox_enabled());
    ck_assert_int_eq(outbox_replay_count(), 3);
    ck_assert_str_eq(replayed_id(0), "b");
    ck_assert_str_eq(replayed_id(1), "c");
    ck_assert_str_eq(replayed_id(2), "a"); /* a new job after a's end */
    char *t = file_text();
    ck_assert_str_eq(t, JOB("b") JOB("c") JOB("a"));
    free(t);
    outbox_replay_done();
    ck_assert_int_eq(outbox_replay_count(), 0);
}
END_TEST

/* A missing file is an empty outbox; records go in one line each, with
 * their numbers as short as they read back; one server per file. */
START_TEST(records_are_lines_and_one_server_owns_the_file)
{
    ck_assert_int_eq(outbox_open(path, false), 0);
    ck_assert_int_eq(outbox_replay_count(), 0);
    struct exchange_request job;
    const char *body =
        "{\"request_id\":\"r\\u00e9 \\\"q\\\"\",\"exchange_rate\":0.1,"
        "\"bills\":[{\"denomination_id\":-7,\"denomination\":3775.55,"
        "\"count\":123456789},{\"denomination_id\":2,\"denomination\":1e-5,"
        "\"count\":0}]}";
    char err[160];
    ck_assert_int_eq(exchange_parse_request(body, strlen(body), &job, err,
                                            sizeof err), 0);
    ck_assert_int_eq(outbox_append_job(&job), 1);
    ck_assert_int_eq(outbox_append_job(&job), 2);
    outbox_add_end("other");
    char *t = file_text();
    ck_assert_ptr_nonnull(strstr(t, "\"exchange_rate\":0.1,"));
    ck_assert_ptr_nonnull(strstr(t, "\"denomination\":3775.55,"));
    int lines = 0;
    for (const char *c = t; *c; c++)
        lines += *c == '\n';
    ck_assert_int_eq(lines, 3);
    ck_assert_ptr_nonnull(strstr(t, "\n" END("other")));
    free(t);

    pid_t pid = fork(); /* the next start: another process, the same file */
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        /* The parent holds the file: a second server is refused. */
        if (outbox_open(path, false) == 0)
            _exit(3);
        _exit(0);
    }
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "a second server opened the outbox");
}
END_TEST

START_TEST(a_job_is_read_back_exactly)
{
    /* Written by one process, read by the next. */
    const char *body =
        "{\"request_id\":\"r\\u00e9 \\\"q\\\"\",\"exchange_rate\":0.1,"
        "\"bills\":[{\"denomination_id\":-7,\"denomination\":3775.55,"
        "\"count\":123456789},{\"denomination_id\":2,"
        "\"denomination\":0.30000000000000004,\"count\":0}]}";
    struct exchange_request job, back;
    char err[160];
    ck_assert_int_eq(exchange_parse_request(body, strlen(body), &job, err,
                                            sizeof err), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        if (outbox_open(path, false) != 0 || outbox_append_job(&job) == 0)
            _exit(1);
        _exit(0);
    }
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    ck_assert_int_eq(outbox_open(path, false), 0);
    ck_assert_int_eq(outbox_replay_count(), 1);
    ck_assert(outbox_replay_job(0, &back));
    ck_assert_str_eq(back.request_id, job.request_id);
    ck_assert(back.exchange_rate == job.exchange_rate);
    ck_assert_int_eq(back.num_bills, 2);
    for (size_t i = 0; i < 2; i++) {
        ck_assert(back.bills[i].denomination == job.bills[i].denomination);
        ck_assert_int_eq(back.bills[i].denomination_id,
                         job.bills[i].denomination_id);
        ck_assert_int_eq(back.bills[i].count, job.bills[i].count);
    }
}
END_TEST

/* Without an outbox nothing is written, and the ok stays in memory. */
START_TEST(no_outbox_no_record)
{
    ck_assert_int_eq(outbox_open(NULL, false), 0);
    ck_assert(!outbox_enabled());
    struct exchange_request job = {.request_id = "m", .num_bills = 0};
    ck_assert_int_eq(outbox_append_job(&job), 0);
    ck_assert_int_eq(outbox_add_job(&job), OUTBOX_MEMORY);
    outbox_add_end("m");
    ck_assert_ptr_nonnull(strstr(outbox_fate(), "lost"));
    ck_assert_ptr_null(outbox_level_name(OUTBOX_MEMORY));
    ck_assert_str_eq(outbox_level_name(OUTBOX_WRITTEN), "written");
    ck_assert_str_eq(outbox_level_name(OUTBOX_SYNCED), "synced");
}
END_TEST

static struct exchange_request one_job(const char *id)
{
    struct exchange_request job;
    char body[256], err[160];
    snprintf(body, sizeof body,
             "{\"request_id\":\"%s\",\"exchange_rate\":2,\"bills\":["
             "{\"denomination_id\":1,\"denomination\":1.5,\"count\":2}]}", id);
    ck_assert_int_eq(exchange_parse_request(body, strlen(body), &job, err,
                                            sizeof err), 0);
    return job;
}

static void *add_synced(void *arg)
{
    struct exchange_request job = one_job("t");
    for (int i = 0; i < 20; i++)
        if (outbox_add_job(&job) != OUTBOX_SYNCED)
            *(int *)arg += 1;
    return NULL;
}

/* --outbox-sync: every job's level is "synced"; threads share flushes. */
START_TEST(sync_says_synced_from_any_thread)
{
    ck_assert_int_eq(outbox_open(path, true), 0);
    ck_assert(outbox_syncs());
    struct exchange_request job = one_job("s");
    ck_assert_int_eq(outbox_add_job(&job), OUTBOX_SYNCED);
    int misses[4] = {0};
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(pthread_create(&t[i], NULL, add_synced, &misses[i]),
                         0);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(misses[i], 0);
    ck_assert(outbox_sync(81)); /* every ticket so far */
}
END_TEST

/* Without --outbox-sync a record is only written. */
START_TEST(without_sync_says_written)
{
    ck_assert_int_eq(outbox_open(path, false), 0);
    ck_assert(!outbox_syncs());
    struct exchange_request job = one_job("w");
    ck_assert_int_eq(outbox_add_job(&job), OUTBOX_WRITTEN);
}
END_TEST

/* 04 and 05's way: the flush thread covers what was written before the
 * ask, and its pipe wakes the loop. */
START_TEST(the_sync_thread_flushes_and_wakes_the_loop)
{
    ck_assert_int_eq(outbox_open(path, true), 0);
    ck_assert_int_eq(outbox_syncer_start(), 0);
    struct exchange_request job = one_job("l");
    uint64_t a = outbox_append_job(&job), b = outbox_append_job(&job);
    ck_assert(a > 0 && b > a);
    ck_assert_int_eq(outbox_syncer_level(b), OUTBOX_MEMORY);
    outbox_syncer_ask();
    struct pollfd p = {.fd = outbox_syncer_fd(), .events = POLLIN};
    double give_up = harness_now() + 5;
    while (outbox_syncer_level(b) == OUTBOX_MEMORY) {
        ck_assert_msg(harness_now() < give_up, "no flush within 5 s");
        ck_assert_int_ge(poll(&p, 1, 1000), 0);
        outbox_syncer_woken();
    }
    ck_assert_int_eq(outbox_syncer_level(a), OUTBOX_SYNCED);
    ck_assert_int_eq(outbox_syncer_level(b), OUTBOX_SYNCED);
    ck_assert_int_eq(outbox_syncer_level(b + 1), OUTBOX_MEMORY);
    outbox_syncer_stop();
}
END_TEST

/* A file that cannot be made is said at start, not at the first job. */
/* Two servers starting at once on one file: the second opens the file
 * while the first holds it, and waits for its lock. The first compacts:
 * a new file, locked, renamed over the name, and only then the old one
 * closed. The lock the second then gets is on a file that has no name any
 * more; it must look again, find the new file held, and be refused (with
 * the old file's lock it would own a stale copy and both would replay). */
START_TEST(a_server_waiting_on_a_replaced_file_is_refused)
{
    write_file(JOB("a"));
    int old = open(path, O_RDWR);
    ck_assert_int_ge(old, 0);
    ck_assert_int_eq(flock(old, LOCK_EX), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) { /* not the parent's copy of old: a lock goes with it */
        close(old);
        _exit(outbox_open(path, false) == 0 ? 3 : 0);
    }
    harness_sleep_ms(150); /* the second server is waiting on old */
    char tmp[300];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fresh = open(tmp, O_RDWR | O_CREAT | O_TRUNC, 0644);
    ck_assert_int_ge(fresh, 0);
    ck_assert_int_eq(flock(fresh, LOCK_EX), 0);
    ck_assert_int_eq(rename(tmp, path), 0);
    close(old);
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    close(fresh);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "the second server took the replaced file's lock");
}
END_TEST

START_TEST(an_unusable_path_fails_at_start)
{
    char bad[300];
    snprintf(bad, sizeof bad, "%s/no/such/folder/outbox", dir);
    ck_assert_int_eq(outbox_open(bad, false), -1);
    ck_assert(!outbox_enabled());
}
END_TEST

int main(void)
{
    Suite *s = suite_create("outbox");
    TCase *tc = tcase_create("file");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, replays_jobs_without_an_end_and_compacts);
    tcase_add_test(tc, records_are_lines_and_one_server_owns_the_file);
    tcase_add_test(tc, a_job_is_read_back_exactly);
    tcase_add_test(tc, no_outbox_no_record);
    tcase_add_test(tc, sync_says_synced_from_any_thread);
    tcase_add_test(tc, without_sync_says_written);
    tcase_add_test(tc, the_sync_thread_flushes_and_wakes_the_loop);
    tcase_add_test(tc, a_server_waiting_on_a_replaced_file_is_refused);
    tcase_add_test(tc, an_unusable_path_fails_at_start);
    suite_add_tcase(s, tc);
    return harness_run(s);
}
