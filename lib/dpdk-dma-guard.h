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

#ifndef DPDK_DMA_GUARD_H
#define DPDK_DMA_GUARD_H 1

#include <stdbool.h>
#include <stdint.h>

struct ds;

/* Fault tolerance for the DMA-dev devices that vhost async copies with.
 *
 * DPDK 22.11's vhost library never recovers from a DMA error: it logs the
 * first completion error and never collects the failed copy
 * (lib/vhost/virtio_net.c, vhost_async_dma_check_completed()), so the
 * copies of every vring that used the device stay in flight for good; and
 * nothing notices a device that stops completing copies at all.
 *
 * So every device that vhost uses is "guarded": its fast-path functions in
 * DPDK's public rte_dma_fp_objs[] table (rte_dmadev_core.h) are wrapped.
 * The guard remembers each copy (source, destination, length) until the
 * device reports it complete, and:
 *
 *   - A copy that the device reports failed is done again with the CPU and
 *     then reported to vhost as complete: the frame arrives intact.
 *
 *   - A device with copies outstanding that completes none for
 *     DPDK_DMA_GUARD_STALL_MS is stopped (so that it can write nothing
 *     more), and its outstanding copies are done with the CPU.
 *
 *   - Either way the device is quarantined: it takes no new copies (its
 *     burst capacity is 0), its owner copies with the CPU, it is warned
 *     about once and shown as such by "netdev-dpdk/dma-show".  A
 *     quarantined device stays so until ovs-vswitchd restarts.
 *
 * The CPU can only redo copies whose addresses are virtual addresses
 * (IOVA as VA, which dma_skeleton requires); with IOVA as PA a failed or
 * stalled device is quarantined and stopped, and the vrings that had
 * copies on it stop until their guest reconnects.
 *
 * Every wrapped function runs under vhost's own per-vchannel lock, which
 * serialises the guard's state too.
 *
 * The guard also batches the device's doorbells (DPDK_DMA_GUARD_BATCH).
 *
 * The guard also carries a fault injector for tests: see
 * dpdk_dma_guard_register_injector(). */

/* How long a device may keep copies outstanding without completing any. */
#define DPDK_DMA_GUARD_STALL_MS 250

/* Copies queued before the guard rings a device's doorbell: vhost's
 * submissions are batched up to this many, or until the device is next
 * polled for completions (see guard_submit()). */
#define DPDK_DMA_GUARD_BATCH 16

bool dpdk_dma_guard_install(int16_t id, const char *name);
bool dpdk_dma_guard_quarantined(int16_t id);
void dpdk_dma_guard_quarantine(int16_t id, const char *why);
void dpdk_dma_guard_format(struct ds *, int16_t id);

/* Registers "netdev-dpdk/dma-inject-fault", a test-only command, when the
 * environment variable OVS_VHOST_ASYNC_FAULT_INJECTION is 1. */
void dpdk_dma_guard_register_injector(void);

#endif /* dpdk-dma-guard.h */
