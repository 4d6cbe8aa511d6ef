/* probe: --watch-pid, the server's memory, threads and CPU time
 * read from /proc while it serves us. */
#include "loadgen.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* utime+stime+cutime+cstime in clock ticks (fields 14-17 of stat; the
 * children's part grows as the server reaps them), or -1. */
static long long proc_cpu_ticks_one(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')'); /* the name may hold spaces */
    if (!p)
        return -1;
    long long v[4];
    /* after ')': state(3) ppid pgrp session tty tpgid flags minflt cminflt
     * majflt cmajflt(13), then utime stime cutime cstime. */
    if (sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u "
                      "%lld %lld %lld %lld",
               &v[0], &v[1], &v[2], &v[3]) != 4)
        return -1;
    return v[0] + v[1] + v[2] + v[3];
}

/* The children of pid's main thread (the one that forks: 02's per
 * connection, 05 and 06's --workers), from /proc, or NULL. */
static FILE *children_of(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task/%d/children", (int)pid,
             (int)pid);
    return fopen(path, "re");
}

/* The server's CPU time: its own and its reaped children's (stat), and
 * its live children's, such as --workers' processes, which are reaped
 * only when the server stops. -1 if it is gone. */
static long long proc_cpu_ticks(pid_t pid)
{
    long long sum = proc_cpu_ticks_one(pid);
    FILE *f = sum < 0 ? NULL : children_of(pid);
    if (f) {
        int child;
        while (fscanf(f, "%d", &child) == 1) {
            long long c = proc_cpu_ticks_one(child);
            if (c > 0) /* a child reaped meanwhile counts in cutime */
                sum += c;
        }
        fclose(f);
    }
    return sum;
}

/* VmRSS (kB) and Threads of one process; false if it is gone. */
static bool proc_status(pid_t pid, long *rss_kb, long *threads)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return false;
    *rss_kb = 0;
    *threads = 0;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "VmRSS:", 6) == 0)
            *rss_kb = atol(line + 6);
        else if (strncmp(line, "Threads:", 8) == 0)
            *threads = atol(line + 8);
    }
    fclose(f);
    return true;
}

/* One sample of the server and its children (02's per-connection
 * processes). Children are listed by the kernel in
 * /proc/PID/task/PID/children (the children of the main thread, which is
 * the one that forks in 02). The sum of RSS counts memory shared by fork
 * once per process, as ps does: an upper bound. */
void watch_sample(struct server_watch *w)
{
    long rss, thr, sum_rss = 0, sum_thr = 0, procs = 0;
    if (!proc_status(w->pid, &rss, &thr)) {
        w->alive = false;
        return;
    }
    sum_rss += rss;
    sum_thr += thr;
    procs++;
    FILE *f = children_of(w->pid);
    if (f) {
        int child;
        while (fscanf(f, "%d", &child) == 1)
            if (proc_status(child, &rss, &thr)) {
                sum_rss += rss;
                sum_thr += thr;
                procs++;
            }
        fclose(f);
    }
    if (sum_rss > w->rss_peak_kb)
        w->rss_peak_kb = sum_rss;
    if (sum_thr > w->threads_peak)
        w->threads_peak = sum_thr;
    if (procs > w->procs_peak)
        w->procs_peak = procs;
}

void watch_begin(struct loadgen *lg)
{
    struct server_watch *w = &lg->watch;
    w->pid = (pid_t)lg->opt.watch_pid;
    if (!w->pid)
        return;
    w->alive = true;
    w->cpu_start = proc_cpu_ticks(w->pid);
    watch_sample(w);
    w->rss_start_kb = w->rss_peak_kb;
    if (!w->alive || w->cpu_start < 0) {
        fprintf(stderr, "loadgen: --watch-pid %d: no such process\n",
                (int)w->pid);
        w->alive = false;
    }
}

/* The server's CPU is read once more after a short pause, so a forking
 * server has reaped the children that served the last requests. */
void watch_end(struct loadgen *lg)
{
    struct server_watch *w = &lg->watch;
    if (!w->pid || !w->alive)
        return;
    watch_sample(w);
    struct timespec ts = {0, 200 * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
    w->cpu_end = proc_cpu_ticks(w->pid);
    if (w->cpu_end < 0)
        w->alive = false;
}
