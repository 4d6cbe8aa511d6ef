/* soak_proc: starting and stopping the servers under soak, and reading
 * their descriptors and memory from /proc. The harness's proc_start does
 * the same inside a Check test; this one reports instead of asserting,
 * because a soak wants every stage's verdict, not the first failure. */
#include "soak.h"

#include "../harness.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>


double soak_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

bool soak_proc_start(struct soak_proc *p, const char *bin,
                     const char *const *args, const char *const *env)
{
    int out[2];
    if (pipe2(out, O_CLOEXEC) < 0) {
        perror("soak: pipe");
        return false;
    }
    int log = open(p->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC,
                   0644);
    if (log < 0) {
        fprintf(stderr, "soak: %s: %s\n", p->log_path, strerror(errno));
        close(out[0]);
        close(out[1]);
        return false;
    }
    char *argv[64];
    int argc = 0;
    argv[argc++] = (char *)bin;
    for (int i = 0; args && args[i] && argc < 63; i++)
        argv[argc++] = (char *)args[i];
    argv[argc] = NULL;

    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        perror("soak: fork");
        close(out[0]);
        close(out[1]);
        close(log);
        return false;
    }
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* a killed soak leaves nothing */
        if (getppid() != parent)
            _exit(127);
        dup2(out[1], STDOUT_FILENO);
        dup2(log, STDERR_FILENO);
        setpgid(0, 0); /* Ctrl-C reaches the soak, which stops them */
        for (int i = 0; env && env[i]; i++)
            putenv((char *)env[i]);
        signal(SIGPIPE, SIG_DFL);
        execv(bin, argv);
        _exit(127);
    }
    close(out[1]);
    close(log);
    p->pid = pid;
    p->port = harness_wait_listening(out[0], pid);
    close(out[0]);
    p->crashed = false;
    p->exit_status = 0;
    if (p->port <= 0) {
        fprintf(stderr, "soak: %s did not start (log: %s)\n", p->name,
                p->log_path);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        p->pid = 0;
        return false;
    }
    return true;
}

static int status_code(int status)
{
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

bool soak_proc_alive(struct soak_proc *p)
{
    if (p->pid <= 0)
        return false;
    int status;
    pid_t r = waitpid(p->pid, &status, WNOHANG);
    if (r == 0)
        return true;
    p->pid = 0;
    p->crashed = true;
    p->exit_status = r == -1 ? -1 : status_code(status);
    return false;
}

int soak_proc_stop(struct soak_proc *p, int timeout_ms)
{
    if (p->pid <= 0)
        return p->exit_status;
    kill(p->pid, SIGTERM);
    double deadline = soak_now() + timeout_ms / 1000.0;
    int status = 0;
    for (;;) {
        pid_t r = waitpid(p->pid, &status, WNOHANG);
        if (r == p->pid) {
            p->exit_status = status_code(status);
            break;
        }
        if (r < 0 && errno != EINTR) {
            p->exit_status = -1;
            break;
        }
        if (soak_now() > deadline) {
            kill(p->pid, SIGKILL);
            waitpid(p->pid, NULL, 0);
            p->exit_status = -1;
            break;
        }
        sleep_ms(20);
    }
    p->pid = 0;
    return p->exit_status;
}

int soak_fd_count(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
    DIR *d = opendir(path);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

/* Whether socket inode is a TCP connection to 127.0.0.1:port, from one of
 * /proc/net/tcp's lines ("sl local rem st ... uid timeout inode"). */
static bool inode_to_port(const char *tcp, unsigned long inode, int port)
{
    for (const char *line = strchr(tcp, '\n'); line && line[1];
         line = strchr(line + 1, '\n')) {
        unsigned rport = 0;
        unsigned long ino = 0;
        if (sscanf(line + 1, "%*d: %*x:%*x %*x:%x %*x %*x:%*x %*x:%*x %*x "
                   "%*u %*d %lu", &rport, &ino) == 2 &&
            ino == inode && (int)rport == port)
            return true;
    }
    return false;
}

int soak_fds_to_port(pid_t pid, int port)
{
    char path[300];
    snprintf(path, sizeof path, "/proc/%d/net/tcp", (int)pid);
    char *tcp = soak_read_file(path);
    snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
    DIR *d = opendir(path);
    int n = 0;
    struct dirent *e;
    while (tcp && d && (e = readdir(d)) != NULL) {
        char link[600], target[64];
        snprintf(link, sizeof link, "%s/%s", path, e->d_name);
        ssize_t len = readlink(link, target, sizeof target - 1);
        if (len <= 0)
            continue;
        target[len] = '\0';
        unsigned long inode;
        if (sscanf(target, "socket:[%lu]", &inode) == 1 &&
            inode_to_port(tcp, inode, port))
            n++;
    }
    if (d)
        closedir(d);
    free(tcp);
    return n;
}

/* VmRSS of one process in KiB, 0 if it is gone. */
static long rss_of(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    char *text = soak_read_file(path);
    if (!text)
        return 0;
    long kib = 0;
    const char *line = strstr(text, "\nVmRSS:");
    if (line)
        kib = strtol(line + 7, NULL, 10);
    free(text);
    return kib;
}

/* Calls fn(child pid, arg) for every process whose parent is pid. */
static void for_children(pid_t pid, void (*fn)(pid_t, void *), void *arg)
{
    DIR *d = opendir("/proc");
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!isdigit((unsigned char)e->d_name[0]))
            continue;
        char path[300];
        snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
        char *stat = soak_read_file(path);
        if (!stat)
            continue;
        /* "pid (comm) state ppid": comm may hold spaces, so parse after
         * the last ')'. */
        const char *close_paren = strrchr(stat, ')');
        int ppid = 0;
        char state = 0;
        if (close_paren && sscanf(close_paren + 1, " %c %d", &state, &ppid) == 2
            && ppid == (int)pid && state != 'Z')
            fn((pid_t)atoi(e->d_name), arg);
        free(stat);
    }
    closedir(d);
}

static void add_rss(pid_t child, void *arg)
{
    *(long *)arg += rss_of(child);
}

static void count_one(pid_t child, void *arg)
{
    (void)child;
    (*(int *)arg)++;
}

long soak_rss_kib(pid_t pid)
{
    long kib = rss_of(pid);
    for_children(pid, add_rss, &kib);
    return kib;
}

int soak_children(pid_t pid)
{
    int n = 0;
    for_children(pid, count_one, &n);
    return n;
}

char *soak_read_file(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (len + 1 >= cap) {
            char *bigger = realloc(buf, cap * 2);
            if (!bigger) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = bigger;
            cap *= 2;
        }
        ssize_t n = read(fd, buf + len, cap - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            free(buf);
            buf = NULL;
            break;
        }
        if (n == 0) {
            buf[len] = '\0';
            break;
        }
        len += (size_t)n;
    }
    close(fd);
    return buf;
}
