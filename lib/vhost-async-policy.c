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
#include "vhost-async-policy.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

void
vhost_async_policy_init(struct vhost_async_policy *p)
{
    memset(p, 0, sizeof *p);
    p->next_explore = 1;
}

static int
compare_u64(const void *a_, const void *b_)
{
    const uint64_t *a = a_, *b = b_;

    return *a < *b ? -1 : *a > *b;
}

/* Puts 'value' into 'ring', of 'size' values (at most
 * VHOST_ASYNC_POLICY_PAIRS), of which '*n' were put so far, and returns the
 * median of the values in the ring. */
uint64_t
vhost_async_median(uint64_t *ring, size_t size, unsigned int *n,
                   uint64_t value)
{
    uint64_t sorted[VHOST_ASYNC_POLICY_PAIRS];
    size_t k;

    ovs_assert(size <= ARRAY_SIZE(sorted));
    ring[(*n)++ % size] = value;
    k = MIN(*n, size);
    memcpy(sorted, ring, k * sizeof sorted[0]);
    qsort(sorted, k, sizeof sorted[0], compare_u64);
    return sorted[k / 2];
}

/* Records that the epoch just over copied by DMA if 'was_dma', otherwise by
 * the CPU, and cost 'cost' (cycles per packet, more than 0).  Returns true
 * if the next epoch should copy by DMA. */
bool
vhost_async_policy_epoch(struct vhost_async_policy *p, bool was_dma,
                         uint64_t cost)
{
    const uint64_t threshold = 10 * (100 - VHOST_ASYNC_POLICY_MARGIN_PCT);

    cost = MAX(cost, 1);
    p->n_epochs++;
    if (p->exploring) {
        p->exploring = false;
        p->pairing = true;
        p->explore_cost = cost;
        return p->chosen_dma;
    }
    if (p->pairing) {
        uint64_t chosen = MIN(p->before_cost, cost);
        uint64_t dma = p->chosen_dma ? chosen : p->explore_cost;
        uint64_t cpu = p->chosen_dma ? p->explore_cost : chosen;
        uint64_t ratio = dma * 1000 / cpu;
        bool agrees = (ratio < threshold) == p->chosen_dma;

        p->pairing = false;
        p->ratio = vhost_async_median(p->ratios, VHOST_ASYNC_POLICY_PAIRS,
                                      &p->n_ratios, ratio);
        p->chosen_dma = p->ratio < threshold;
        p->explore_every = (agrees
                            ? MIN(MAX(2 * p->explore_every,
                                      VHOST_ASYNC_EXPLORE_MIN),
                                  VHOST_ASYNC_EXPLORE_MAX)
                            : VHOST_ASYNC_EXPLORE_MIN);
        p->next_explore = p->n_epochs + p->explore_every;
    }
    if (was_dma == p->chosen_dma) {
        p->before_cost = cost;
        /* An exploration follows an epoch in the chosen mode, so that it
         * has one on each side. */
        p->exploring = p->n_epochs >= p->next_explore;
    }
    return p->exploring ? !p->chosen_dma : p->chosen_dma;
}
