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
#include <rte_errno.h>

#include "dpdk-dma-guard.h"
#include "openvswitch/dynamic-string.h"
#include "openvswitch/vlog.h"
#include "ovs-atomic.h"
#include "ovs-thread.h"
#include "util.h"

VLOG_DEFINE_THIS_MODULE(dpdk_dma);

struct dpdk_dma_dev {
    int16_t id;
    char *name;
    int numa_id;
    bool ready;                 /* Configured, started, in use. */
    int owner;                  /* Core id of the owning thread, or -1. */
};

static struct ovs_mutex dma_mutex = OVS_MUTEX_INITIALIZER;
static struct dpdk_dma_dev *dma_devs OVS_GUARDED_BY(dma_mutex);
static size_t n_dma_devs OVS_GUARDED_BY(dma_mutex);

/* The fewest descriptors of a ready DMA device (0: none is ready).  Written
 * at start-up, before any device is claimed. */
static atomic_uint16_t min_ring_size;

static bool
dpdk_dma_setup(int16_t id, const struct rte_dma_info *info,
               unsigned int ring_size, dpdk_dma_use_func *use)
{
    struct dpdk_dma_chan chan = { .dev_id = id, .vchan = DPDK_DMA_VCHAN };
    struct rte_dma_vchan_conf vchan_conf = {
        .direction = RTE_DMA_DIR_MEM_TO_MEM,
        .nb_desc = (ring_size ? ring_size
                    : MIN(DPDK_DMA_DEFAULT_DESC, info->max_desc)),
    };
    struct rte_dma_conf conf = { .nb_vchans = 1 };
    int err;

    if (!(info->dev_capa & RTE_DMA_CAPA_MEM_TO_MEM)) {
        VLOG_WARN("DMA device %s cannot copy memory to memory: not used",
                  info->dev_name);
        return false;
    }
    err = rte_dma_configure(id, &conf);
    if (!err) {
        err = rte_dma_vchan_setup(id, chan.vchan, &vchan_conf);
    }
    if (!err) {
        err = rte_dma_start(id);
    }
    if (err) {
        VLOG_WARN("DMA device %s (id %d) setup with %"PRIu16" descriptors "
                  "failed: %s; not used", info->dev_name, id,
                  vchan_conf.nb_desc, rte_strerror(-err));
        return false;
    }
    if (!use(&chan, info->dev_name)) {
        rte_dma_stop(id);
        return false;
    }
    if (!dpdk_dma_guard_install(id, info->dev_name)) {
        VLOG_WARN("DMA device %s (id %d): cannot watch it for errors and "
                  "stalls; not used", info->dev_name, id);
        rte_dma_stop(id);
        return false;
    }
    VLOG_INFO("DMA device %s (id %d) ready: 1 vchannel, %"PRIu16
              " descriptors", info->dev_name, id, vchan_conf.nb_desc);

    uint16_t min;

    atomic_read_relaxed(&min_ring_size, &min);
    if (!min || vchan_conf.nb_desc < min) {
        atomic_store_relaxed(&min_ring_size, vchan_conf.nb_desc);
    }
    return true;
}

uint16_t
dpdk_dma_min_ring_size(void)
{
    uint16_t min;

    atomic_read_relaxed(&min_ring_size, &min);
    return min;
}

static void
dpdk_dma_format_capa(struct ds *s, uint64_t capa)
{
    ds_put_cstr(s, capa & RTE_DMA_CAPA_MEM_TO_MEM
                   ? "mem-to-mem" : "no mem-to-mem");
    if (capa & RTE_DMA_CAPA_SVA) {
        ds_put_cstr(s, ", SVA");
    }
}

/* Appends every DMA device, its owner and its state to 's', for
 * "netdev-dpdk/dma-show". */
void
dpdk_dma_format_devices(struct ds *s)
{
    ovs_mutex_lock(&dma_mutex);
    ds_put_format(s, "DMA devices: %"PRIuSIZE"\n", n_dma_devs);
    for (size_t i = 0; i < n_dma_devs; i++) {
        const struct dpdk_dma_dev *dev = &dma_devs[i];
        struct rte_dma_stats stats;
        struct rte_dma_info info;

        ds_put_format(s, "  %s: id %d, numa %d", dev->name, dev->id,
                      dev->numa_id);
        if (!rte_dma_info_get(dev->id, &info)) {
            ds_put_format(s, ", descriptors %"PRIu16"-%"PRIu16
                          ", vchans %"PRIu16"/%"PRIu16", ", info.min_desc,
                          info.max_desc, info.nb_vchans, info.max_vchans);
            dpdk_dma_format_capa(s, info.dev_capa);
        }
        ds_put_char(s, '\n');
        if (!dev->ready) {
            ds_put_cstr(s, "    not in use\n");
            continue;
        }
        if (dev->owner >= 0) {
            ds_put_format(s, "    owner: PMD thread on core %d\n",
                          dev->owner);
        } else {
            ds_put_cstr(s, "    owner: none\n");
        }
        if (!rte_dma_stats_get(dev->id, DPDK_DMA_VCHAN, &stats)) {
            ds_put_format(s, "    submitted %"PRIu64", completed %"PRIu64
                          ", errors %"PRIu64"\n", stats.submitted,
                          stats.completed, stats.errors);
        }
        dpdk_dma_guard_format(s, dev->id);
    }
    ovs_mutex_unlock(&dma_mutex);
}

/* Appends the name and id of the device of 'chan' to 's'. */
void
dpdk_dma_format_chan(struct ds *s, const struct dpdk_dma_chan *chan)
{
    ovs_mutex_lock(&dma_mutex);
    for (size_t i = 0; i < n_dma_devs; i++) {
        if (dma_devs[i].id == chan->dev_id) {
            ds_put_format(s, "%s (id %d)", dma_devs[i].name, chan->dev_id);
        }
    }
    ovs_mutex_unlock(&dma_mutex);
}

void
dpdk_dma_init(unsigned int ring_size, dpdk_dma_use_func *use)
{
    int16_t id;

    ovs_mutex_lock(&dma_mutex);
    dma_devs = xcalloc(MAX(rte_dma_count_avail(), 1), sizeof *dma_devs);
    n_dma_devs = 0;
    RTE_DMA_FOREACH_DEV (id) {
        struct dpdk_dma_dev *dev;
        struct rte_dma_info info;
        struct ds s = DS_EMPTY_INITIALIZER;

        if (rte_dma_info_get(id, &info)) {
            VLOG_WARN("DMA device %d: cannot get device information", id);
            continue;
        }
        dpdk_dma_format_capa(&s, info.dev_capa);
        VLOG_INFO("DMA device %s (id %d): NUMA node %d, %"PRIu16"-%"PRIu16
                  " descriptors, %s", info.dev_name, id, info.numa_node,
                  info.min_desc, info.max_desc, ds_cstr(&s));
        ds_destroy(&s);

        dev = &dma_devs[n_dma_devs++];
        dev->id = id;
        dev->name = xstrdup(info.dev_name);
        dev->numa_id = info.numa_node;
        dev->owner = -1;
        dev->ready = use && dpdk_dma_setup(id, &info, ring_size, use);
    }
    VLOG_INFO("%"PRIuSIZE" DMA device%s found", n_dma_devs,
              n_dma_devs == 1 ? "" : "s");
    ovs_mutex_unlock(&dma_mutex);

    if (use) {
        dpdk_dma_guard_register_injector();
    }
}

/* Gives the calling thread, which runs on 'core_id' of NUMA node 'numa_id',
 * a free DMA device: one on its NUMA node if there is one, any other
 * otherwise.  Returns false, with '*chan' set to DPDK_DMA_CHAN_NONE, if
 * none is free. */
bool
dpdk_dma_claim(unsigned int core_id, int numa_id, struct dpdk_dma_chan *chan)
{
    struct dpdk_dma_dev *best = NULL;

    *chan = DPDK_DMA_CHAN_NONE;
    ovs_mutex_lock(&dma_mutex);
    for (size_t i = 0; i < n_dma_devs; i++) {
        struct dpdk_dma_dev *dev = &dma_devs[i];

        if (dev->ready && dev->owner < 0) {
            if (dev->numa_id == numa_id) {
                best = dev;
                break;
            } else if (!best) {
                best = dev;
            }
        }
    }
    if (best) {
        best->owner = core_id;
        chan->dev_id = best->id;
        chan->vchan = DPDK_DMA_VCHAN;
        VLOG_INFO("PMD thread on core %u (NUMA node %d) claimed DMA device "
                  "%s (id %d).", core_id, numa_id, best->name, best->id);
    } else {
        VLOG_INFO("PMD thread on core %u: no DMA device free, vhost copies "
                  "stay on the CPU.", core_id);
    }
    ovs_mutex_unlock(&dma_mutex);
    return best != NULL;
}

/* Releases the device of '*chan', if any, and sets '*chan' to
 * DPDK_DMA_CHAN_NONE. */
void
dpdk_dma_release(struct dpdk_dma_chan *chan)
{
    if (chan->dev_id < 0) {
        return;
    }
    ovs_mutex_lock(&dma_mutex);
    for (size_t i = 0; i < n_dma_devs; i++) {
        struct dpdk_dma_dev *dev = &dma_devs[i];

        if (dev->id == chan->dev_id) {
            VLOG_INFO("PMD thread on core %d released DMA device %s "
                      "(id %d).", dev->owner, dev->name, dev->id);
            dev->owner = -1;
        }
    }
    ovs_mutex_unlock(&dma_mutex);
    *chan = DPDK_DMA_CHAN_NONE;
}

bool
dpdk_dma_chan_usable(const struct dpdk_dma_chan *chan)
{
    return chan->dev_id >= 0 && !dpdk_dma_guard_quarantined(chan->dev_id);
}

void
dpdk_dma_quarantine(int16_t dev_id, const char *why)
{
    dpdk_dma_guard_quarantine(dev_id, why);
}
