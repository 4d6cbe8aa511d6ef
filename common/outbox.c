/* outbox: see outbox.h. The file at start (open, read, compact), then the
 * records while the server runs, then the flush and its thread. */
#include "outbox.h"

#include <cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "timer.h"

#define REPLAY_BUCKETS 4096 /* the id index while reading; power of two */
/* How long a start waits for the file's lock: the processes of a server
 * killed a moment ago (02's children, --workers) hold it until they die
 * with their parent (PR_SET_PDEATHSIG), a few milliseconds later. */
#define LOCK_WAIT_MS 500

/* One job of the file waiting for replay: its line, found by its id. */
struct pending {
    char *line;            /* the record, without its newline */
    char id[EXCHANGE_MAX_ID_LEN + 1];
    bool ended;            /* an end record came after it */
    struct pending *hnext; /* the id index's chain */
};

static struct {
    const char *path;
    int fd;                   /* O_APPEND; -1: no outbox */
    bool sync;                /* --outbox-sync */
    char fate[512];           /* outbox_fate's text */
    struct pending *replay;   /* the jobs without an end, in file order */
    size_t replay_len;

    /* The flush. A ticket is handed out after its write returned, so
     * every ticket up to `appended` is in the page cache. */
    atomic_uint_fast64_t appended;
    pthread_mutex_t lock;     /* guards what follows */
    pthread_cond_t flushed;
    bool flushing;            /* one fdatasync at a time */
    uint64_t synced_upto;     /* every ticket up to this is on disk */
    bool broken;              /* a flush failed: no more "synced" */

    /* The sync thread of 04 and 05. */
    pthread_t syncer;
    bool syncer_running, syncer_stop;
    pthread_cond_t asked_cond;
    uint64_t asked, seen;     /* requests made, requests taken */
    int wake[2];              /* its pipe to the loop */
} ob = {.fd = -1, .lock = PTHREAD_MUTEX_INITIALIZER,
        .flushed = PTHREAD_COND_INITIALIZER,
        .asked_cond = PTHREAD_COND_INITIALIZER, .wake = {-1, -1}};

const char *outbox_level_name(enum outbox_level level)
{
    switch (level) {
    case OUTBOX_WRITTEN:
        return "written";
    case OUTBOX_SYNCED:
        return "synced";
    case OUTBOX_MEMORY:
        break;
    }
    return NULL;
}

bool outbox_enabled(void) { return ob.fd >= 0; }

bool outbox_syncs(void) { return ob.fd >= 0 && ob.sync; }

const char *outbox_fate(void)
{
    return ob.fd >= 0 ? ob.fate
                      : "lost: it lived in this process's memory only "
                        "(--outbox keeps jobs across a restart)";
}

/* ---- Reading the file at start ---- */

/* The whole file from offset 0, NUL-terminated (malloc'd), or NULL. */
static char *read_all(int fd, size_t *len)
{
    size_t cap = 65536, n = 0;
    char *buf = malloc(cap + 1);
    while (buf) {
        ssize_t r = pread(fd, buf + n, cap - n, (off_t)n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            free(buf);
            return NULL;
        }
        if (r == 0)
            break;
        n += (size_t)r;
        if (n == cap) {
            char *bigger = realloc(buf, 2 * cap + 1);
            if (!bigger)
                free(buf);
            buf = bigger;
            cap *= 2;
        }
    }
    if (buf)
        buf[n] = '\0';
    *len = n;
    return buf;
}

static size_t id_hash(const char *id)
{
    size_t h = 1469598103934665603ULL; /* FNV-1a */
    for (; *id; id++)
        h = (h ^ (unsigned char)*id) * 1099511628211ULL;
    return h & (REPLAY_BUCKETS - 1);
}

/* What one line is: 'j' a job (validated), 'e' an end, 0 not a record
 * (why says what is wrong with it). *id gets the request id. */
static char read_record(const char *line, size_t len, char *id, char *why,
                        size_t why_len)
{
    cJSON *root = cJSON_ParseWithLength(line, len);
    const cJSON *kind = cJSON_GetObjectItemCaseSensitive(root, "outbox");
    const cJSON *rid = cJSON_GetObjectItemCaseSensitive(root, "request_id");
    char type = 0;
    snprintf(why, why_len, "not a whole record (a crash in the middle of "
                           "a write?)");
    if (cJSON_IsString(kind) && cJSON_IsString(rid) &&
        strlen(rid->valuestring) <= EXCHANGE_MAX_ID_LEN) {
        snprintf(id, EXCHANGE_MAX_ID_LEN + 1, "%s", rid->valuestring);
        if (strcmp(kind->valuestring, "end") == 0) {
            type = 'e';
        } else if (strcmp(kind->valuestring, "job") == 0) {
            struct exchange_request req;
            type = exchange_parse_request(line, len, &req, why, why_len) == 0
                       ? 'j' : 0;
        }
    }
    cJSON_Delete(root);
    return type;
}

/* Adds a job line to the replay list unless its id waits already (one
 * job per id); marks the waiting job of an end's id as ended. */
static int note_record(char type, const char *id, const char *line,
                       size_t len, struct pending **index, size_t *cap)
{
    struct pending *p = index[id_hash(id)];
    while (p && (p->ended || strcmp(p->id, id) != 0))
        p = p->hnext;
    if (type == 'e') {
        if (p)
            p->ended = true;
        return 0;
    }
    if (p)
        return 0; /* the same job again: one is enough */
    if (ob.replay_len == *cap) {
        size_t bigger = *cap ? 2 * *cap : 64;
        struct pending *r = realloc(ob.replay, bigger * sizeof *r);
        if (!r)
            return -1;
        /* The chains point into the array: rebuild them after a move. */
        memset(index, 0, REPLAY_BUCKETS * sizeof *index);
        for (size_t i = 0; i < ob.replay_len; i++) {
            size_t h = id_hash(r[i].id);
            r[i].hnext = index[h];
            index[h] = &r[i];
        }
        ob.replay = r;
        *cap = bigger;
    }
    struct pending *n = &ob.replay[ob.replay_len];
    n->line = strndup(line, len);
    if (!n->line)
        return -1;
    snprintf(n->id, sizeof n->id, "%s", id);
    n->ended = false;
    size_t h = id_hash(id);
    n->hnext = index[h];
    index[h] = n;
    ob.replay_len++;
    return 0;
}

/* Keeps only the jobs that did not end, in order. */
static void drop_ended(void)
{
    size_t kept = 0;
    for (size_t i = 0; i < ob.replay_len; i++) {
        if (ob.replay[i].ended)
            free(ob.replay[i].line);
        else
            ob.replay[kept++] = ob.replay[i];
    }
    ob.replay_len = kept;
}

/* Reads every record of text; a line that is not one is skipped with a
 * warning. -1 only when out of memory. */
static int read_records(const char *text, size_t len)
{
    struct pending **index = calloc(REPLAY_BUCKETS, sizeof *index);
    size_t cap = 0, line_no = 0, skipped = 0;
    int rc = index ? 0 : -1;
    for (size_t at = 0; rc == 0 && at < len; line_no++) {
        const char *line = text + at;
        const char *nl = memchr(line, '\n', len - at);
        size_t n = nl ? (size_t)(nl - line) : len - at;
        at += n + 1;
        if (n == 0)
            continue;
        char id[EXCHANGE_MAX_ID_LEN + 1], why[160];
        char type = read_record(line, n, id, why, sizeof why);
        if (type == 0) {
            log_warn("outbox %s, line %zu: skipped: %s", ob.path, line_no + 1,
                     why);
            skipped++;
            continue;
        }
        rc = note_record(type, id, line, n, index, &cap);
    }
    free(index);
    drop_ended();
    if (skipped)
        log_warn("outbox %s: %zu line%s skipped", ob.path, skipped,
                 skipped == 1 ? "" : "s");
    return rc;
}

/* ---- Compacting it ---- */

/* Writes all of buf to fd. 0, or -1 with errno. */
static int write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/* fsync of the folder that holds path, so a rename in it is on disk. */
static int sync_folder(const char *path)
{
    char *copy = strdup(path);
    int fd = copy ? open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC)
                  : -1;
    int rc = fd >= 0 ? fsync(fd) : -1;
    if (fd >= 0)
        close(fd);
    free(copy);
    return rc;
}

/* A new file beside path with only the replay list, locked and synced,
 * renamed over path: a crash at any moment leaves either the old file or
 * the new one. Returns the new file's descriptor (O_APPEND), or -1. */
static int compact(const char *path)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp) {
        errno = ENAMETOOLONG;
        return -1;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC,
                  0644);
    if (fd < 0)
        return -1;
    int rc = flock(fd, LOCK_EX | LOCK_NB);
    for (size_t i = 0; rc == 0 && i < ob.replay_len; i++)
        rc = write_all(fd, ob.replay[i].line, strlen(ob.replay[i].line)) ||
             write_all(fd, "\n", 1);
    if (rc == 0)
        rc = fsync(fd);
    if (rc == 0)
        rc = rename(tmp, path);
    if (rc == 0)
        rc = sync_folder(path);
    if (rc != 0) {
        int err = errno;
        close(fd);
        errno = err;
        return -1;
    }
    return fd;
}

/* The exclusive lock on fd, waiting up to LOCK_WAIT_MS for it. 0, or -1
 * with errno (EWOULDBLOCK: still held). */
static int lock_or_wait(int fd)
{
    for (int waited = 0;; waited += 50) {
        if (flock(fd, LOCK_EX | LOCK_NB) == 0)
            return 0;
        if (errno != EWOULDBLOCK || waited >= LOCK_WAIT_MS)
            return -1;
        timer_nanosleep_ms(50);
    }
}

/* True if fd is still the file named path. */
static bool is_named(int fd, const char *path)
{
    struct stat held, named;
    return fstat(fd, &held) == 0 && stat(path, &named) == 0 &&
           held.st_dev == named.st_dev && held.st_ino == named.st_ino;
}

/* path opened and locked: the file that has the name once the lock is
 * ours. A server that held the lock compacts by renaming a new file over
 * the name and only then closes the old one, so a second server that was
 * waiting on the old file may get its lock with the name already moved
 * on: it must open the name again, or two servers would own one outbox.
 * The descriptor, or -1 with errno (EWOULDBLOCK: another server has it). */
static int open_locked(const char *path)
{
    for (int tries = 0; tries < 4; tries++) { /* each waits LOCK_WAIT_MS */
        int fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fd < 0)
            return -1;
        if (lock_or_wait(fd) < 0) {
            int err = errno;
            close(fd);
            errno = err;
            return -1;
        }
        if (is_named(fd, path))
            return fd;
        close(fd); /* the name is a newer file now: wait on that one */
    }
    errno = EWOULDBLOCK; /* renamed under us again and again: in use */
    return -1;
}

int outbox_open(const char *path, bool sync)
{
    if (path == NULL)
        return 0;
    ob.path = path;
    ob.sync = sync;
    int fd = open_locked(path);
    if (fd < 0) {
        fprintf(stderr, "--outbox %s: %s\n", path, errno == EWOULDBLOCK
                ? "another server is using it" : strerror(errno));
        return -1;
    }
    size_t len = 0;
    char *text = read_all(fd, &len);
    int rc = text ? read_records(text, len) : -1;
    free(text);
    int fresh = rc == 0 ? compact(path) : -1;
    if (fresh < 0) {
        fprintf(stderr, "--outbox %s: %s\n", path, strerror(errno));
        close(fd);
        outbox_replay_done();
        return -1;
    }
    close(fd); /* the old file, now unlinked; its lock goes with it */
    ob.fd = fresh;
    snprintf(ob.fate, sizeof ob.fate,
             "kept in the outbox %s: replayed at the next start", path);
    log_info("outbox %s: %zu job%s to replay%s", path, ob.replay_len,
             ob.replay_len == 1 ? "" : "s",
             sync ? "; every ok waits for fdatasync (--outbox-sync)" : "");
    return 0;
}

size_t outbox_replay_count(void) { return ob.replay_len; }

bool outbox_replay_job(size_t i, struct exchange_request *out)
{
    if (i >= ob.replay_len)
        return false;
    const char *line = ob.replay[i].line;
    char why[160];
    return exchange_parse_request(line, strlen(line), out, why,
                                  sizeof why) == 0;
}

void outbox_replay_done(void)
{
    for (size_t i = 0; i < ob.replay_len; i++)
        free(ob.replay[i].line);
    free(ob.replay);
    ob.replay = NULL;
    ob.replay_len = 0;
}

/* ---- Records while the server runs ---- */

/* One record, one write(). A write cut short (a full disk) leaves a torn
 * line: a newline ends it, so the next record starts clean and the reader
 * skips only the torn one. True if written whole. */
static bool append_line(const char *record)
{
    size_t len = strlen(record);
    for (;;) {
        ssize_t n = write(ob.fd, record, len);
        if (n == (ssize_t)len)
            return true;
        if (n < 0 && errno == EINTR)
            continue;
        int err = n < 0 ? errno : ENOSPC;
        if (n > 0 && write(ob.fd, "\n", 1) < 0)
            err = errno;
        log_warn("outbox %s: %s", ob.path, strerror(err));
        return false;
    }
}

/* "{"outbox":KIND," + rest of an object (its "{" dropped) + "\n". */
static char *record_of(const char *kind, const char *object)
{
    char *line = NULL;
    if (object && asprintf(&line, "{\"outbox\":\"%s\",%s\n", kind,
                           object + 1) < 0)
        line = NULL;
    return line;
}

uint64_t outbox_append_job(const struct exchange_request *job)
{
    if (ob.fd < 0)
        return 0;
    char *body = exchange_request_body(job);
    char *line = record_of("job", body);
    bool ok = line && append_line(line);
    if (!line)
        log_warn("outbox %s: out of memory for job %s", ob.path,
                 job->request_id);
    free(line);
    free(body);
    return ok ? atomic_fetch_add(&ob.appended, 1) + 1 : 0;
}

void outbox_add_end(const char *request_id)
{
    if (ob.fd < 0)
        return;
    char *object = exchange_json_object("request_id", request_id,
                                        (char *)NULL);
    char *line = record_of("end", object);
    if (!line || !append_line(line))
        log_warn("outbox %s: the end of job %s is not written: it will be "
                 "replayed at the next start", ob.path, request_id);
    free(line);
    free(object);
}

/* ---- The flush ---- */

bool outbox_sync(uint64_t ticket)
{
    pthread_mutex_lock(&ob.lock);
    while (ticket > ob.synced_upto && !ob.broken) {
        if (ob.flushing) { /* another flush runs: it may cover us */
            pthread_cond_wait(&ob.flushed, &ob.lock);
            continue;
        }
        ob.flushing = true;
        uint64_t target = atomic_load(&ob.appended);
        pthread_mutex_unlock(&ob.lock);
        int rc = fdatasync(ob.fd);
        int err = errno;
        pthread_mutex_lock(&ob.lock);
        if (rc == 0 && target > ob.synced_upto)
            ob.synced_upto = target;
        if (rc != 0) {
            /* The kernel may have dropped the pages it could not write and
             * forgotten the error: a later flush that succeeds proves
             * nothing (PostgreSQL's "fsyncgate", 2018). No more "synced". */
            ob.broken = true;
            log_warn("outbox %s: fdatasync: %s; oks say \"written\" from now "
                     "on", ob.path, strerror(err));
        }
        ob.flushing = false;
        pthread_cond_broadcast(&ob.flushed);
    }
    bool on_disk = ticket <= ob.synced_upto;
    pthread_mutex_unlock(&ob.lock);
    return on_disk;
}

enum outbox_level outbox_add_job(const struct exchange_request *job)
{
    uint64_t ticket = outbox_append_job(job);
    if (ticket == 0)
        return OUTBOX_MEMORY;
    if (!ob.sync)
        return OUTBOX_WRITTEN;
    return outbox_sync(ticket) ? OUTBOX_SYNCED : OUTBOX_WRITTEN;
}

/* ---- 04 and 05: the flush on a thread ---- */

/* Waits to be asked, flushes what was written by then (one fdatasync for
 * every request that came meanwhile), tells the loop, again. */
static void *syncer_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&ob.lock);
    for (;;) {
        while (!ob.syncer_stop && ob.asked == ob.seen)
            pthread_cond_wait(&ob.asked_cond, &ob.lock);
        if (ob.syncer_stop)
            break;
        ob.seen = ob.asked;
        pthread_mutex_unlock(&ob.lock);
        outbox_sync(atomic_load(&ob.appended));
        ssize_t ignored = write(ob.wake[1], "s", 1); /* full: awake already */
        (void)ignored;
        pthread_mutex_lock(&ob.lock);
    }
    pthread_mutex_unlock(&ob.lock);
    return NULL;
}

int outbox_syncer_start(void)
{
    if (pipe2(ob.wake, O_CLOEXEC | O_NONBLOCK) < 0) {
        log_warn("outbox: pipe: %s", strerror(errno));
        return -1;
    }
    int err = pthread_create(&ob.syncer, NULL, syncer_main, NULL);
    if (err) {
        log_warn("outbox: the sync thread: %s", strerror(err));
        close(ob.wake[0]);
        close(ob.wake[1]);
        ob.wake[0] = ob.wake[1] = -1;
        return -1;
    }
    ob.syncer_running = true;
    return 0;
}

int outbox_syncer_fd(void) { return ob.wake[0]; }

void outbox_syncer_ask(void)
{
    pthread_mutex_lock(&ob.lock);
    ob.asked++;
    pthread_cond_signal(&ob.asked_cond);
    pthread_mutex_unlock(&ob.lock);
}

void outbox_syncer_woken(void)
{
    char buf[64];
    while (read(ob.wake[0], buf, sizeof buf) > 0)
        ;
}

enum outbox_level outbox_syncer_level(uint64_t ticket)
{
    pthread_mutex_lock(&ob.lock);
    enum outbox_level level = ticket <= ob.synced_upto ? OUTBOX_SYNCED
                              : ob.broken              ? OUTBOX_WRITTEN
                                                       : OUTBOX_MEMORY;
    pthread_mutex_unlock(&ob.lock);
    return level;
}

void outbox_syncer_stop(void)
{
    if (!ob.syncer_running)
        return;
    pthread_mutex_lock(&ob.lock);
    ob.syncer_stop = true;
    pthread_cond_signal(&ob.asked_cond);
    pthread_mutex_unlock(&ob.lock);
    pthread_join(ob.syncer, NULL);
    ob.syncer_running = false;
    close(ob.wake[0]);
    close(ob.wake[1]);
    ob.wake[0] = ob.wake[1] = -1;
}
