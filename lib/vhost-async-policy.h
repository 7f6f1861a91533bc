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

#ifndef VHOST_ASYNC_POLICY_H
#define VHOST_ASYNC_POLICY_H 1

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The decision of vhost async's adaptive copy policy
 * (other_config:vhost-async-copy-policy=adaptive), apart from how a PMD
 * thread measures it: given what each epoch of copies by CPU or by DMA
 * cost the thread (its busy cycles per received packet), which mode the
 * next epoch copies in.
 *
 * The thread copies in the chosen mode and now and then explores the other
 * one for an epoch.  An exploration is compared with the epochs in the
 * chosen mode just before and just after it, the cheaper of the two: on a
 * shared machine the cost of everything drifts by half within seconds
 * and, for an epoch or three now and then, rises 3 to 7 times (the thread
 * or the guest was descheduled), in either mode, so only epochs close in
 * time compare, and no single comparison decides.  The choice is the
 * median of the latest VHOST_ASYNC_POLICY_PAIRS comparisons: DMA only
 * where it costs VHOST_ASYNC_POLICY_MARGIN_PCT less than CPU copies.
 *
 * The first exploration comes after one epoch.  One that agrees with the
 * choice doubles the time to the next, up to VHOST_ASYNC_EXPLORE_MAX epochs
 * (an exploration of the dearer mode costs the thread), one that does not
 * brings the next back to VHOST_ASYNC_EXPLORE_MIN epochs, so that a change
 * in the engine or the traffic is confirmed or refuted within a few.
 *
 * Not thread-safe: one instance per PMD thread, used by that thread. */

#define VHOST_ASYNC_POLICY_PAIRS 5
#define VHOST_ASYNC_POLICY_MARGIN_PCT 10
#define VHOST_ASYNC_EXPLORE_MIN 4
#define VHOST_ASYNC_EXPLORE_MAX 256

struct vhost_async_policy {
    bool chosen_dma;            /* The mode chosen, explorations aside. */
    bool exploring;             /* The next epoch explores. */
    bool pairing;               /* The next epoch follows an exploration. */
    uint64_t n_epochs;          /* Epochs measured so far. */
    uint64_t before_cost;       /* The latest epoch in the chosen mode. */
    uint64_t explore_cost;      /* The latest exploration. */
    uint64_t next_explore;      /* 'n_epochs' when the next explores. */
    uint64_t explore_every;     /* Epochs from one exploration to the next. */
    uint64_t ratios[VHOST_ASYNC_POLICY_PAIRS];  /* Ring of comparisons: DMA
                                                 * cost per mille of CPU's. */
    unsigned int n_ratios;      /* Comparisons made so far. */
    uint64_t ratio;             /* Median of 'ratios'; 0 before the first. */
};

void vhost_async_policy_init(struct vhost_async_policy *);
bool vhost_async_policy_epoch(struct vhost_async_policy *, bool was_dma,
                              uint64_t cost);
uint64_t vhost_async_median(uint64_t *ring, size_t size, unsigned int *n,
                            uint64_t value);

#endif /* vhost-async-policy.h */
