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

/* DMA-dev inventory.
 *
 * DPDK probes DMA-dev devices (software "dma_skeleton", Intel IOAT and
 * IDXD/DSA) from the EAL arguments: --vdev for software devices, the PCI
 * allow list for hardware.  dpdk_dma_init() takes stock of them once EAL is
 * up and registers "netdev-dpdk/dma-show". */

void dpdk_dma_init(void);
int dpdk_dma_count(void);

#endif /* dpdk-dma.h */
