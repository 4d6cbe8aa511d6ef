/* stage: how every stage's main begins.
 *
 * Six models, one start: read the options, open the log, make SIGPIPE
 * harmless and SIGINT/SIGTERM a pipe a loop can wait on, set up libcurl
 * once. Written here once, so each main shows only what its model adds
 * (02's SIGCHLD pipe, 03's clock for its condition variable, the loops of
 * 04-06). */
#ifndef COMMON_STAGE_H
#define COMMON_STAGE_H

#include "config.h"

/* Parses argv into cfg (config_parse: --help and a bad option exit here),
 * starts the log under the stage's name (log_init), ignores SIGPIPE
 * (net_ignore_sigpipe), installs the stop handlers with the drain of
 * --drain-ms (shutdown_init), opens and compacts the --outbox, its jobs
 * kept for replay (outbox_open), and initialises libcurl
 * (callback_global_init), before any thread or fork, so children and
 * threads inherit it. 0, or -1 after saying why on stderr: main then
 * exits 1. */
int stage_begin(struct config *cfg, int argc, char **argv, const char *stage,
                int default_port, unsigned extras, const char *description);

#endif
