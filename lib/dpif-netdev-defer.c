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

#include "dpif-netdev-perf.h"
#include "openvswitch/dynamic-string.h"
#include "openvswitch/vlog.h"
#include "timeval.h"
#include "util.h"

VLOG_DEFINE_THIS_MODULE(dpif_netdev_defer);

void
dp_defer_init(struct dp_defer *defer, size_t capacity)
{
    ovs_assert(capacity > 0);
    defer->entries = xcalloc(capacity, sizeof *defer->entries);
    defer->n = 0;
    defer->last = 0;
    defer->capacity = capacity;
    defer->next_run = 0;
    defer->n_runs = 0;
    defer->n_submitted = 0;
    for (int i = 0; i < DP_DEFER_N_STATS; i++) {
        atomic_init(&defer->counters[i], 0);
        defer->zero[i] = 0;
    }
}

void
dp_defer_destroy(struct dp_defer *defer)
{
    free(defer->entries);
    defer->entries = NULL;
    defer->n = defer->capacity = 0;
}

/* Adds 'n' to counter 'stat' of 'defer'.  Only the owning thread writes the
 * counters: no atomic read-modify-write is needed. */
static void
dp_defer_count(struct dp_defer *defer, enum dp_defer_stat stat, uint64_t n)
{
    uint64_t cur;

    atomic_read_relaxed(&defer->counters[stat], &cur);
    atomic_store_relaxed(&defer->counters[stat], cur + n);
}

static bool
dp_defer_entry_is(const struct dp_defer_entry *e, dp_defer_poll_func *poll,
                  const void *port, int qid)
{
    return e->port == port && e->qid == qid && e->poll == poll;
}

/* Registers deferred work for queue 'qid' of 'port', to be polled with
 * 'poll' and 'cookie', unless it is already registered, in which case its
 * cookie becomes 'cookie'.  Returns false if the list is full: the caller
 * must then complete that queue's work itself. */
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
        dp_defer_count(defer, DP_DEFER_STAT_FULL, 1);
        return false;
    }
    defer->last = defer->n;
    defer->entries[defer->n++] = (struct dp_defer_entry) {
        .poll = poll,
        .port = port,
        .qid = qid,
        .cookie = cookie,
    };
    dp_defer_count(defer, DP_DEFER_STAT_ADDED, 1);
    return true;
}

/* Polls entry 'e' once, and again while a poll finds a full batch, up to
 * DP_DEFER_MAX_POLLS times.  Adds the packets completed to '*total'. */
static enum dp_defer_status
dp_defer_poll_entry(struct dp_defer *defer, const struct dp_defer_entry *e,
                    unsigned int *total)
{
    enum dp_defer_status status = DP_DEFER_PENDING;

    for (int i = 0; i < DP_DEFER_MAX_POLLS; i++) {
        unsigned int n_completed = 0;

        status = e->poll(e->port, e->qid, e->cookie, &n_completed);
        dp_defer_count(defer, DP_DEFER_STAT_POLLS, 1);
        if (!n_completed) {
            dp_defer_count(defer, DP_DEFER_STAT_EMPTY_POLLS, 1);
        }
        *total += n_completed;
        if (status != DP_DEFER_MORE) {
            break;
        }
    }
    return status;
}

/* Polls every entry and drops those with nothing left in flight.  Returns
 * the number of packets completed. */
unsigned int
dp_defer_run(struct dp_defer *defer)
{
    unsigned int total = 0;
    size_t i = 0;

    if (!defer->n) {
        return 0;
    }
    dp_defer_count(defer, DP_DEFER_STAT_RUNS, 1);
    while (i < defer->n) {
        if (dp_defer_poll_entry(defer, &defer->entries[i], &total)
            == DP_DEFER_DONE) {
            /* The last entry moves here: poll slot 'i' again. */
            defer->entries[i] = defer->entries[--defer->n];
        } else {
            i++;
        }
    }
    dp_defer_count(defer, DP_DEFER_STAT_COMPLETED, total);
    return total;
}

/* dp_defer_run_due()'s run, once it is due. */
unsigned int
dp_defer_run_timed(struct dp_defer *defer, long long int now,
                   struct pmd_perf_stats *perf)
{
    bool timed = perf && !(++defer->n_runs % DP_DEFER_TIME_EVERY);
    uint64_t start = timed ? cycles_counter_update(perf) : 0;
    unsigned int n;

    defer->next_run = now + DP_DEFER_IDLE_RUN_US;
    n = dp_defer_run(defer);
    if (timed) {
        dp_defer_count(defer, DP_DEFER_STAT_CYCLES,
                       (cycles_counter_update(perf) - start)
                       * DP_DEFER_TIME_EVERY);
    }
    return n;
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

    dp_defer_count(defer, DP_DEFER_STAT_ABANDONED, n);
    defer->n = 0;
    return n;
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

/* Stores in 'stats' the counters of 'defer' since the last
 * dp_defer_stats_clear(). */
void
dp_defer_stats_read(const struct dp_defer *defer,
                    uint64_t stats[DP_DEFER_N_STATS])
{
    for (int i = 0; i < DP_DEFER_N_STATS; i++) {
        atomic_read_relaxed(CONST_CAST(atomic_uint64_t *,
                                       &defer->counters[i]), &stats[i]);
        stats[i] -= defer->zero[i];
    }
}

/* Starts the counters from zero.  May be called from another thread than
 * the owner's: the counters are only read. */
void
dp_defer_stats_clear(struct dp_defer *defer)
{
    for (int i = 0; i < DP_DEFER_N_STATS; i++) {
        atomic_read_relaxed(&defer->counters[i], &defer->zero[i]);
    }
}

/* Appends the counters of 'defer' to 'reply', for
 * "dpif-netdev/pmd-stats-show". */
void
dp_defer_format_stats(struct ds *reply, const struct dp_defer *defer)
{
    uint64_t s[DP_DEFER_N_STATS];

    dp_defer_stats_read(defer, s);
    ds_put_format(reply,
                  "  vhost async deferred work: %"PRIu64" entries added, "
                  "%"PRIu64" list runs, %"PRIuSIZE" pending\n",
                  s[DP_DEFER_STAT_ADDED], s[DP_DEFER_STAT_RUNS], defer->n);
    ds_put_format(reply,
                  "  vhost async completion polls: %"PRIu64" "
                  "(empty: %"PRIu64"), packets completed: %"PRIu64"\n",
                  s[DP_DEFER_STAT_POLLS], s[DP_DEFER_STAT_EMPTY_POLLS],
                  s[DP_DEFER_STAT_COMPLETED]);
    if (s[DP_DEFER_STAT_FULL] || s[DP_DEFER_STAT_ABANDONED]) {
        ds_put_format(reply, "  vhost async deferred work: %"PRIu64" "
                      "refused (list full), %"PRIu64" abandoned\n",
                      s[DP_DEFER_STAT_FULL], s[DP_DEFER_STAT_ABANDONED]);
    }
}
