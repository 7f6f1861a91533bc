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

#ifndef VHOST_ASYNC_H
#define VHOST_ASYNC_H 1

#include "ovs-atomic.h"

struct dp_defer;
struct ds;

/* vhost async (lib/netdev-dpdk-vhost-async.h) as dpif-netdev's PMD threads
 * see it: the calls dpif-netdev makes, which builds without DPDK get from
 * lib/vhost-async-stub.c.
 *
 * A PMD thread calls vhost_async_pmd_start() before it polls any port, and
 * vhost_async_pmd_stop() after it has finished its deferred-work list, when
 * it exits.  In between, vhost async's sends and receives in that thread
 * use the thread's DMA device, register their copies in flight in 'defer',
 * and count in the thread's counters, which "dpif-netdev/pmd-stats-show"
 * shows with vhost_async_pmd_stats_format(). */

void vhost_async_pmd_start(unsigned int core_id, struct dp_defer *defer,
                           const atomic_uint64_t *busy_cycles,
                           const atomic_uint64_t *rx_pkts);
void vhost_async_pmd_stop(void);

void vhost_async_pmd_stats_format(struct ds *, unsigned int core_id,
                                  const struct dp_defer *);
void vhost_async_pmd_stats_clear(unsigned int core_id, struct dp_defer *);

#endif /* vhost-async.h */
