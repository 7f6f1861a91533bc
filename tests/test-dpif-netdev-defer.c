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

/* Unit tests for lib/dpif-netdev-defer.c, the per-PMD deferred-work list. */

#include <config.h>
#undef NDEBUG
#include "dpif-netdev-defer.h"

#include <stdio.h>
#include <string.h>

#include "dpif-netdev-perf.h"
#include "ovstest.h"
#include "util.h"

/* A fake port: each queue has packets in flight and completes at most
 * 'per_poll' of them per poll. */
struct fake_queue {
    unsigned int inflight;
    unsigned int per_poll;
    unsigned int polls;
};

struct fake_port {
    struct fake_queue q[4];
};

static enum dp_defer_status
fake_poll(void *port_, int qid, uint64_t cookie OVS_UNUSED,
          unsigned int *n_completed)
{
    struct fake_port *port = port_;
    struct fake_queue *q = &port->q[qid];
    unsigned int n = MIN(q->inflight, q->per_poll);

    q->inflight -= n;
    q->polls++;
    *n_completed = n;
    return q->inflight ? DP_DEFER_PENDING : DP_DEFER_DONE;
}

/* Counter 'stat' of 'd' since it was last cleared. */
static uint64_t
stat(const struct dp_defer *d, enum dp_defer_stat stat)
{
    uint64_t s[DP_DEFER_N_STATS];

    dp_defer_stats_read(d, s);
    return s[stat];
}

static void
test_add_dedup(void)
{
    struct fake_port p0, p1;
    struct dp_defer d;

    dp_defer_init(&d, 8);
    ovs_assert(!d.n);
    ovs_assert(dp_defer_add(&d, fake_poll, &p0, 0, 0));
    ovs_assert(dp_defer_add(&d, fake_poll, &p0, 0, 0));   /* Same queue. */
    ovs_assert(dp_defer_add(&d, fake_poll, &p0, 1, 0));
    ovs_assert(dp_defer_add(&d, fake_poll, &p1, 0, 0));
    ovs_assert(dp_defer_add(&d, fake_poll, &p1, 0, 0));
    ovs_assert(d.n == 3);
    ovs_assert(stat(&d, DP_DEFER_STAT_ADDED) == 3);
    ovs_assert(stat(&d, DP_DEFER_STAT_FULL) == 0);

    /* The entry of the latest add moves or goes away: still one entry per
     * queue.  Queues with nothing in flight leave at the next run. */
    memset(&p0, 0, sizeof p0);
    memset(&p1, 0, sizeof p1);
    p1.q[0].inflight = 1;
    ovs_assert(dp_defer_run(&d) == 0);
    ovs_assert(d.n == 1 && d.entries[0].port == &p1);
    ovs_assert(dp_defer_add(&d, fake_poll, &p0, 1, 0));
    ovs_assert(dp_defer_add(&d, fake_poll, &p1, 0, 0));
    ovs_assert(dp_defer_add(&d, fake_poll, &p0, 1, 0));
    ovs_assert(d.n == 2);
    ovs_assert(stat(&d, DP_DEFER_STAT_ADDED) == 4);
    dp_defer_destroy(&d);
}

static void
test_run_removes_done(void)
{
    struct fake_port p = { .q[0] = { .inflight = 64, .per_poll = 32 } };
    struct dp_defer d;

    dp_defer_init(&d, 8);
    ovs_assert(dp_defer_add(&d, fake_poll, &p, 0, 0));
    ovs_assert(dp_defer_run(&d) == 32);
    ovs_assert(d.n == 1);                   /* 32 still in flight. */
    ovs_assert(dp_defer_run(&d) == 32);
    ovs_assert(!d.n);      /* Nothing left: dropped. */
    ovs_assert(dp_defer_run(&d) == 0);
    ovs_assert(p.q[0].polls == 2);          /* Empty list: no poll. */
    ovs_assert(stat(&d, DP_DEFER_STAT_RUNS) == 2);
    ovs_assert(stat(&d, DP_DEFER_STAT_POLLS) == 2);
    ovs_assert(stat(&d, DP_DEFER_STAT_COMPLETED) == 64);
    ovs_assert(stat(&d, DP_DEFER_STAT_EMPTY_POLLS) == 0);
    dp_defer_destroy(&d);
}

/* While its thread receives nothing, a list runs at most once every
 * DP_DEFER_IDLE_RUN_US; a busy thread runs it every time. */
static void
test_run_due(void)
{
    struct fake_port p = { .q[0] = { .inflight = 100, .per_poll = 10 } };
    long long int now = 1000000;
    struct dp_defer d;

    dp_defer_init(&d, 8);
    ovs_assert(dp_defer_run_due(&d, true, now, NULL) == 0);   /* Empty. */
    ovs_assert(dp_defer_add(&d, fake_poll, &p, 0, 0));
    ovs_assert(dp_defer_run_due(&d, false, now, NULL) == 10);
    ovs_assert(dp_defer_run_due(&d, false, now, NULL) == 0);
    ovs_assert(dp_defer_run_due(&d, false,
                                now + DP_DEFER_IDLE_RUN_US - 1, NULL) == 0);
    ovs_assert(p.q[0].polls == 1);
    ovs_assert(dp_defer_run_due(&d, true, now, NULL) == 10);
    ovs_assert(dp_defer_run_due(&d, true, now, NULL) == 10);
    ovs_assert(p.q[0].polls == 3);
    /* The busy runs moved the next idle run on. */
    ovs_assert(dp_defer_run_due(&d, false, now + DP_DEFER_IDLE_RUN_US,
                                NULL) == 10);
    ovs_assert(p.q[0].polls == 4);
    ovs_assert(stat(&d, DP_DEFER_STAT_RUNS) == 4);
    dp_defer_destroy(&d);
}

/* A queue that completes nothing must not hold up the queues behind it. */
static void
test_no_head_of_line_blocking(void)
{
    struct fake_port stuck = { .q[0] = { .inflight = 10, .per_poll = 0 } };
    struct fake_port p = {
        .q[0] = { .inflight = 5, .per_poll = 5 },
        .q[1] = { .inflight = 7, .per_poll = 7 },
    };
    struct dp_defer d;

    dp_defer_init(&d, 8);
    ovs_assert(dp_defer_add(&d, fake_poll, &stuck, 0, 0));
    ovs_assert(dp_defer_add(&d, fake_poll, &p, 0, 0));
    ovs_assert(dp_defer_add(&d, fake_poll, &p, 1, 0));
    ovs_assert(dp_defer_run(&d) == 12);
    ovs_assert(d.n == 1);
    ovs_assert(d.entries[0].port == &stuck);
    ovs_assert(p.q[0].polls == 1 && p.q[1].polls == 1);
    ovs_assert(p.q[0].inflight == 0 && p.q[1].inflight == 0);
    ovs_assert(stat(&d, DP_DEFER_STAT_EMPTY_POLLS) == 1);

    /* The stuck queue is polled on every run, and leaves once it moves. */
    dp_defer_run(&d);
    ovs_assert(stuck.q[0].polls == 2);
    stuck.q[0].per_poll = 10;
    ovs_assert(dp_defer_run(&d) == 10);
    ovs_assert(!d.n);
    dp_defer_destroy(&d);
}

static void
test_drain(void)
{
    struct fake_port p = {
        .q[0] = { .inflight = 100, .per_poll = 1 },
        .q[1] = { .inflight = 3, .per_poll = 2 },
        .q[2] = { .inflight = 1, .per_poll = 32 },
    };
    struct fake_port stuck = { .q[0] = { .inflight = 1, .per_poll = 0 } };
    struct dp_defer d;

    dp_defer_init(&d, 8);
    for (int qid = 0; qid < 3; qid++) {
        ovs_assert(dp_defer_add(&d, fake_poll, &p, qid, 0));
    }
    ovs_assert(dp_defer_drain(&d, 1000) == 0);
    ovs_assert(stat(&d, DP_DEFER_STAT_COMPLETED) == 104);
    ovs_assert(p.q[0].polls == 100 && p.q[1].polls == 2 && p.q[2].polls == 1);

    /* A drain is bounded: what never completes is left for the caller. */
    ovs_assert(dp_defer_add(&d, fake_poll, &stuck, 0, 0));
    ovs_assert(dp_defer_drain(&d, 50) == 1);
    ovs_assert(stuck.q[0].polls == 50);
    dp_defer_destroy(&d);
}

static void
test_capacity(void)
{
    struct fake_port p = {
        .q[0] = { .inflight = 1, .per_poll = 1 },
        .q[1] = { .inflight = 1, .per_poll = 1 },
    };
    struct dp_defer d;

    dp_defer_init(&d, 2);
    ovs_assert(dp_defer_add(&d, fake_poll, &p, 0, 0));
    ovs_assert(dp_defer_add(&d, fake_poll, &p, 1, 0));
    ovs_assert(!dp_defer_add(&d, fake_poll, &p, 2, 0));   /* Full. */
    ovs_assert(dp_defer_add(&d, fake_poll, &p, 1, 0));    /* Known: fits. */
    ovs_assert(d.n == 2);
    ovs_assert(stat(&d, DP_DEFER_STAT_FULL) == 1);

    /* Room again once work completes. */
    ovs_assert(dp_defer_run(&d) == 2);
    ovs_assert(dp_defer_add(&d, fake_poll, &p, 2, 0));
    ovs_assert(d.n == 1);
    dp_defer_destroy(&d);
}

/* A second poll function: the same (port, queue) polled by another netdev
 * class is another entry. */
static enum dp_defer_status
other_poll(void *port, int qid, uint64_t cookie, unsigned int *n_completed)
{
    return fake_poll(port, qid, cookie, n_completed);
}

/* Done once the queue's completions reach the entry's cookie. */
static enum dp_defer_status
cookie_poll(void *port_, int qid OVS_UNUSED, uint64_t cookie,
            unsigned int *n_completed)
{
    uint64_t *completed = port_;

    *n_completed = 1;
    *completed += 1;
    return *completed >= cookie ? DP_DEFER_DONE : DP_DEFER_PENDING;
}

static void
test_cookie(void)
{
    uint64_t completed = 0;
    struct dp_defer d;

    dp_defer_init(&d, 8);
    ovs_assert(dp_defer_add(&d, cookie_poll, &completed, 0, 2));
    ovs_assert(dp_defer_add(&d, cookie_poll, &completed, 0, 4)); /* Latest. */
    ovs_assert(d.n == 1 && d.entries[0].cookie == 4);
    ovs_assert(dp_defer_drain(&d, 10) == 0);
    ovs_assert(completed == 4);
    dp_defer_destroy(&d);
}

static void
test_poll_function(void)
{
    struct fake_port p = { .q[0] = { .inflight = 2, .per_poll = 1 } };
    struct dp_defer d;

    dp_defer_init(&d, 8);
    ovs_assert(dp_defer_add(&d, fake_poll, &p, 0, 0));
    ovs_assert(dp_defer_add(&d, other_poll, &p, 0, 0));
    ovs_assert(dp_defer_add(&d, other_poll, &p, 0, 0));
    ovs_assert(d.n == 2);
    ovs_assert(dp_defer_run(&d) == 2);   /* Each entry polled once. */
    ovs_assert(p.q[0].polls == 2);
    ovs_assert(d.n == 1 && d.entries[0].poll == fake_poll);
    ovs_assert(dp_defer_run(&d) == 0);
    ovs_assert(!d.n);
    dp_defer_destroy(&d);
}

static void
test_clear_and_stats(void)
{
    struct fake_port stuck = { .q[0] = { .inflight = 5, .per_poll = 0 } };
    struct fake_port p = { .q[0] = { .inflight = 3, .per_poll = 3 } };
    uint64_t s[DP_DEFER_N_STATS];
    struct dp_defer d;

    dp_defer_init(&d, 8);
    ovs_assert(dp_defer_add(&d, fake_poll, &stuck, 0, 0));
    ovs_assert(dp_defer_add(&d, fake_poll, &p, 0, 0));
    ovs_assert(dp_defer_drain(&d, 4) == 1);

    /* A drain that does not finish leaves the entry; clearing drops it
     * without polling and counts it as abandoned. */
    ovs_assert(dp_defer_clear(&d) == 1);
    ovs_assert(!d.n);
    ovs_assert(stuck.q[0].polls == 4);
    dp_defer_run(&d);
    ovs_assert(stuck.q[0].polls == 4);

    dp_defer_stats_read(&d, s);
    ovs_assert(s[DP_DEFER_STAT_ADDED] == 2);
    ovs_assert(s[DP_DEFER_STAT_ABANDONED] == 1);
    ovs_assert(s[DP_DEFER_STAT_COMPLETED] == 3);
    ovs_assert(s[DP_DEFER_STAT_POLLS] == 5);
    ovs_assert(s[DP_DEFER_STAT_EMPTY_POLLS] == 4);
    ovs_assert(s[DP_DEFER_STAT_RUNS] == 4);

    /* Clearing the statistics starts them from zero; the list keeps
     * counting. */
    dp_defer_stats_clear(&d);
    dp_defer_stats_read(&d, s);
    for (int i = 0; i < DP_DEFER_N_STATS; i++) {
        ovs_assert(!s[i]);
    }
    p.q[0].inflight = 1;
    ovs_assert(dp_defer_add(&d, fake_poll, &p, 0, 0));
    ovs_assert(dp_defer_run(&d) == 1);
    dp_defer_stats_read(&d, s);
    ovs_assert(s[DP_DEFER_STAT_ADDED] == 1);
    ovs_assert(s[DP_DEFER_STAT_COMPLETED] == 1);
    ovs_assert(s[DP_DEFER_STAT_POLLS] == 1);

    /* Finishing polls until the deadline, then drops what is left; work
     * that completes in time is not abandoned. */
    p.q[0].inflight = 2;
    p.q[0].per_poll = 1;
    ovs_assert(dp_defer_add(&d, fake_poll, &p, 0, 0));
    ovs_assert(dp_defer_finish(&d, 1000) == 0);
    ovs_assert(!p.q[0].inflight);
    ovs_assert(dp_defer_add(&d, fake_poll, &stuck, 0, 0));
    ovs_assert(dp_defer_finish(&d, 0) == 1);
    ovs_assert(!d.n);
    ovs_assert(stuck.q[0].polls > 4);
    dp_defer_stats_read(&d, s);
    ovs_assert(s[DP_DEFER_STAT_ABANDONED] == 1);
    dp_defer_destroy(&d);
}

/* Copies submitted without packets returned: taken once, as work. */
static void
test_submitted(void)
{
    struct dp_defer d;

    dp_defer_init(&d, 1);
    dp_defer_note_submitted(&d, 5);
    dp_defer_note_submitted(&d, 3);
    ovs_assert(dp_defer_take_submitted(&d) == 8);
    ovs_assert(dp_defer_take_submitted(&d) == 0);
    dp_defer_destroy(&d);
}

/* Completes 'per_poll' packets a poll, and says there may be more when it
 * completed a full batch of 4. */
static enum dp_defer_status
batch_poll(void *port, int qid, uint64_t cookie, unsigned int *n_completed)
{
    enum dp_defer_status status = fake_poll(port, qid, cookie, n_completed);

    return status == DP_DEFER_PENDING && *n_completed == 4
           ? DP_DEFER_MORE : status;
}

/* A queue whose poll finds a full batch is polled again within the run, up
 * to DP_DEFER_MAX_POLLS times; the others once. */
static void
test_more(void)
{
    struct fake_port p = {
        .q[0] = { .inflight = 100, .per_poll = 4 },
        .q[1] = { .inflight = 100, .per_poll = 3 },
        .q[2] = { .inflight = 6, .per_poll = 4 },
    };
    struct dp_defer d;

    dp_defer_init(&d, 8);
    for (int qid = 0; qid < 3; qid++) {
        ovs_assert(dp_defer_add(&d, batch_poll, &p, qid, 0));
    }
    ovs_assert(dp_defer_run(&d) == 4 * DP_DEFER_MAX_POLLS + 3 + 6);
    ovs_assert(p.q[0].polls == DP_DEFER_MAX_POLLS);
    ovs_assert(p.q[1].polls == 1);
    ovs_assert(p.q[2].polls == 2 && !p.q[2].inflight);
    ovs_assert(d.n == 2);
    ovs_assert(stat(&d, DP_DEFER_STAT_POLLS) == DP_DEFER_MAX_POLLS + 3);
    dp_defer_destroy(&d);
}

/* dp_defer_run_due() times one run in DP_DEFER_TIME_EVERY, with the PMD
 * thread's cycle counter, and only when given one. */
static void
test_run_due_cycles(void)
{
    struct fake_port p = { .q[0] = { .inflight = 1000, .per_poll = 1 } };
    struct pmd_perf_stats perf;
    struct dp_defer d;

    memset(&perf, 0, sizeof perf);
    dp_defer_init(&d, 8);
    ovs_assert(dp_defer_add(&d, fake_poll, &p, 0, 0));
    for (int i = 0; i < 4 * DP_DEFER_TIME_EVERY; i++) {
        ovs_assert(dp_defer_run_due(&d, true, 0, NULL) == 1);
    }
    ovs_assert(!stat(&d, DP_DEFER_STAT_CYCLES));
    for (int i = 0; i < DP_DEFER_TIME_EVERY - 1; i++) {
        ovs_assert(dp_defer_run_due(&d, true, 0, &perf) == 1);
    }
    ovs_assert(!stat(&d, DP_DEFER_STAT_CYCLES));
    ovs_assert(dp_defer_run_due(&d, true, 0, &perf) == 1);
    ovs_assert(stat(&d, DP_DEFER_STAT_CYCLES) >= DP_DEFER_TIME_EVERY);
    ovs_assert(stat(&d, DP_DEFER_STAT_CYCLES) % DP_DEFER_TIME_EVERY == 0);
    dp_defer_destroy(&d);
}

static const struct {
    const char *name;
    void (*function)(void);
} tests[] = {
    { "add-dedup", test_add_dedup },
    { "run-removes-done", test_run_removes_done },
    { "run-due", test_run_due },
    { "no-head-of-line-blocking", test_no_head_of_line_blocking },
    { "drain", test_drain },
    { "capacity", test_capacity },
    { "poll-function", test_poll_function },
    { "cookie", test_cookie },
    { "clear-and-stats", test_clear_and_stats },
    { "submitted", test_submitted },
    { "more", test_more },
    { "run-due-cycles", test_run_due_cycles },
};

static void
test_dpif_netdev_defer_main(int argc, char *argv[])
{
    for (size_t i = 0; i < ARRAY_SIZE(tests); i++) {
        if (argc < 2 || !strcmp(argv[1], tests[i].name)) {
            tests[i].function();
            printf("%s: ok\n", tests[i].name);
            if (argc >= 2) {
                return;
            }
        }
    }
    if (argc >= 2) {
        ovs_fatal(0, "unknown test \"%s\"", argv[1]);
    }
}

OVSTEST_REGISTER("test-dpif-netdev-defer", test_dpif_netdev_defer_main);
