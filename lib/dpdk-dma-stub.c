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

/* Stand-ins for lib/dpdk-dma.c in builds without DPDK. */

#include <config.h>
#include "dpdk-dma.h"

#include "util.h"

void
dpdk_dma_init(const struct smap *ovs_other_config OVS_UNUSED)
{
}

bool
dpdk_vhost_async_enabled(void)
{
    return false;
}


void
dpdk_dma_format_pmd(struct ds *reply OVS_UNUSED,
                    unsigned int core_id OVS_UNUSED)
{
}

void
dpdk_dma_clear_pmd(unsigned int core_id OVS_UNUSED)
{
}

void
dpdk_dma_thread_claim(unsigned int core_id OVS_UNUSED,
                      int numa_id OVS_UNUSED)
{
}

void
dpdk_dma_thread_release(void)
{
}

int16_t
dpdk_dma_thread_id(void)
{
    return -1;
}

void
dpdk_dma_count(enum dpdk_dma_stat stat OVS_UNUSED, uint64_t n OVS_UNUSED)
{
}

void
dpdk_dma_thread_set_counters(const atomic_uint64_t *busy_cycles OVS_UNUSED,
                             const atomic_uint64_t *rx_pkts OVS_UNUSED)
{
}
