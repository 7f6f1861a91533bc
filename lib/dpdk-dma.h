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

#ifndef DPDK_DMA_H
#define DPDK_DMA_H 1

#include <stdbool.h>
#include <stdint.h>

#include "ovs-atomic.h"

struct smap;

/* DMA-dev devices for vhost async copies.
 *
 * DPDK probes DMA-dev devices (software "dma_skeleton", Intel IOAT and
 * IDXD/DSA) from the EAL arguments: --vdev for software devices, the PCI
 * allow list for hardware.  dpdk_dma_init() takes stock of them once EAL is
 * up, reads other_config:vhost-async-support (switched off, with a
 * warning, when vhost-iommu-support or vhost-postcopy-support is on: DPDK
 * refuses async copies with either) and, when it is on, configures every
 * device that can copy memory to memory with one
 * vchannel, starts it and registers it with vhost.
 *
 * Each PMD thread claims one free device when it starts
 * (dpdk_dma_thread_claim()) and releases it when it exits; it is the
 * device's usual user, but not its only one (see below).  A
 * thread without a device, or whose device is quarantined
 * (lib/dpdk-dma-guard.h), copies with the CPU.  "ovs-appctl
 * netdev-dpdk/dma-show" lists devices, owners and their state. */

void dpdk_dma_init(const struct smap *ovs_other_config);
bool dpdk_vhost_async_enabled(void);

/* other_config:vhost-async-min-size, read at every database change: frames
 * shorter than dpdk_dma_async_min_size() bytes are copied by the CPU when
 * their queue has no DMA copies in flight (so that order is kept), since a
 * DMA copy of a small frame costs the PMD thread more than a CPU copy. */
void dpdk_dma_set_config(const struct smap *ovs_other_config);
uint32_t dpdk_dma_async_min_size(void);
uint16_t dpdk_dma_min_ring_size(void);

/* other_config:vhost-async-copy-policy, read at every database change:
 * which copies go to a thread's DMA device.  Whatever the policy, a CPU
 * copy happens only where the queue has no DMA copies in flight, so that
 * it cannot overtake one. */
enum dpdk_dma_policy {
    DPDK_DMA_POLICY_ADAPTIVE,   /* Measured: the cheaper for this thread. */
    DPDK_DMA_POLICY_DMA,        /* Frames of vhost-async-min-size and up by
                                 * DMA, shorter ones by the CPU. */
    DPDK_DMA_POLICY_CPU,        /* Every frame by the CPU. */
};
enum dpdk_dma_policy dpdk_dma_policy(void);

/* The adaptive policy (see dpdk_dma_adaptive_dma() in dpdk-dma.c and
 * vhost-async-policy.h): each PMD thread measures epochs of
 * DPDK_DMA_EPOCH_PKTS received packets by its busy cycles per packet,
 * copies in the mode it chose, and now and then explores the other one for
 * an epoch. */
#define DPDK_DMA_EPOCH_PKTS 16384
void dpdk_dma_thread_set_counters(const atomic_uint64_t *busy_cycles,
                                  const atomic_uint64_t *rx_pkts);
bool dpdk_dma_adaptive_dma(void);

/* Cycles spent copying, for the "vhost async cycles" counters. */
void dpdk_dma_record_copy(bool by_dma, uint64_t cycles, unsigned int weight);
void dpdk_dma_record_poll(uint64_t cycles);

struct ds;
void dpdk_dma_format_pmd(struct ds *, unsigned int core_id);

void dpdk_dma_clear_pmd(unsigned int core_id);

void dpdk_dma_thread_claim(unsigned int core_id, int numa_id);
void dpdk_dma_thread_release(void);
int16_t dpdk_dma_thread_id(void);

/* DPDK's DMA data-path functions are not thread-safe: a vchannel must not
 * be used by two threads at once.  Its owning PMD thread is its usual user,
 * but a vring's copies in flight may have to be completed, or queued
 * behind, through another thread's device (a thread without a device, an
 * rx queue that moved, a vring being torn down).  DPDK's vhost library
 * takes care of it: every DMA call it makes (lib/vhost/virtio_net.c,
 * vhost_async_dma_transfer() and vhost_async_dma_check_completed()) runs
 * under the vchannel's own spinlock, 'dma_lock' of struct
 * async_dma_vchan_info, which it takes after the vring lock and holds for
 * no call that can wait.  OVS calls DMA devices only through vhost, and
 * the guard (lib/dpdk-dma-guard.h) runs inside those calls, so OVS needs
 * no DMA lock of its own. */

/* What vhost async's vring and device teardowns, which run in DPDK's vhost
 * thread, did with the copies they found in flight.  OVS's coverage
 * counters do not fit there: a thread's counts reach the totals only from
 * that thread's poll loop.  "netdev-dpdk/dma-show" shows them. */
enum dpdk_dma_teardown_stat {
    DPDK_DMA_TEARDOWN_FINISHED,     /* Copies completed. */
    DPDK_DMA_TEARDOWN_STUCK,        /* Copies still in flight after 1 s. */
    DPDK_DMA_N_TEARDOWN_STATS
};
void dpdk_dma_count_teardown(enum dpdk_dma_teardown_stat, uint64_t n);

/* Per-thread vhost copy counters, shown by "dpif-netdev/pmd-stats-show".
 * Only the thread itself updates them (the non-PMD thread's under
 * dpif-netdev's non-PMD mutex). */
enum dpdk_dma_stat {
    DPDK_DMA_TX_ASYNC,          /* Tx packets whose DMA copy completed. */
    DPDK_DMA_RX_ASYNC,          /* Rx packets whose DMA copy completed. */
    DPDK_DMA_TX_CPU,            /* Tx packets copied by the CPU. */
    DPDK_DMA_RX_CPU,            /* Rx packets copied by the CPU. */
    DPDK_DMA_CYC_SUBMIT,        /* Cycles in vhost calls that copy by DMA
                                 * (submitting; Rx also collects). */
    DPDK_DMA_CYC_POLL,          /* Cycles polling for Tx completions. */
    DPDK_DMA_CYC_CPU,           /* Cycles in vhost calls that copy by CPU. */
    DPDK_DMA_N_STATS
};

void dpdk_dma_count(enum dpdk_dma_stat, uint64_t n);

#endif /* dpdk-dma.h */
