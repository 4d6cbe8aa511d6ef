/* outbox: --outbox FILE, the async jobs a server has promised, written
 * down before the promise, so that a crash or a restart loses none.
 *
 * Without it an {"status":"ok"} lives in the server's memory: a restart,
 * a crash or a kill -9 between the ok and the delivered callback loses
 * the job, and nobody learns of it (at most once). With it the job is
 * appended to FILE before the ok is sent (the answer waits for the
 * write), its end (the callback delivered or given up) is appended
 * after, and at start the server replays every job without an end: a job
 * is done at least once. With the main service's idempotency key (it
 * stores one result per request_id, tools/main-service) the result is
 * stored exactly once. This is the transactional outbox of the
 * microservice books, with a file for the table.
 *
 * The file: JSON lines, one record a line, each written by one write():
 *   {"outbox":"job","request_id":"r1","exchange_rate":2,"bills":[...]}
 *   {"outbox":"end","request_id":"r1"}
 * A job record is a request body (exchange_parse_request reads it back,
 * the unknown "outbox" member ignored), its numbers written with 17
 * digits so they come back to the same doubles. The request_id names the
 * job: an end ends every job of that id written before it (the main
 * service keeps one result per id anyway).
 *
 * At start (outbox_open) the file is read, the jobs without an end are
 * kept for replay, and the file is rewritten with only those (compacted:
 * a new file beside it, synced, renamed over it). A line that is not a
 * whole record, such as the last one of a crash in the middle of a write,
 * is skipped with a warning, never fatal. The file grows by two lines a
 * job while the server runs; the next start compacts it.
 *
 * One writer: one server owns the file (an exclusive flock, taken at
 * start; a second server on the same file is refused: it would replay the
 * same jobs; a start waits up to half a second for it, while the processes of a
 * server killed a moment ago die). Inside that server every process and thread appends to the
 * same O_APPEND descriptor, one write() per record: Linux writes a
 * regular file under its inode lock, so records of 02's children, 03's
 * threads or --workers never interleave (POSIX promises this only for
 * pipes, up to PIPE_BUF). The alternatives were worse: a file per worker
 * ties the outbox to --workers N (restart with another N and some files
 * are never read), and 02 has a process per connection. Compaction runs
 * only at start, before any other process or thread exists.
 *
 * How durable: a write() is in the kernel's page cache when it returns,
 * so it survives the server's crash (kill -9) but not the machine's (a
 * power cut, a kernel panic): the answer says "durable":"written".
 * --outbox-sync adds fdatasync before the ok, "durable":"synced": it
 * survives those too, on a disk that honours flushes, at the price of a
 * disk flush per ok. Syncs are grouped: one fdatasync covers every record
 * written before it began (outbox_sync), so threads that wait together
 * pay for one flush. The blocking stages (01-03) wait for it in the
 * calling thread, 06 in its worker pool (co_run_blocking); 04 and 05 must
 * not stop their one thread for a disk flush, so a thread of this module
 * does it and wakes their loop through a pipe (outbox_syncer_*). */
#ifndef COMMON_OUTBOX_H
#define COMMON_OUTBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "exchange.h"

/* How durable a job's record is, as the async answer says it. */
enum outbox_level {
    OUTBOX_MEMORY,  /* no outbox, or the write failed: {"status":"ok"} */
    OUTBOX_WRITTEN, /* written: "durable":"written" */
    OUTBOX_SYNCED,  /* written and fdatasync'd: "durable":"synced" */
};

/* The value of the answer's "durable" member for level, or NULL (none). */
const char *outbox_level_name(enum outbox_level level);

/* Opens path as this server's outbox (sync: --outbox-sync), reads it,
 * keeps its jobs without an end for replay and compacts it. Once, in main,
 * before any fork or thread. path NULL: no outbox, 0. 0, or -1 after
 * saying why on stderr (another server owns the file, or it cannot be
 * read or rewritten). */
int outbox_open(const char *path, bool sync);

/* True once outbox_open opened a file. */
bool outbox_enabled(void);

/* What a stop's report says about a job it did not deliver: kept in the
 * outbox for the next start, or lost. */
const char *outbox_fate(void);

/* The jobs read at start that wait for replay, in the file's order: how
 * many, and the i-th read back into *out (exchange_parse_request; slot
 * -1): false if it cannot be (out of memory). */
size_t outbox_replay_count(void);
bool outbox_replay_job(size_t i, struct exchange_request *out);

/* Frees the replay list (the jobs have been started). */
void outbox_replay_done(void);

/* Appends job's record (one write()). A ticket for outbox_sync (> 0), or
 * 0 if there is no outbox or the write failed (logged): the job then
 * lives in memory only. Thread-safe. */
uint64_t outbox_append_job(const struct exchange_request *job);

/* Waits until every record up to ticket is on disk (fdatasync), grouping
 * waiters: one flush serves everyone whose record was written before it
 * began. True if it is; false if the flush failed (logged). Blocks the
 * caller; thread-safe. */
bool outbox_sync(uint64_t ticket);

/* What the blocking stages do before an ok: outbox_append_job, then with
 * --outbox-sync outbox_sync. The level reached. */
enum outbox_level outbox_add_job(const struct exchange_request *job);

/* Appends the end record of request_id: its callback was delivered or
 * given up, so it is not replayed. Thread-safe; nothing without an
 * outbox. */
void outbox_add_end(const char *request_id);

/* True with --outbox-sync. */
bool outbox_syncs(void);

/* ---- 04 and 05: the flush on a thread of its own ---- */

/* Starts the sync thread (in the process that will use it: after fork).
 * 0, or -1 (logged). */
int outbox_syncer_start(void);

/* Readable when a flush has ended: call outbox_syncer_woken, then
 * outbox_syncer_level for each waiting ticket. */
int outbox_syncer_fd(void);

/* Asks the thread to flush every record written so far; returns at once. */
void outbox_syncer_ask(void);

/* Empties outbox_syncer_fd, so the loop waits for the next flush. */
void outbox_syncer_woken(void);

/* What the flushes so far did for ticket: OUTBOX_SYNCED (on disk),
 * OUTBOX_WRITTEN (a flush that covered it failed: written only), or
 * OUTBOX_MEMORY (none has covered it yet: keep waiting). */
enum outbox_level outbox_syncer_level(uint64_t ticket);

/* Stops and joins the sync thread. */
void outbox_syncer_stop(void);

#endif
