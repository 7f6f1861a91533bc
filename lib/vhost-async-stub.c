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

/* Stand-ins for lib/netdev-dpdk-vhost-async.c in builds without DPDK: what
 * dpif-netdev calls (lib/vhost-async.h). */

#include <config.h>
#include "vhost-async.h"

#include "dpif-netdev-defer.h"
#include "util.h"

void
vhost_async_pmd_start(unsigned int core_id OVS_UNUSED,
                      struct dp_defer *defer OVS_UNUSED,
                      const atomic_uint64_t *busy_cycles OVS_UNUSED,
                      const atomic_uint64_t *rx_pkts OVS_UNUSED)
{
}

void
vhost_async_pmd_stop(void)
{
}

void
vhost_async_pmd_stats_format(struct ds *reply OVS_UNUSED,
                             unsigned int core_id OVS_UNUSED,
                             const struct dp_defer *defer OVS_UNUSED)
{
}

void
vhost_async_pmd_stats_clear(unsigned int core_id OVS_UNUSED,
                            struct dp_defer *defer)
{
    dp_defer_stats_clear(defer);
}
