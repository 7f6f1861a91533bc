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

#ifndef NETDEV_DPDK_VHOST_ASYNC_H
#define NETDEV_DPDK_VHOST_ASYNC_H 1

#include <stdbool.h>
#include <stdint.h>

struct netdev_custom_stats;
struct netdev_stats;
struct rte_mbuf;
struct rte_mempool;
struct smap;

/* vhost async: the packet copies between vhost-user guests and the switch
 * made by DMA-dev devices (lib/dpdk-dma.h) through DPDK's vhost async API.
 * This module owns all of it: its other_config keys, the copy policy, the
 * per-vring and per-thread state and counters, and teardown.  netdev-dpdk
 * calls it from its vhost callbacks and its send, receive and statistics
 * functions (this header); dpif-netdev from its PMD threads
 * (lib/vhost-async.h).
 *
 * Threads.  Each PMD thread claims one DMA device when it starts
 * (vhost_async_pmd_start()), preferably on its NUMA node, and is that
 * device's usual user; PMD threads beyond the number of devices, and every
 * other thread (the main thread), have none.  A thread's record, reached
 * through one thread-local pointer set by vhost_async_pmd_start(), holds
 * its DMA channel, its deferred-work list (lib/dpif-netdev-defer.h) and
 * its counters: no other context is passed implicitly.
 *
 * A vring's copies complete in submission order, on whatever devices
 * carried them, so a thread sometimes has to use another thread's device:
 * to queue its own copies behind copies in flight there, to complete them,
 * or to collect a dequeue whose rx queue moved.  That is safe because
 * DPDK's vhost library makes every DMA call (lib/vhost/virtio_net.c,
 * vhost_async_dma_transfer() and vhost_async_dma_check_completed()) under
 * the vchannel's own spinlock ('dma_lock' of struct async_dma_vchan_info),
 * taken after the vring lock and held for no call that can wait.  OVS
 * calls DMA devices only through vhost, and the guard
 * (lib/dpdk-dma-guard.h) runs inside those calls, so OVS needs no DMA lock
 * of its own.
 *
 * With other_config:vhost-async-support=true, vhost-user sockets are
 * registered with RTE_VHOST_USER_ASYNC_COPY, without packed virtqueues
 * (guests get split rings), and every vring of a new device gets an async
 * channel.  A device's state is created when DPDK reports a new device and
 * freed when it reports it destroyed, after netdev-dpdk has made the vid
 * invisible to the PMD threads and this module has waited for them to
 * quiesce.
 *
 * Tx (enqueue to the guest): the copy policy (other_config:
 * vhost-async-copy-policy, vhost-async-min-size) picks CPU or DMA copies
 * per burst.  A thread with a DMA device submits copies to it and
 * registers the queue in its deferred-work list, which polls the
 * completions and frees the mbufs.  A CPU copy (the policy's choice, or a
 * thread without a device) happens only when the vring has nothing in
 * flight; otherwise a thread without a device queues its burst behind the
 * copies in flight, on the device that carries them, and the threads
 * polling that vring (or this one, if it has a list) complete it; a thread
 * without a list completes its copies itself, bounded in time, under the
 * Tx queue lock.  Packets therefore never overtake each other within a
 * vring, whichever thread sends them.
 *
 * Rx (dequeue from the guest): the thread that polls the rx queue dequeues
 * through its DMA device, or with the CPU as the copy policy decided from
 * the latest packets.  When the queue moves to another thread with copies
 * still in flight, the new poller first collects them through the device
 * that carried them.  A frame that the async dequeue cannot take (too
 * large for the port's mbufs, or empty) is dropped and counted by DPDK's
 * synchronous dequeue, once nothing is in flight: it never stalls the
 * queue.
 *
 * Teardown: when DPDK disables a vring (before it unmaps guest memory) or
 * destroys the device, in-flight copies are completed synchronously,
 * bounded in time; what cannot be completed is logged, counted
 * ("netdev-dpdk/dma-show") and the devices that hold it are quarantined. */

/* Reads the vhost async keys of other_config: all of them at the first
 * call, once DPDK's EAL is up (which also sets up the DMA devices), the
 * ones that may change at run time afterwards. */
void vhost_async_set_config(const struct smap *ovs_other_config);

uint64_t vhost_async_socket_flags(void);
uint64_t vhost_async_socket_unsupported_features(void);

/* DPDK vhost callbacks. */
void vhost_async_device_new(int vid, const char *ifname);
void vhost_async_device_destroy(int vid, const char *ifname, bool in_use);
bool vhost_async_vring_state_changed(int vid, uint16_t vring, int enable);

/* Data path. */
bool vhost_async_vring_active(int vid, uint16_t vring);
int vhost_async_send(int vid, uint16_t vring, struct rte_mbuf **pkts,
                     int cnt, int max_retries, int *retries);
uint16_t vhost_async_recv(int vid, uint16_t vring, struct rte_mempool *,
                          struct rte_mbuf **pkts, uint16_t count,
                          unsigned int *dropped);

/* DPDK's synchronous dequeue, which counts the guest's frames it drops
 * (too large for the port's mbufs, or empty) in '*dropped': for vhost-user
 * ports with or without vhost async. */
uint16_t vhost_dequeue_burst(int vid, uint16_t vring, struct rte_mempool *,
                             struct rte_mbuf **pkts, uint16_t count,
                             unsigned int *dropped);

/* Port statistics, from the per-vring counters. */
void vhost_async_adjust_stats(int vid, struct netdev_stats *);
void vhost_async_get_custom_stats(int vid, int n_rxq, int n_txq,
                                  struct netdev_custom_stats *);

#endif /* netdev-dpdk-vhost-async.h */
