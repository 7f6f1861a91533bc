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

/* The rte_dma API is experimental in DPDK 22.11. */
#ifndef ALLOW_EXPERIMENTAL_API
#define ALLOW_EXPERIMENTAL_API 1
#endif

#include <config.h>
#include "dpdk-dma.h"

#include <rte_dmadev.h>

#include "openvswitch/dynamic-string.h"
#include "openvswitch/vlog.h"
#include "unixctl.h"
#include "util.h"

VLOG_DEFINE_THIS_MODULE(dpdk_dma);

static int n_dma_devs;

static void
dpdk_dma_format_capa(struct ds *s, uint64_t capa)
{
    ds_put_cstr(s, capa & RTE_DMA_CAPA_MEM_TO_MEM
                   ? "mem-to-mem" : "no mem-to-mem");
    if (capa & RTE_DMA_CAPA_SVA) {
        ds_put_cstr(s, ", SVA");
    }
}

static void
dpdk_dma_show(struct unixctl_conn *conn, int argc OVS_UNUSED,
              const char *argv[] OVS_UNUSED, void *aux OVS_UNUSED)
{
    struct ds s = DS_EMPTY_INITIALIZER;
    int16_t id;

    ds_put_format(&s, "DMA devices: %d\n", rte_dma_count_avail());
    RTE_DMA_FOREACH_DEV (id) {
        struct rte_dma_stats stats;
        struct rte_dma_info info;

        if (rte_dma_info_get(id, &info)) {
            ds_put_format(&s, "  id %d: no information\n", id);
            continue;
        }
        ds_put_format(&s, "  %s: id %d, numa %d, descriptors %"PRIu16
                      "-%"PRIu16", vchans %"PRIu16"/%"PRIu16", ",
                      info.dev_name, id, info.numa_node, info.min_desc,
                      info.max_desc, info.nb_vchans, info.max_vchans);
        dpdk_dma_format_capa(&s, info.dev_capa);
        ds_put_char(&s, '\n');
        if (info.nb_vchans && !rte_dma_stats_get(id, 0, &stats)) {
            ds_put_format(&s, "    submitted %"PRIu64", completed %"PRIu64
                          ", errors %"PRIu64"\n", stats.submitted,
                          stats.completed, stats.errors);
        }
    }
    unixctl_command_reply(conn, ds_cstr(&s));
    ds_destroy(&s);
}

void
dpdk_dma_init(void)
{
    int16_t id;

    n_dma_devs = 0;
    RTE_DMA_FOREACH_DEV (id) {
        struct ds s = DS_EMPTY_INITIALIZER;
        struct rte_dma_info info;

        if (rte_dma_info_get(id, &info)) {
            VLOG_WARN("DMA device %d: cannot get device information", id);
            continue;
        }
        dpdk_dma_format_capa(&s, info.dev_capa);
        VLOG_INFO("DMA device %s (id %d): NUMA node %d, %"PRIu16"-%"PRIu16
                  " descriptors, %s", info.dev_name, id, info.numa_node,
                  info.min_desc, info.max_desc, ds_cstr(&s));
        ds_destroy(&s);
        n_dma_devs++;
    }
    VLOG_INFO("%d DMA device%s found", n_dma_devs,
              n_dma_devs == 1 ? "" : "s");

    unixctl_command_register("netdev-dpdk/dma-show", "", 0, 0,
                             dpdk_dma_show, NULL);
}

int
dpdk_dma_count(void)
{
    return n_dma_devs;
}
