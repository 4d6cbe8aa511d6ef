/* workers: see workers.h. */
#include "workers.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "loop.h"
#include "net.h"

static int my_index; /* set in each worker right after its fork */

int workers_index(void) { return my_index; }

int workers_share(const struct config *cfg, int total)
{
    int n = cfg->workers > 1 ? cfg->workers : 1;
    return total / n > 0 ? total / n : 1;
}

/* Worker i: drop what belongs to the others, serve, leave its count in
 * the shared page for the parent, exit. Never returns. */
static void __attribute__((noreturn))
worker_main(const struct config *cfg, int i, int *fds, int nfds,
            pid_t parent, unsigned long *accepts, int (*serve)(int))
{
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
        _exit(1); /* the parent is already gone */
    my_index = i;
    int mine = nfds == 1 ? fds[0] : fds[i];
    for (int k = 0; k < nfds; k++)
        if (fds[k] != mine)
            close(fds[k]);
    if (cfg->shared_listener)
        loop_exclusive_fd(mine);
    log_info("worker %d of %d: serving on %s", i + 1, cfg->workers,
             cfg->shared_listener ? "the shared listener (EPOLLEXCLUSIVE)"
                                  : "its own SO_REUSEPORT listener");
    int rc = serve(mine);
    unsigned long n = net_accepted();
    __atomic_store_n(&accepts[i], n, __ATOMIC_RELAXED);
    log_info("worker %d of %d: accepted %lu connections; exiting", i + 1,
             cfg->workers, n);
    exit(rc);
}

/* Reaps every worker; true if all exited 0. */
static bool workers_wait(const pid_t *pids, int n)
{
    bool ok = true;
    for (int left = n; left > 0;) {
        int status;
        pid_t pid = waitpid(-1, &status, 0);
        if (pid < 0 && errno == EINTR)
            continue;
        if (pid < 0) {
            log_warn("waitpid: %s", strerror(errno));
            return false;
        }
        int i = 0;
        while (i < n && pids[i] != pid)
            i++;
        if (i == n)
            continue; /* not a worker (none is expected) */
        left--;
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
            continue;
        ok = false;
        if (WIFSIGNALED(status))
            log_warn("worker %d (pid %d) killed by signal %d; %d left",
                     i + 1, (int)pid, WTERMSIG(status), left);
        else
            log_warn("worker %d (pid %d) exited with status %d; %d left",
                     i + 1, (int)pid, WEXITSTATUS(status), left);
    }
    return ok;
}

static void workers_log_accepts(const struct config *cfg,
                                const unsigned long *accepts)
{
    char line[1024];
    size_t len = 0;
    for (int i = 0; i < cfg->workers && len < sizeof line; i++)
        len += (size_t)snprintf(line + len, sizeof line - len, " %lu",
                                __atomic_load_n(&accepts[i],
                                                __ATOMIC_RELAXED));
    /* A result, not an event: printed even with --quiet, for the bench. */
    fprintf(stderr, "%s: accepts per worker:%s (%s)\n", cfg->stage, line,
            cfg->shared_listener ? "shared listener, EPOLLEXCLUSIVE"
                                 : "SO_REUSEPORT");
}

int workers_run(const struct config *cfg, int (*serve)(int listen_fd))
{
    int n = cfg->workers;
    int nfds = cfg->shared_listener ? 1 : n;
    int fds[WORKERS_MAX];   /* on the stack: a worker exits without */
    pid_t pids[WORKERS_MAX]; /* returning here, and frees nothing */
    /* Each worker writes its count here before it exits: a page shared
     * across fork, since the workers share no other memory. */
    unsigned long *accepts = mmap(NULL, (size_t)n * sizeof *accepts,
                                  PROT_READ | PROT_WRITE,
                                  MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (n > WORKERS_MAX || accepts == MAP_FAILED) {
        fprintf(stderr, "workers: cannot map the shared page: %s\n",
                n > WORKERS_MAX ? "too many workers" : strerror(errno));
        if (accepts != MAP_FAILED)
            munmap(accepts, (size_t)n * sizeof *accepts);
        return 1;
    }
    int rc = 1;
    if (cfg->shared_listener)
        fds[0] = net_listen_announce(cfg);
    if (cfg->shared_listener ? fds[0] < 0
                             : net_listen_announce_reuseport(cfg, fds, n) < 0)
        goto out;
    fflush(NULL); /* nothing buffered may be written twice by the copies */
    pid_t parent = getpid();
    /* The parent has no tasks to list: Ctrl-\ (SIGQUIT to the terminal's
     * process group) reaches every worker, which lists its own
     * (common/tasklist.h). */
    signal(SIGQUIT, SIG_IGN);
    int started = 0;
    for (; started < n; started++) {
        pid_t pid = fork();
        if (pid == 0)
            worker_main(cfg, started, fds, nfds, parent, accepts, serve);
        if (pid < 0) {
            log_warn("fork: %s; stopping the %d workers started", strerror(errno),
                     started);
            for (int k = 0; k < started; k++)
                kill(pids[k], SIGTERM); /* its handler stops them all */
            break;
        }
        pids[started] = pid;
        log_info("worker %d of %d is pid %d", started + 1, n, (int)pid);
    }
    /* The workers have the listeners now; a copy here would only keep a
     * port open after they stop. */
    for (int k = 0; k < nfds; k++)
        close(fds[k]);
    bool all_ok = workers_wait(pids, started);
    workers_log_accepts(cfg, accepts);
    rc = all_ok && started == n ? 0 : 1;
out:
    munmap(accepts, (size_t)n * sizeof *accepts);
    return rc;
}
