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

struct ds;

/* DMA-dev devices: inventory, setup and one device per claiming thread.
 *
 * DPDK probes DMA-dev devices (software "dma_skeleton", Intel IOAT and
 * IDXD/DSA) from the EAL arguments: --vdev for software devices, the PCI
 * allow list for hardware.  dpdk_dma_init() takes stock of them once EAL is
 * up and, if asked to, configures every device that can copy memory to
 * memory with one vchannel (DPDK_DMA_VCHAN), starts it, offers it to its
 * user (the 'use' callback: vhost async registers it with DPDK's vhost
 * library) and watches it for errors and stalls (lib/dpdk-dma-guard.h).
 *
 * A thread claims one free device with dpdk_dma_claim(), preferably on its
 * NUMA node, and releases it with dpdk_dma_release().  The owner is the
 * device's usual user, not necessarily its only one: DPDK's data-path DMA
 * calls are made under a per-vchannel lock by their caller (for vhost
 * async, DPDK's vhost library: see netdev-dpdk-vhost-async.h), not here.
 *
 * This module knows nothing of what the copies are for. */

/* The vchannel of every device set up here: each has exactly one. */
#define DPDK_DMA_VCHAN 0

/* A DMA channel: a device and one of its vchannels. */
struct dpdk_dma_chan {
    int16_t dev_id;             /* DMA-dev device id; -1: no channel. */
    uint16_t vchan;
};

#define DPDK_DMA_CHAN_NONE ((struct dpdk_dma_chan) { .dev_id = -1 })

/* Called for each device that dpdk_dma_init() has set up and started, with
 * its channel and name; returns false if the device is not to be used. */
typedef bool dpdk_dma_use_func(const struct dpdk_dma_chan *,
                               const char *name);

/* Takes stock of the DMA devices.  With 'use', sets up each one that can
 * copy memory to memory, with 'ring_size' descriptors (0: the default,
 * DPDK_DMA_DEFAULT_DESC or the device's maximum if lower). */
#define DPDK_DMA_DEFAULT_DESC 4096
#define DPDK_DMA_MAX_RING_SIZE 32768
void dpdk_dma_init(unsigned int ring_size, dpdk_dma_use_func *use);

/* The fewest descriptors of a device in use, 0 if none is. */
uint16_t dpdk_dma_min_ring_size(void);

bool dpdk_dma_claim(unsigned int core_id, int numa_id,
                    struct dpdk_dma_chan *);
void dpdk_dma_release(struct dpdk_dma_chan *);

/* True if 'chan' is a channel that takes copies: one that was claimed, of
 * a device that is not quarantined. */
bool dpdk_dma_chan_usable(const struct dpdk_dma_chan *);

/* Takes device 'dev_id' out of service (dpdk-dma-guard.h). */
void dpdk_dma_quarantine(int16_t dev_id, const char *why);

/* Appends the device of 'chan' ("name (id N)[, quarantined]") or the list
 * of every device, owners and states, to a reply. */
void dpdk_dma_format_chan(struct ds *, const struct dpdk_dma_chan *);
void dpdk_dma_format_devices(struct ds *);

#endif /* dpdk-dma.h */
