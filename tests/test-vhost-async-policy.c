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

/* Unit tests for lib/vhost-async-policy.c, the decision of vhost async's
 * adaptive copy policy: synthetic epoch costs in, copy modes out. */

#include <config.h>
#undef NDEBUG
#include "vhost-async-policy.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "command-line.h"
#include "ovstest.h"
#include "util.h"

/* What an epoch costs in the model of a noisy 2-CPU machine. */
struct model {
    uint64_t cpu;               /* Cycles per packet by CPU copy... */
    uint64_t dma;               /* ...and by DMA, before noise. */
    bool drift;                 /* Everything drifts by half, slowly. */
    bool spikes;                /* Now and then 1 to 3 epochs in a row cost
                                 * 3 to 7 times as much, in either mode. */
    uint32_t seed;
    int spike_left;
    uint64_t spike_factor;
};

static uint32_t
model_random(struct model *m)
{
    m->seed = m->seed * 1103515245 + 12345;
    return m->seed >> 8;
}

static uint64_t
model_cost(struct model *m, uint64_t epoch, bool dma)
{
    double cost = dma ? m->dma : m->cpu;

    /* +-5 % from one epoch to the next. */
    cost *= 0.95 + (model_random(m) % 1000) / 10000.0;
    if (m->drift) {
        cost *= 1.25 + 0.25 * sin(epoch * 2 * M_PI / 200);
    }
    if (m->spikes) {
        if (!m->spike_left && model_random(m) % 30 == 0) {
            m->spike_left = 1 + model_random(m) % 3;
            m->spike_factor = 3 + model_random(m) % 5;
        }
        if (m->spike_left) {
            m->spike_left--;
            cost *= m->spike_factor;
        }
    }
    return cost;
}

struct run {
    uint64_t dma_epochs;        /* Epochs copied by DMA. */
    uint64_t explorations;      /* Epochs in the mode not chosen. */
    int64_t last_switch;        /* Last epoch whose choice differed from
                                 * the one before, -1 if none. */
};

/* Runs 'n' epochs of 'm' through 'p', from epoch 'start'. */
static void
run_epochs(struct vhost_async_policy *p, struct model *m, uint64_t start,
           uint64_t n, struct run *r)
{
    bool dma = p->exploring ? !p->chosen_dma : p->chosen_dma;

    memset(r, 0, sizeof *r);
    r->last_switch = -1;
    for (uint64_t e = start; e < start + n; e++) {
        bool chosen = p->chosen_dma;

        r->dma_epochs += dma;
        r->explorations += dma != p->chosen_dma;
        dma = vhost_async_policy_epoch(p, dma, model_cost(m, e, dma));
        if (p->chosen_dma != chosen) {
            r->last_switch = e;
        }
    }
}

static void
test_median(struct ovs_cmdl_context *ctx OVS_UNUSED)
{
    uint64_t ring[5];
    unsigned int n = 0;

    ovs_assert(vhost_async_median(ring, 5, &n, 7) == 7);
    ovs_assert(vhost_async_median(ring, 5, &n, 1) == 7);
    ovs_assert(vhost_async_median(ring, 5, &n, 3) == 3);
    ovs_assert(vhost_async_median(ring, 5, &n, 100) == 7);
    ovs_assert(vhost_async_median(ring, 5, &n, 200) == 7);
    /* The ring overwrites its oldest: 1 3 100 200 300. */
    ovs_assert(vhost_async_median(ring, 5, &n, 300) == 100);
    ovs_assert(n == 6);
}

/* Both modes are measured first, the CPU first. */
static void
test_first_epochs(struct ovs_cmdl_context *ctx OVS_UNUSED)
{
    struct vhost_async_policy p;

    vhost_async_policy_init(&p);
    ovs_assert(!p.chosen_dma && !p.ratio);
    ovs_assert(vhost_async_policy_epoch(&p, false, 1000));     /* Explore. */
    ovs_assert(!vhost_async_policy_epoch(&p, true, 500));      /* Pair. */
    ovs_assert(vhost_async_policy_epoch(&p, false, 1100));     /* Chosen. */
    ovs_assert(p.chosen_dma && p.ratio == 500);
}

/* CPU copies are cheaper (dma_skeleton): the thread stays on them through
 * spikes in either mode, and explores DMA rarely. */
static void
test_cpu_cheaper(struct ovs_cmdl_context *ctx OVS_UNUSED)
{
    struct model m = { .cpu = 900, .dma = 1300, .spikes = true, .seed = 1 };
    struct vhost_async_policy p;
    struct run r;

    vhost_async_policy_init(&p);
    run_epochs(&p, &m, 0, 10000, &r);
    ovs_assert(!p.chosen_dma);
    ovs_assert(r.dma_epochs < 10000 / 100);
    printf("cpu cheaper: %"PRIu64" of 10000 epochs by DMA\n", r.dma_epochs);
}

/* DMA is cheaper (a hardware engine): the thread stays on it. */
static void
test_dma_cheaper(struct ovs_cmdl_context *ctx OVS_UNUSED)
{
    struct model m = { .cpu = 900, .dma = 600, .spikes = true, .seed = 2 };
    struct vhost_async_policy p;
    struct run r;

    vhost_async_policy_init(&p);
    run_epochs(&p, &m, 0, 10000, &r);
    ovs_assert(p.chosen_dma);
    ovs_assert(r.dma_epochs > 10000 - 10000 / 100);
    printf("dma cheaper: %"PRIu64" of 10000 epochs by DMA\n", r.dma_epochs);
}

/* The whole machine drifts by half, slowly, and spikes: only the ratio
 * counts, 10 % apart is enough. */
static void
test_drift(struct ovs_cmdl_context *ctx OVS_UNUSED)
{
    struct model m = { .cpu = 1000, .dma = 1150, .drift = true,
                       .spikes = true, .seed = 3 };
    struct vhost_async_policy p;
    struct run r;

    vhost_async_policy_init(&p);
    run_epochs(&p, &m, 0, 10000, &r);
    ovs_assert(!p.chosen_dma && r.dma_epochs < 10000 / 50);

    m = (struct model) { .cpu = 1000, .dma = 750, .drift = true,
                         .spikes = true, .seed = 4 };
    vhost_async_policy_init(&p);
    run_epochs(&p, &m, 0, 10000, &r);
    ovs_assert(p.chosen_dma && r.dma_epochs > 10000 - 10000 / 50);
}

/* DMA within the margin (5 % cheaper): CPU copies, the safe side. */
static void
test_margin(struct ovs_cmdl_context *ctx OVS_UNUSED)
{
    struct model m = { .cpu = 1000, .dma = 950, .seed = 5 };
    struct vhost_async_policy p;
    struct run r;

    vhost_async_policy_init(&p);
    run_epochs(&p, &m, 0, 5000, &r);
    ovs_assert(!p.chosen_dma);
}

/* On steady costs the explorations back off to one in
 * VHOST_ASYNC_EXPLORE_MAX epochs. */
static void
test_backoff(struct ovs_cmdl_context *ctx OVS_UNUSED)
{
    struct model m = { .cpu = 900, .dma = 1300, .seed = 6 };
    struct vhost_async_policy p;
    struct run r;

    vhost_async_policy_init(&p);
    run_epochs(&p, &m, 0, 5000, &r);
    run_epochs(&p, &m, 5000, 100 * VHOST_ASYNC_EXPLORE_MAX, &r);
    ovs_assert(r.explorations <= 101);
    ovs_assert(p.explore_every == VHOST_ASYNC_EXPLORE_MAX);
}

/* The engine changes while the explorations are backed off fully: the
 * thread follows within one backed-off interval and three quick
 * comparisons. */
static void
test_engine_change(struct ovs_cmdl_context *ctx OVS_UNUSED)
{
    const uint64_t bound = VHOST_ASYNC_EXPLORE_MAX
                           + 3 * (VHOST_ASYNC_EXPLORE_MIN + 2);
    struct model m = { .cpu = 900, .dma = 500, .spikes = true, .seed = 7 };
    struct vhost_async_policy p;
    struct run r;

    vhost_async_policy_init(&p);
    run_epochs(&p, &m, 0, 5000, &r);
    ovs_assert(p.chosen_dma);

    /* The engine slows down (another tenant, a thermal limit). */
    m.dma = 1800;
    run_epochs(&p, &m, 5000, 5000, &r);
    ovs_assert(!p.chosen_dma);
    printf("engine slowed: CPU chosen after %"PRId64" epochs (bound %"
           PRIu64")\n", r.last_switch - 5000 + 1, bound);
    ovs_assert(r.last_switch >= 5000 && r.last_switch < 5000 + bound);

    /* And recovers. */
    m.dma = 500;
    run_epochs(&p, &m, 10000, 5000, &r);
    ovs_assert(p.chosen_dma);
    printf("engine recovered: DMA chosen after %"PRId64" epochs\n",
           r.last_switch - 10000 + 1);
    ovs_assert(r.last_switch >= 10000 && r.last_switch < 10000 + bound);
}

static const struct ovs_cmdl_command commands[] = {
    {"median", NULL, 0, 0, test_median, OVS_RO},
    {"first-epochs", NULL, 0, 0, test_first_epochs, OVS_RO},
    {"cpu-cheaper", NULL, 0, 0, test_cpu_cheaper, OVS_RO},
    {"dma-cheaper", NULL, 0, 0, test_dma_cheaper, OVS_RO},
    {"drift", NULL, 0, 0, test_drift, OVS_RO},
    {"margin", NULL, 0, 0, test_margin, OVS_RO},
    {"backoff", NULL, 0, 0, test_backoff, OVS_RO},
    {"engine-change", NULL, 0, 0, test_engine_change, OVS_RO},
    {NULL, NULL, 0, 0, NULL, OVS_RO},
};

static void
test_vhost_async_policy_main(int argc, char *argv[])
{
    struct ovs_cmdl_context ctx = {
        .argc = argc - 1,
        .argv = argv + 1,
    };

    set_program_name(argv[0]);
    ovs_cmdl_run_command(&ctx, commands);
    printf("%s: ok\n", argv[1]);
}

OVSTEST_REGISTER("test-vhost-async-policy", test_vhost_async_policy_main);
