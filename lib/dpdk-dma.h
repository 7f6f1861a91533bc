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
 * device's usual user, but not its only one (see dpdk_dma_lock()).  A
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
 * rx queue that moved, a vring being torn down).  So every vhost async call
 * that names a DMA device runs under that device's lock, uncontended in the
 * usual case.  Callers that may hold a vring lock that the device's owner
 * can wait for (DPDK's vhost callbacks) must use the trylock. */
void dpdk_dma_lock(int16_t id);
bool dpdk_dma_trylock(int16_t id);
void dpdk_dma_unlock(int16_t id);

/* A vhost call that takes a vring lock and waits for it
 * (rte_vhost_submit_enqueue_burst()) can wait while DPDK holds every vring
 * lock of that vhost device around a callback in which OVS must complete
 * the vrings' copies in flight, through this very DMA device: a deadlock
 * until the callback gives up.  So the holder of DMA device 'id' announces
 * such a call for vhost device 'vid' with dpdk_dma_vhost_enter() and ends it
 * with dpdk_dma_vhost_leave().  Meanwhile it cannot use the device: the
 * callback, which holds the vring locks of 'vid', may borrow it with
 * dpdk_dma_borrow(), which returns false if the holder is not in such a
 * call, and must give it back with dpdk_dma_give_back() before it returns.
 * dpdk_dma_vhost_leave() waits for that. */
void dpdk_dma_vhost_enter(int16_t id, int vid);
void dpdk_dma_vhost_leave(int16_t id, int vid);
bool dpdk_dma_borrow(int16_t id, int vid);
void dpdk_dma_give_back(int16_t id, int vid);

/* What vhost async's vring and device teardowns, which run in DPDK's vhost
 * thread, did with the copies they found in flight.  OVS's coverage
 * counters do not fit there: a thread's counts reach the totals only from
 * that thread's poll loop.  "netdev-dpdk/dma-show" shows them. */
enum dpdk_dma_teardown_stat {
    DPDK_DMA_TEARDOWN_FINISHED,     /* Copies completed. */
    DPDK_DMA_TEARDOWN_STUCK,        /* Copies still in flight after 1 s. */
    DPDK_DMA_TEARDOWN_BORROWED,     /* Times a DMA device was borrowed. */
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
    DPDK_DMA_N_STATS
};

void dpdk_dma_count(enum dpdk_dma_stat, uint64_t n);

#endif /* dpdk-dma.h */
