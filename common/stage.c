#include "stage.h"

#include <stdio.h>

#include "callback.h"
#include "log.h"
#include "net.h"
#include "outbox.h"
#include "shutdown.h"

int stage_begin(struct config *cfg, int argc, char **argv, const char *stage,
                int default_port, unsigned extras, const char *description)
{
    config_parse(cfg, argc, argv, stage, default_port, extras, description);
    log_init(stage, cfg->quiet);
    net_ignore_sigpipe();
    if (shutdown_init(cfg->drain_ms) < 0) {
        perror("shutdown_init");
        return -1;
    }
    if (outbox_open(cfg->outbox, cfg->outbox_sync) < 0)
        return -1;
    callback_global_init();
    return 0;
}
