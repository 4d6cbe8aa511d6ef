/* tasklist: SIGQUIT asks a running server what each of its connections
 * (05) or coroutines (06) is doing, and for how long. libtask prints its
 * tasks on SIGQUIT; Python 3.14 lists an asyncio program's tasks with
 * `python -m asyncio ps PID`. A server that can say what it is doing needs
 * no debugger to answer "why is this request still waiting?".
 *
 * The handler does what the stop handler does (common/shutdown): it
 * writes one byte to a pipe and returns. The loop watches the pipe like
 * any socket; between two callbacks it drains it and prints the list, so
 * the list is always of a consistent state (a handler that printed would
 * interrupt a callback half way), and nothing in the handler is unsafe in
 * a signal. Then the server goes on serving.
 *
 * The list goes to stderr, the log, between a "tasks:" line and a "tasks:
 * end" line, a line per task (even with --quiet: it was asked for):
 *
 *   tasks: 06-coroutines pid 4121, 1 connections, 0 jobs
 *     co 1    list_tasks           running      - ms  (printing this list)
 *     co 2    accept_loop          parked    2510 ms  read fd 5
 *     co 4    serve_connection     parked     250 ms  sleep, ends in 250 ms
 *   tasks: end
 *
 * Ctrl-\ in the server's terminal sends SIGQUIT to it; tools/tasks sends
 * it to a server by port or pid and prints the list. With --workers each
 * worker prints its own (the parent ignores SIGQUIT). */
#ifndef COMMON_TASKLIST_H
#define COMMON_TASKLIST_H

/* Creates the pipe and installs the SIGQUIT handler (SA_RESTART). Once
 * per process, in the process that runs the loop (each worker). 0, or -1
 * with errno. */
int tasklist_init(void);

/* The pipe's read end: readable once SIGQUIT came. Non-blocking. */
int tasklist_fd(void);

/* Reads everything the pipe holds, so that it is readable again only at
 * the next SIGQUIT (a level-triggered loop would otherwise print the list
 * on every turn). */
void tasklist_drain(void);

/* One line of the list on stderr, formatted as printf does, with one
 * write(2): lines from other processes never cut into it. */
void tasklist_line(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
