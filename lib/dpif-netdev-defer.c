/*
 * Copyright (c) 2026 The OVS vhost async fork authors.
 *
 * Licensed under the Apache License, Version 2.0 (the "License");
 * you may not use this file except in compliance with the License.
 * You may obtain a copy of the License at:
 *
 *     http://www.apache.org/licenses/LICENSE-2.0
 *
 * Unless required by applicable law or agreed to in writing, software
 * distributed under the License is distributed on an "AS IS" BASIS,
 * WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
 * See the License for the specific language governing permissions and
 * limitations under the License.
 */

#include <config.h>
#include "dpif-netdev-defer.h"

#include <string.h>

#include "util.h"

void
dp_defer_init(struct dp_defer *defer, size_t capacity)
{
    ovs_assert(capacity > 0);
    defer->entries = xcalloc(capacity, sizeof *defer->entries);
    defer->n = 0;
    defer->capacity = capacity;
    memset(&defer->stats, 0, sizeof defer->stats);
}

void
dp_defer_destroy(struct dp_defer *defer)
{
    free(defer->entries);
    defer->entries = NULL;
    defer->n = defer->capacity = 0;
}

/* Registers deferred work for queue 'qid' of 'port', unless it is already
 * registered.  Returns false if the list is full: the caller must then
 * complete that queue's work itself. */
bool
dp_defer_add(struct dp_defer *defer, void *port, int qid)
{
    for (size_t i = 0; i < defer->n; i++) {
        if (defer->entries[i].port == port && defer->entries[i].qid == qid) {
            return true;
        }
    }
    if (defer->n >= defer->capacity) {
        defer->stats.full++;
        return false;
    }
    defer->entries[defer->n++] = (struct dp_defer_entry) {
        .port = port,
        .qid = qid,
    };
    defer->stats.added++;
    return true;
}

static void
dp_defer_remove__(struct dp_defer *defer, size_t i)
{
    defer->entries[i] = defer->entries[--defer->n];
}

/* Polls every entry once with 'poll' and drops those with nothing left in
 * flight.  Returns the number of packets completed. */
unsigned int
dp_defer_run(struct dp_defer *defer, dp_defer_poll_func *poll, void *aux)
{
    unsigned int total = 0;
    size_t i = 0;

    if (!defer->n) {
        return 0;
    }
    defer->stats.runs++;
    while (i < defer->n) {
        struct dp_defer_entry *e = &defer->entries[i];
        unsigned int n_completed = 0;
        enum dp_defer_status status;

        status = poll(e->port, e->qid, aux, &n_completed);
        defer->stats.polls++;
        if (!n_completed) {
            defer->stats.empty_polls++;
        }
        total += n_completed;
        if (status == DP_DEFER_DONE) {
            /* The last entry moves here: poll slot 'i' again. */
            dp_defer_remove__(defer, i);
        } else {
            i++;
        }
    }
    defer->stats.completed += total;
    return total;
}

/* Runs the list until it is empty or 'max_rounds' rounds have passed.
 * Returns the number of entries left. */
size_t
dp_defer_drain(struct dp_defer *defer, dp_defer_poll_func *poll, void *aux,
               unsigned int max_rounds)
{
    for (unsigned int round = 0; defer->n && round < max_rounds; round++) {
        dp_defer_run(defer, poll, aux);
    }
    return defer->n;
}

/* Drops every entry of 'port' without polling it.  Returns how many were
 * dropped. */
size_t
dp_defer_remove_port(struct dp_defer *defer, const void *port)
{
    size_t removed = 0;
    size_t i = 0;

    while (i < defer->n) {
        if (defer->entries[i].port == port) {
            dp_defer_remove__(defer, i);
            removed++;
        } else {
            i++;
        }
    }
    return removed;
}
