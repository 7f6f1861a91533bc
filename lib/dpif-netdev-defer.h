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

#ifndef DPIF_NETDEV_DEFER_H
#define DPIF_NETDEV_DEFER_H 1

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Per-PMD deferred-work list.
 *
 * A send that leaves packet copies in flight (vhost async enqueue on a
 * DMA-dev channel) registers work for its (port, queue) with dp_defer_add(),
 * with the function that polls it; there is at most one entry per (port,
 * queue), however many bursts are in flight.  The PMD thread that owns the
 * list calls dp_defer_run() between rx bursts: it polls every entry, so one
 * slow queue never holds up another, and drops an entry once its poll
 * reports nothing left in flight.  dp_defer_drain() and dp_defer_finish()
 * poll until the list is empty or a bound is reached, for reload and thread
 * exit.
 *
 * The list holds opaque port pointers and never dereferences them; its poll
 * functions must check that the port still has the device they poll.  A
 * PMD thread finishes its list (dp_defer_finish()) before it acknowledges a
 * reload, so its entries never outlive the ports they refer to.  Only the
 * owning thread may use a list, except for the statistics. */

/* Entries of a PMD thread's list: queues it sent to with copies in flight. */
#define DP_DEFER_PMD_CAPACITY 1024

/* How long a PMD thread polls its list when it reloads or exits. */
#define DP_DEFER_FINISH_MS 100

/* dp_defer_run_due(): while its thread receives nothing, a list runs at
 * most once in this many microseconds. */
#define DP_DEFER_IDLE_RUN_US 10

enum dp_defer_status {
    DP_DEFER_DONE,              /* Nothing left in flight: drop the entry. */
    DP_DEFER_PENDING,           /* Copies still in flight: keep it. */
};

/* Polls completions for queue 'qid' of 'port'.  Stores the number of packets
 * whose copies completed in '*n_completed'.  'cookie' is what the latest
 * dp_defer_add() for this entry passed: e.g. how far the queue's copies
 * must have completed for this thread's own copies to be done, when other
 * threads send to the same queue. */
typedef enum dp_defer_status dp_defer_poll_func(void *port, int qid,
                                                uint64_t cookie,
                                                unsigned int *n_completed);

struct dp_defer_entry {
    dp_defer_poll_func *poll;
    void *port;
    int qid;
    uint64_t cookie;
};

struct dp_defer_stats {
    uint64_t added;             /* Entries added. */
    uint64_t full;              /* Adds refused: list full. */
    uint64_t runs;              /* dp_defer_run() calls with entries. */
    uint64_t polls;             /* Entries polled. */
    uint64_t empty_polls;       /* Polls that completed nothing. */
    uint64_t completed;         /* Packets completed. */
    uint64_t abandoned;         /* Entries dropped by a bounded drain. */
};

struct dp_defer {
    struct dp_defer_entry *entries;
    size_t n;
    size_t capacity;
    size_t last;                /* Index of the latest entry added, a hint
                                 * for the next dp_defer_add(). */
    struct dp_defer_stats stats;
    struct dp_defer_stats base; /* 'stats' at the last clear. */
    long long int next_run;     /* dp_defer_run_due(): earliest time (usec)
                                 * of an idle run. */
    unsigned int n_submitted;   /* See dp_defer_thread_note_submitted(). */
};

void dp_defer_init(struct dp_defer *, size_t capacity);
void dp_defer_destroy(struct dp_defer *);

bool dp_defer_add(struct dp_defer *, dp_defer_poll_func *, void *port,
                  int qid, uint64_t cookie);
unsigned int dp_defer_run(struct dp_defer *);
size_t dp_defer_drain(struct dp_defer *, unsigned int max_rounds);
size_t dp_defer_remove_port(struct dp_defer *, const void *port);
size_t dp_defer_clear(struct dp_defer *);
size_t dp_defer_finish(struct dp_defer *, long long int max_ms);

void dp_defer_stats_get(const struct dp_defer *, struct dp_defer_stats *);
void dp_defer_stats_clear(struct dp_defer *);

struct ds;
void dp_defer_format_stats(struct ds *, const struct dp_defer *);

/* The calling thread's list: set by a PMD thread for itself, NULL in every
 * other thread. */
void dp_defer_thread_set(struct dp_defer *);
struct dp_defer *dp_defer_thread_get(void);
bool dp_defer_thread_add(dp_defer_poll_func *, void *port, int qid,
                         uint64_t cookie);

/* A receive that leaves copies in flight (vhost async dequeue) submits them
 * in one call and returns their packets in a later one: the iteration that
 * did the copying would count as idle, and the thread's processing cycles
 * per packet would leave it out.  So such a receive notes the packets
 * whose copies it submitted without returning any in the calling thread's
 * list, and the PMD loop takes them with dp_defer_take_submitted() at the
 * end of each iteration, as work done. */
void dp_defer_thread_note_submitted(unsigned int n);

static inline unsigned int
dp_defer_take_submitted(struct dp_defer *defer)
{
    unsigned int n = defer->n_submitted;

    defer->n_submitted = 0;
    return n;
}

static inline bool
dp_defer_is_empty(const struct dp_defer *defer)
{
    return !defer->n;
}

/* True if dp_defer_run_due() would run 'defer'. */
static inline bool
dp_defer_is_due(const struct dp_defer *defer, bool busy, long long int now)
{
    return defer->n && (busy || now >= defer->next_run);
}

/* Runs the list, as dp_defer_run(), if the calling thread is 'busy' (it
 * received packets in this iteration) or if DP_DEFER_IDLE_RUN_US have
 * passed since the last run at 'now' (usec).  Completions are collected
 * along with the packets a thread processes, and in batches while it is
 * idle, instead of one poll per idle iteration: a poll costs about as
 * much when it finds one completion as when it finds a burst of them.
 * Inline: a PMD thread calls it in every iteration, mostly to find nothing
 * to do.  Returns the number of packets completed. */
static inline unsigned int
dp_defer_run_due(struct dp_defer *defer, bool busy, long long int now)
{
    if (!dp_defer_is_due(defer, busy, now)) {
        return 0;
    }
    defer->next_run = now + DP_DEFER_IDLE_RUN_US;
    return dp_defer_run(defer);
}

#endif /* dpif-netdev-defer.h */
