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

#include "ovs-rcu.h"

struct netdev_custom_stats;
struct rte_mbuf;
struct rte_mempool;

/* vhost async copies for vhost-user ports (DPDK's vhost async API on the
 * DMA-dev devices of lib/dpdk-dma.c).
 *
 * With other_config:vhost-async-support=true, vhost-user sockets are
 * registered with RTE_VHOST_USER_ASYNC_COPY, without packed virtqueues
 * (guests get split rings), and every vring of a new device gets an async
 * channel.  State is kept per vhost device id ('vid'):
 * it is created when DPDK reports a new device and freed when it reports
 * the device destroyed, after netdev-dpdk has made the vid invisible to the
 * PMD threads and waited for them to quiesce.
 *
 * Tx (enqueue to the guest): a thread that owns a DMA device submits
 * copies to it and registers the queue in its deferred-work list
 * (lib/dpif-netdev-defer.h), which polls the completions and frees the
 * mbufs.  A thread without a DMA device (the non-PMD thread, PMD threads
 * beyond the number of DMA devices) copies with the CPU through DPDK's
 * synchronous API, but only once the vring has no async copy in flight: it
 * first completes what is in flight itself, polling every DMA device that
 * carried copies for the vring, under the Tx queue lock so that nothing new
 * is submitted meanwhile.  Packets therefore never overtake each other
 * within a vring, whichever thread sends them.
 *
 * Rx (dequeue from the guest): the PMD thread that polls the rx queue
 * dequeues through its DMA device.  When the queue moves to another thread
 * with copies still in flight, the new poller first collects them through
 * the DMA device that carried them.  A frame that the async dequeue cannot
 * take (too large for the port's mbufs, or empty) is dropped and counted
 * by DPDK's synchronous dequeue, once nothing is in flight: it never stalls
 * the queue.
 *
 * Teardown: when DPDK disables a vring (before it unmaps guest memory) or
 * destroys the device, in-flight copies are completed synchronously,
 * bounded in time; what cannot be completed is logged and counted. */

uint64_t vhost_async_socket_flags(void);
uint64_t vhost_async_socket_unsupported_features(void);

/* DPDK vhost callbacks. */
void vhost_async_device_new(int vid, const char *ifname);
void vhost_async_device_destroy(int vid, const char *ifname);
bool vhost_async_vring_state_changed(int vid, uint16_t vring, int enable);

/* Data path. */
bool vhost_async_vring_active(int vid, uint16_t vring);
int vhost_async_send(const ovsrcu_index *vidp, int vid, uint16_t vring,
                     struct rte_mbuf **pkts, int cnt, int max_retries,
                     int *retries);
uint16_t vhost_async_recv(int vid, uint16_t vring, struct rte_mempool *,
                          struct rte_mbuf **pkts, uint16_t count,
                          unsigned int *dropped);

/* DPDK's synchronous dequeue, which counts the guest's frames it drops
 * (too large for the port's mbufs, or empty) in '*dropped': for vhost-user
 * ports with or without vhost async. */
uint16_t vhost_dequeue_burst(int vid, uint16_t vring, struct rte_mempool *,
                             struct rte_mbuf **pkts, uint16_t count,
                             unsigned int *dropped);

/* Statistics. */
struct netdev_stats;
void vhost_async_adjust_stats(int vid, struct netdev_stats *);
void vhost_async_get_custom_stats(int vid, int n_rxq, int n_txq,
                                  struct netdev_custom_stats *);

#endif /* netdev-dpdk-vhost-async.h */
