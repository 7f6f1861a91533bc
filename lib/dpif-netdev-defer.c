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

#include "openvswitch/dynamic-string.h"
#include "openvswitch/vlog.h"
#include "ovs-thread.h"
#include "timeval.h"
#include "util.h"

VLOG_DEFINE_THIS_MODULE(dpif_netdev_defer);

DEFINE_STATIC_PER_THREAD_DATA(struct dp_defer *, thread_defer, NULL);

void
dp_defer_init(struct dp_defer *defer, size_t capacity)
{
    ovs_assert(capacity > 0);
    defer->entries = xcalloc(capacity, sizeof *defer->entries);
    defer->n = 0;
    defer->last = 0;
    defer->n_submitted = 0;
    defer->capacity = capacity;
    memset(&defer->stats, 0, sizeof defer->stats);
    memset(&defer->base, 0, sizeof defer->base);
    defer->next_run = 0;
}

void
dp_defer_destroy(struct dp_defer *defer)
{
    free(defer->entries);
    defer->entries = NULL;
    defer->n = defer->capacity = 0;
}

/* Registers deferred work for queue 'qid' of 'port', to be polled with
 * 'poll' and 'cookie', unless it is already registered, in which case its
 * cookie becomes 'cookie'.  Returns false if the list is full: the caller
 * must then complete that queue's work itself. */
static bool
dp_defer_entry_is(const struct dp_defer_entry *e, dp_defer_poll_func *poll,
                  const void *port, int qid)
{
    return e->port == port && e->qid == qid && e->poll == poll;
}

bool
dp_defer_add(struct dp_defer *defer, dp_defer_poll_func *poll, void *port,
             int qid, uint64_t cookie)
{
    struct dp_defer_entry *e = &defer->entries[defer->last];

    /* A thread usually sends burst after burst to the same queue: try the
     * entry of the latest add first, which makes the usual add O(1). */
    if (defer->last < defer->n && dp_defer_entry_is(e, poll, port, qid)) {
        e->cookie = cookie;
        return true;
    }
    for (size_t i = 0; i < defer->n; i++) {
        e = &defer->entries[i];
        if (dp_defer_entry_is(e, poll, port, qid)) {
            e->cookie = cookie;
            defer->last = i;
            return true;
        }
    }
    if (defer->n >= defer->capacity) {
        defer->stats.full++;
        return false;
    }
    defer->last = defer->n;
    defer->entries[defer->n++] = (struct dp_defer_entry) {
        .poll = poll,
        .port = port,
        .qid = qid,
        .cookie = cookie,
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
dp_defer_run(struct dp_defer *defer)
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

        status = e->poll(e->port, e->qid, e->cookie, &n_completed);
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
dp_defer_drain(struct dp_defer *defer, unsigned int max_rounds)
{
    for (unsigned int round = 0; defer->n && round < max_rounds; round++) {
        dp_defer_run(defer);
    }
    return defer->n;
}

/* Drops every entry without polling it, counting them as abandoned: for a
 * bounded drain that did not finish, before the ports the entries refer to
 * may go away.  Whoever next uses or tears down such a queue completes what
 * is left in flight.  Returns how many entries were dropped. */
size_t
dp_defer_clear(struct dp_defer *defer)
{
    size_t n = defer->n;

    defer->stats.abandoned += n;
    defer->n = 0;
    return n;
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

/* Polls the list until it is empty or 'max_ms' milliseconds have passed,
 * then drops what is left (dp_defer_clear()).  For a PMD thread that
 * reloads or exits: after it, the ports its entries refer to may go away.
 * Returns the number of entries dropped. */
size_t
dp_defer_finish(struct dp_defer *defer, long long int max_ms)
{
    long long int deadline = time_msec() + max_ms;
    size_t n;

    while (defer->n && time_msec() <= deadline) {
        dp_defer_drain(defer, 64);
    }
    n = dp_defer_clear(defer);
    if (n) {
        static struct vlog_rate_limit rl = VLOG_RATE_LIMIT_INIT(5, 5);

        VLOG_WARN_RL(&rl, "%"PRIuSIZE" queues still had copies in flight "
                     "after %lld ms: left to their next user.", n, max_ms);
    }
    return n;
}

/* Stores in '*stats' the statistics since the last dp_defer_stats_clear(). */
void
dp_defer_stats_get(const struct dp_defer *defer, struct dp_defer_stats *stats)
{
    const uint64_t *cur = (const uint64_t *) &defer->stats;
    const uint64_t *base = (const uint64_t *) &defer->base;
    uint64_t *out = (uint64_t *) stats;

    BUILD_ASSERT_DECL(sizeof *stats % sizeof(uint64_t) == 0);
    for (size_t i = 0; i < sizeof *stats / sizeof(uint64_t); i++) {
        out[i] = cur[i] - base[i];
    }
}

/* Starts the statistics from zero.  May be called from another thread than
 * the owner's: the counters are only read. */
void
dp_defer_stats_clear(struct dp_defer *defer)
{
    defer->base = defer->stats;
}

/* Appends the statistics of 'defer' to 'reply', for
 * "dpif-netdev/pmd-stats-show". */
void
dp_defer_format_stats(struct ds *reply, const struct dp_defer *defer)
{
    struct dp_defer_stats s;

    dp_defer_stats_get(defer, &s);
    ds_put_format(reply,
                  "  vhost async deferred work: %"PRIu64" entries added, "
                  "%"PRIu64" list runs, %"PRIuSIZE" pending\n",
                  s.added, s.runs, defer->n);
    ds_put_format(reply,
                  "  vhost async completion polls: %"PRIu64" "
                  "(empty: %"PRIu64"), packets completed: %"PRIu64"\n",
                  s.polls, s.empty_polls, s.completed);
    if (s.full || s.abandoned) {
        ds_put_format(reply, "  vhost async deferred work: %"PRIu64" "
                      "refused (list full), %"PRIu64" abandoned\n",
                      s.full, s.abandoned);
    }
}

void
dp_defer_thread_set(struct dp_defer *defer)
{
    *thread_defer_get() = defer;
}

struct dp_defer *
dp_defer_thread_get(void)
{
    return *thread_defer_get();
}

/* Registers deferred work in the calling thread's list.  Returns false if
 * the thread has no list or it is full: the caller must then complete the
 * work itself. */
bool
dp_defer_thread_add(dp_defer_poll_func *poll, void *port, int qid,
                    uint64_t cookie)
{
    struct dp_defer *defer = dp_defer_thread_get();

    return defer && dp_defer_add(defer, poll, port, qid, cookie);
}

void
dp_defer_thread_note_submitted(unsigned int n)
{
    struct dp_defer *defer = dp_defer_thread_get();

    if (defer) {
        defer->n_submitted += n;
    }
}
