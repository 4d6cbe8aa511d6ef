/* deadlines: see deadlines.h. */
#include "deadlines.h"

#include "timer.h"

void deadlines_start(struct deadlines *d, int idle_ms)
{
    *d = (struct deadlines){.idle = timer_deadline_in(idle_ms)};
}

uint64_t deadlines_update(struct deadlines *d, const struct http_parser *p,
                          int header_ms, int body_ms)
{
    if (p->len > 0 && d->head == 0)
        d->head = timer_deadline_in(header_ms);
    if (p->head_done && d->body == 0)
        d->body = timer_deadline_in(body_ms);
    return deadlines_due(d);
}

uint64_t deadlines_due(const struct deadlines *d)
{
    return d->body ? d->body : d->head ? d->head : d->idle;
}
