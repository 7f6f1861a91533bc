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

#include "ovs-atomic.h"

struct pmd_perf_stats;

/* Per-PMD deferred-work list.
 *
 * A send that leaves packet copies in flight (vhost async enqueue on a
 * DMA-dev channel) registers work for its (port, queue) with dp_defer_add(),
 * with the function that polls it; there is at most one entry per (port,
 * queue), however many bursts are in flight.  The PMD thread that owns the
 * list calls dp_defer_run_due() once per iteration of its poll loop, after
 * its rx queues: the list runs when the iteration received packets, and at
 * most once every DP_DEFER_IDLE_RUN_US while the thread is idle, so that
 * an idle thread collects completions in batches.  A run polls every entry,
 * so one slow queue never holds up another, polls an entry again while
 * each poll finds a full batch (up to DP_DEFER_MAX_POLLS), and drops an
 * entry once its poll reports nothing left in flight.  dp_defer_finish()
 * polls until the list is empty, for at most DP_DEFER_FINISH_MS, when the
 * thread reloads or exits.
 *
 * These constants are the whole completion-polling policy: the poll
 * functions only poll, and the PMD loop only calls dp_defer_run_due().
 *
 * The list holds opaque port keys and never dereferences them; its poll
 * functions must check that the port they poll still exists.  A PMD
 * thread finishes its list before it acknowledges a reload.  Only the
 * owning thread may use a list, except for the statistics. */

/* Entries of a PMD thread's list: queues it sent to with copies in flight. */
#define DP_DEFER_PMD_CAPACITY 1024

/* How long a PMD thread polls its list when it reloads or exits. */
#define DP_DEFER_FINISH_MS 100

/* While its thread receives nothing, a list runs at most once in this many
 * microseconds. */
#define DP_DEFER_IDLE_RUN_US 10

/* Polls of one entry in a row within a run, while each finds a full batch
 * (DP_DEFER_MORE). */
#define DP_DEFER_MAX_POLLS 4

/* A TSC read costs tens of cycles (more in some VMs): dp_defer_run_due()
 * times one run in DP_DEFER_TIME_EVERY, which counts for them all. */
#define DP_DEFER_TIME_EVERY 8

enum dp_defer_status {
    DP_DEFER_DONE,              /* Nothing left in flight: drop the entry. */
    DP_DEFER_PENDING,           /* Copies still in flight: keep it. */
    DP_DEFER_MORE,              /* A full batch completed: more may have,
                                 * poll again. */
};

/* Polls completions for queue 'qid' of 'port' once.  Stores the number of
 * packets whose copies completed in '*n_completed'.  'cookie' is what the
 * latest dp_defer_add() for this entry passed: e.g. how far the queue's
 * copies must have completed for this thread's own copies to be done, when
 * other threads send to the same queue. */
typedef enum dp_defer_status dp_defer_poll_func(void *port, int qid,
                                                uint64_t cookie,
                                                unsigned int *n_completed);

struct dp_defer_entry {
    dp_defer_poll_func *poll;
    void *port;
    int qid;
    uint64_t cookie;
};

/* Counters of a list, in the pattern of dpif-netdev-perf.h's per-PMD
 * counters: only the owning thread updates 'counters', any thread reads
 * them, and "pmd-stats-clear" moves 'zero'. */
enum dp_defer_stat {
    DP_DEFER_STAT_ADDED,        /* Entries added. */
    DP_DEFER_STAT_FULL,         /* Adds refused: list full. */
    DP_DEFER_STAT_RUNS,         /* Runs with entries. */
    DP_DEFER_STAT_POLLS,        /* Entries polled. */
    DP_DEFER_STAT_EMPTY_POLLS,  /* Polls that completed nothing. */
    DP_DEFER_STAT_COMPLETED,    /* Packets completed. */
    DP_DEFER_STAT_ABANDONED,    /* Entries dropped by a bounded finish. */
    DP_DEFER_STAT_CYCLES,       /* TSC cycles in dp_defer_run_due()'s runs
                                 * (one in DP_DEFER_TIME_EVERY timed). */
    DP_DEFER_N_STATS
};

struct dp_defer {
    struct dp_defer_entry *entries;
    size_t n;
    size_t capacity;
    size_t last;                /* Index of the latest entry added, a hint
                                 * for the next dp_defer_add(). */
    long long int next_run;     /* Earliest time (usec) of an idle run. */
    unsigned int n_runs;        /* Runs, to time some. */
    unsigned int n_submitted;   /* See dp_defer_note_submitted(). */
    atomic_uint64_t counters[DP_DEFER_N_STATS];
    uint64_t zero[DP_DEFER_N_STATS];
};

void dp_defer_init(struct dp_defer *, size_t capacity);
void dp_defer_destroy(struct dp_defer *);

bool dp_defer_add(struct dp_defer *, dp_defer_poll_func *, void *port,
                  int qid, uint64_t cookie);
unsigned int dp_defer_run(struct dp_defer *);
unsigned int dp_defer_run_timed(struct dp_defer *, long long int now,
                                struct pmd_perf_stats *);
size_t dp_defer_drain(struct dp_defer *, unsigned int max_rounds);
size_t dp_defer_clear(struct dp_defer *);
size_t dp_defer_finish(struct dp_defer *, long long int max_ms);

void dp_defer_stats_read(const struct dp_defer *,
                         uint64_t stats[DP_DEFER_N_STATS]);
void dp_defer_stats_clear(struct dp_defer *);

struct ds;
void dp_defer_format_stats(struct ds *, const struct dp_defer *);

/* A receive that leaves copies in flight (vhost async dequeue) submits them
 * in one call and returns their packets in a later one: the iteration that
 * did the copying would count as idle, and the thread's processing cycles
 * per packet would leave it out.  So such a receive notes the packets
 * whose copies it submitted without returning any in its thread's list,
 * and the PMD loop takes them with dp_defer_take_submitted() at the end of
 * each iteration, as work done. */
static inline void
dp_defer_note_submitted(struct dp_defer *defer, unsigned int n)
{
    defer->n_submitted += n;
}

static inline unsigned int
dp_defer_take_submitted(struct dp_defer *defer)
{
    unsigned int n = defer->n_submitted;

    defer->n_submitted = 0;
    return n;
}

/* Runs the list, as dp_defer_run(), if the calling thread is 'busy' (it
 * received packets in this iteration) or if DP_DEFER_IDLE_RUN_US have
 * passed since the last run at 'now' (usec).  Completions are collected
 * along with the packets a thread processes, and in batches while it is
 * idle, instead of one poll per idle iteration: a poll costs about as
 * much when it finds one completion as when it finds a burst of them.
 * Times the run with 'perf' (NULL: not timed) into DP_DEFER_STAT_CYCLES.
 * Inline: a PMD thread calls it in every iteration, mostly to find nothing
 * to do.  Returns the number of packets completed. */
static inline unsigned int
dp_defer_run_due(struct dp_defer *defer, bool busy, long long int now,
                 struct pmd_perf_stats *perf)
{
    if (!defer->n || (!busy && now < defer->next_run)) {
        return 0;
    }
    return dp_defer_run_timed(defer, now, perf);
}

#endif /* dpif-netdev-defer.h */
