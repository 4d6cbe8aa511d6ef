/* procs: --procs N, the run's event loops in N processes.
 *
 * Why processes: each client connection is a descriptor, and a process may
 * hold at most RLIMIT_NOFILE's hard limit of them (20,000 on the machine
 * the lecture was measured on, where not even root can raise it). Threads
 * share their process's limit; processes each have their own, so 100,000
 * clients take at least six of them (and the server as many workers).
 *
 * How: the parent does the setup once (the request, the address, the
 * stalls), maps the memory every loop shares (struct live: -n's counter,
 * the stop flag, each loop's progress) and forks. Each process runs its -t
 * loops on its share of -c, exactly as a single loadgen does, writes its
 * records into a memfd the parent made for it, and waits, its connections
 * still open, until the parent has taken the server's last --watch-pid
 * sample (as one process closes its connections only at its very end).
 * The parent supervises as always (Ctrl-C, the progress line,
 * --watch-pid), then lets the processes go, reaps them and merges their
 * records; a process dies with it (PR_SET_PDEATHSIG) if it is killed
 * outright. */
#include "loadgen.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

/* What a process writes first into its memfd; its records follow. */
struct part_head {
    size_t nrecs;
    char first_error[CURL_ERROR_SIZE + 64];
};

static bool write_all(int fd, const void *buf, size_t n)
{
    const char *p = buf;
    while (n) {
        ssize_t k = write(fd, p, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return false;
        p += k;
        n -= (size_t)k;
    }
    return true;
}

static bool read_all_at(int fd, void *buf, size_t n, off_t at)
{
    char *p = buf;
    while (n) {
        ssize_t k = pread(fd, p, n, at);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return false;
        p += k;
        n -= (size_t)k;
        at += k;
    }
    return true;
}

/* Process p's whole life: its loops, its records into its memfd, then
 * the wait for the parent's word (its end of the pipe closed). */
static void run_part(struct loadgen *lg, CURLU *url, long p)
{
    close(lg->go_fds[1]);
    for (long i = 0; i < lg->opt.procs; i++)
        if (i != p)
            close(lg->kid_fds[i]);
    for (size_t i = 0; lg->stall_fds && i < (size_t)lg->opt.stall; i++)
        if (lg->stall_fds[i] >= 0)
            close(lg->stall_fds[i]); /* the parent holds them */
    bool ok = workers_start(lg, url, (size_t)(p * lg->opt.threads));
    workers_join(lg);
    ok = ok && workers_merge(lg);
    struct part_head h = {.nrecs = ok ? lg->nrecs : 0};
    memcpy(h.first_error, lg->first_error, sizeof h.first_error);
    ok = write_all(lg->kid_fds[p], &h, sizeof h) &&
         write_all(lg->kid_fds[p], lg->recs, h.nrecs * sizeof *lg->recs) &&
         ok;
    fflush(stdout); /* --print's lines */
    char c;
    while (read(lg->go_fds[0], &c, 1) < 0 && errno == EINTR)
        ;
    _exit(ok ? 0 : 3);
}

bool procs_start(struct loadgen *lg, CURLU *url)
{
    long n = lg->opt.procs;
    lg->kids = calloc((size_t)n, sizeof *lg->kids);
    lg->kid_fds = malloc((size_t)n * sizeof *lg->kid_fds);
    if (!lg->kids || !lg->kid_fds)
        return false;
    for (long p = 0; p < n; p++)
        lg->kid_fds[p] = -1;
    for (long p = 0; p < n; p++)
        if ((lg->kid_fds[p] = memfd_create("loadgen-part", MFD_CLOEXEC)) < 0)
            return false;
    if (pipe2(lg->go_fds, O_CLOEXEC) < 0)
        return false;
    fflush(stdout); /* nothing buffered may be written twice */
    fflush(stderr);
    pid_t parent = getpid();
    for (long p = 0; p < n; p++) {
        pid_t pid = fork();
        if (pid < 0) {
            perror("loadgen: fork");
            loadgen_stop(lg); /* the started ones wind up */
            return false;
        }
        if (pid == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (getppid() != parent) /* it died before prctl */
                _exit(3);
            run_part(lg, url, p);
        }
        lg->kids[p] = pid;
        lg->kids_left++;
    }
    return true;
}

bool procs_reap(struct loadgen *lg, bool wait)
{
    if (wait && lg->go_fds[1] >= 0) { /* the word to go */
        close(lg->go_fds[1]);
        lg->go_fds[1] = -1;
    }
    for (long p = 0; lg->kids && p < lg->opt.procs; p++) {
        if (!lg->kids[p])
            continue;
        int st;
        pid_t r;
        while ((r = waitpid(lg->kids[p], &st, wait ? 0 : WNOHANG)) < 0 &&
               errno == EINTR)
            ;
        if (r == 0)
            continue; /* still running */
        lg->kids[p] = 0;
        lg->kids_left--;
        if (r > 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0)
            continue;
        if (r > 0 && WIFSIGNALED(st))
            fprintf(stderr, "loadgen: process %ld of %ld died by signal %d\n",
                    p + 1, lg->opt.procs, WTERMSIG(st));
        else
            fprintf(stderr, "loadgen: process %ld of %ld could not run its "
                            "share\n", p + 1, lg->opt.procs);
        lg->kid_failed = true;
        loadgen_stop(lg); /* a run with a part missing measures nothing */
    }
    return lg->kids_left == 0;
}

bool procs_merge(struct loadgen *lg)
{
    long n = lg->opt.procs;
    size_t total = 0;
    struct part_head h;
    for (long p = 0; p < n; p++) {
        if (!read_all_at(lg->kid_fds[p], &h, sizeof h, 0))
            return false;
        total += h.nrecs;
    }
    lg->recs = malloc((total ? total : 1) * sizeof *lg->recs);
    if (!lg->recs)
        return false;
    for (long p = 0; p < n; p++) {
        if (!read_all_at(lg->kid_fds[p], &h, sizeof h, 0) ||
            !read_all_at(lg->kid_fds[p], lg->recs + lg->nrecs,
                         h.nrecs * sizeof *lg->recs, sizeof h))
            return false;
        lg->nrecs += h.nrecs;
        if (!lg->first_error[0] && h.first_error[0])
            memcpy(lg->first_error, h.first_error, sizeof lg->first_error);
    }
    return true;
}
