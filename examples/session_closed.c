/* session_closed: aiohttp's "Session is closed" is C's use-after-free.
 *
 * Section 8 ("Session is closed"). asyncio original (the fourth seed
 * lecture's Example 1):
 *
 *   async with aiohttp.ClientSession() as session:
 *       task = asyncio.create_task(session.get(url))   # not awaited here
 *   await task     # RuntimeError: Session is closed
 *
 * The task outlives the `async with` that owned the session. Python
 * notices, because the closed session object still exists and knows it
 * is closed. In C the session is freed memory: the late task reads it
 * anyway, and without a sanitizer it may even seem to work. Build it with
 * AddressSanitizer and the first bad read stops the program with a
 * report headed "heap-use-after-free":
 *   cc -fsanitize=address -g examples/session_closed.c -o /tmp/session_closed
 * (make examples builds it plainly too, but the plain binary is not meant
 * to be run: reading freed memory is undefined behaviour.)
 * Tasks here are a list of pending calls run after the block, as a loop
 * would run them. The fix is the seed's: await the task before the block
 * ends (run the pending calls before session_close). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct session {
    char base_url[64];
    int requests;
};

typedef void (*task_fn)(struct session *);
struct pending { task_fn fn; struct session *s; };
static struct pending queue[4];
static int queued;

static void create_task(task_fn fn, struct session *s)
{
    if (queued < 4)
        queue[queued++] = (struct pending){fn, s};
}

/* Runs every pending task once; a task that has run is forgotten (its
 * entry cleared, as a loop drops a finished task). */
static void run_pending(void)
{
    for (int i = 0; i < queued; i++) {
        queue[i].fn(queue[i].s);
        queue[i] = (struct pending){0};
    }
    queued = 0;
}

static void get(struct session *s)
{
    s->requests++;
    printf("GET %s/ (request %d of this session)\n", s->base_url, s->requests);
}

int main(void)
{
    /* async with ClientSession() as session: */
    struct session *session = calloc(1, sizeof *session);
    if (!session)
        return 1;
    strcpy(session->base_url, "http://127.0.0.1:8005");
    create_task(get, session);      /* task = create_task(session.get(...)) */
    free(session);                  /* the block ends: the session closes */

    run_pending();                  /* await task: too late */
    return 0;
}
