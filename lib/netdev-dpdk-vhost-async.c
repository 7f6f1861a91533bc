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

/* The vhost async and rte_dma APIs are experimental in DPDK 22.11. */
#ifndef ALLOW_EXPERIMENTAL_API
#define ALLOW_EXPERIMENTAL_API 1
#endif

#include <config.h>
#include "netdev-dpdk-vhost-async.h"

#include <rte_cycles.h>
#include <rte_dmadev.h>
#include <rte_mbuf.h>
#include <rte_vhost.h>
#include <rte_vhost_async.h>

#include "coverage.h"
#include "dpdk-dma.h"
#include "dpdk-dma-guard.h"
#include "dpif-netdev-defer.h"
#include "netdev.h"
#include "openvswitch/vlog.h"
#include "ovs-atomic.h"
#include "ovs-thread.h"
#include "timeval.h"
#include "util.h"

VLOG_DEFINE_THIS_MODULE(netdev_dpdk_vhost_async);

COVERAGE_DEFINE(vhost_async_tx_ring_full);
COVERAGE_DEFINE(vhost_async_tx_complete_inline);
COVERAGE_DEFINE(vhost_async_tx_shared_dma);
COVERAGE_DEFINE(vhost_async_rx_handover);
COVERAGE_DEFINE(vhost_rx_guest_frame_dropped);

static enum rte_vhost_msg_result vhost_async_pre_msg(int vid, void *msg);
static enum rte_vhost_msg_result vhost_async_post_msg(int vid, void *msg);
static const struct rte_vhost_user_extern_ops vhost_async_extern_ops = {
    .pre_msg_handle = vhost_async_pre_msg,
    .post_msg_handle = vhost_async_post_msg,
};

/* DPDK's limits: vrings per device, packets per async call. */
#define VHOST_ASYNC_MAX_VRINGS 256
#define VHOST_ASYNC_BURST 32

/* Bounds on waiting for in-flight copies: when a sending thread completes
 * its own copies itself (it has no deferred-work list, or a full one),
 * with its Tx queue lock held, and at teardown. */
#define VHOST_ASYNC_INLINE_US 1000
#define VHOST_ASYNC_TEARDOWN_MS 1000

/* Completion polls of one vring in a row, while each finds a full batch. */
#define VHOST_ASYNC_MAX_POLL_ROUNDS 4

/* A TSC read costs tens of cycles (more in some VMs): of the sends, the
 * dequeues and the deferred-work polls, which the "vhost async cycles"
 * counters time, one call in VHOST_ASYNC_TIME_EVERY of each kind is
 * timed, and counts for them all. */
#define VHOST_ASYNC_TIME_EVERY 8

/* Counts a call in '*calls'; returns true if it is one to time. */
static inline bool
vhost_async_timed(unsigned int *calls)
{
    *calls += 1;
    return !(*calls % VHOST_ASYNC_TIME_EVERY);
}

/* The calling thread's sends and deferred-work polls (dequeues are counted
 * per vring, by the one thread that polls it). */
DEFINE_STATIC_PER_THREAD_DATA(unsigned int, vhost_async_sends, 0);
DEFINE_STATIC_PER_THREAD_DATA(unsigned int, vhost_async_polls, 0);

/* Dequeue: polls in a row that found nothing to dequeue and nothing in
 * flight, after which vhost_async_recv() looks for a frame that the async
 * dequeue refuses (see there). */
#define VHOST_ASYNC_RX_STALL_POLLS 8

struct vhost_async_vring {
    PADDED_MEMBERS(CACHE_LINE_SIZE,
        bool registered;            /* Has an async channel. */
        atomic_int inflight;        /* Packets with copies in flight, counted
                                     * before they are submitted. */
        atomic_uint64_t dmas;       /* Bitmap of DMA ids that carried
                                     * copies for this vring. */
        atomic_int16_t tx_dma;      /* DMA of the latest Tx submission. */
        int16_t rx_dma;             /* Dequeue: DMA of the copies in flight,
                                     * -1 if none yet. */
        bool rx_small;              /* Dequeue: copy by CPU, as the copy
                                     * policy decided from the latest
                                     * packets received. */
        unsigned int rx_calls;      /* Dequeue: calls, to time some. */
        unsigned int rx_idle;       /* Dequeue: polls in a row that found
                                     * nothing, with nothing in flight. */
        bool rx_waiting;            /* Dequeue: after such polls, the guest
                                     * had frames waiting... */
        uint16_t rx_stuck_idx;      /* ...at this available index. */
        atomic_uint64_t tx_submitted; /* Tx: packets ever submitted (under
                                       * the Tx queue lock). */
        atomic_uint64_t tx_orphans; /* Tx: 'tx_submitted' after the latest
                                     * copies of a thread that could not
                                     * register them for polling. */
        atomic_uint64_t async_pkts; /* Packets copied by DMA: for Tx, ever
                                     * completed, in submission order. */
        atomic_uint64_t cpu_pkts;   /* Packets copied by the CPU. */
        atomic_uint64_t dropped;    /* Tx: packets not accepted; Rx: copies
                                     * completed at teardown, not
                                     * delivered. */
        atomic_uint64_t tx_undelivered; /* Tx: copies completed at teardown
                                         * that the guest never got (also
                                         * in 'async_pkts'). */
    );
};

struct vhost_async_dev {
    int vid;
    char *ifname;
    int n_vrings;
    bool in_mem_table;          /* DPDK is handling SET_MEM_TABLE.  Only
                                 * DPDK's vhost thread uses it. */
    struct vhost_async_vring vrings[VHOST_ASYNC_MAX_VRINGS];
};

BUILD_ASSERT_DECL(RTE_DMADEV_DEFAULT_MAX <= 64);

static ATOMIC(struct vhost_async_dev *) async_devs[RTE_MAX_VHOST_DEVICE];

static struct vhost_async_dev *
vhost_async_dev_get(int vid)
{
    struct vhost_async_dev *dev;

    if (OVS_UNLIKELY(vid < 0 || vid >= RTE_MAX_VHOST_DEVICE)) {
        return NULL;
    }
    atomic_read_explicit(&async_devs[vid], &dev, memory_order_acquire);
    return dev;
}

static void
counter_add(atomic_uint64_t *counter, uint64_t n)
{
    uint64_t orig;

    atomic_add_relaxed(counter, n, &orig);
}

static int
vring_inflight(struct vhost_async_vring *vr)
{
    int n;

    atomic_read_relaxed(&vr->inflight, &n);
    return n;
}

static void
vring_inflight_add(struct vhost_async_vring *vr, int n)
{
    int orig;

    atomic_add_relaxed(&vr->inflight, n, &orig);
}

/* Adds 'n' packets to the in-flight count of 'vr' if it has copies in
 * flight already.  Returns false, changing nothing, if it has none. */
static bool
vring_inflight_join(struct vhost_async_vring *vr, int n)
{
    int cur;

    atomic_read_relaxed(&vr->inflight, &cur);
    while (cur > 0) {
        if (atomic_compare_exchange_weak(&vr->inflight, &cur, cur + n)) {
            return true;
        }
    }
    return false;
}

static void
vring_note_dma(struct vhost_async_vring *vr, int16_t dma)
{
    uint64_t bit = UINT64_C(1) << dma;
    uint64_t dmas;

    atomic_read_relaxed(&vr->dmas, &dmas);
    if (!(dmas & bit)) {
        atomic_or_relaxed(&vr->dmas, bit, &dmas);
    }
}

static uint64_t
vring_dmas(struct vhost_async_vring *vr)
{
    uint64_t dmas;

    atomic_read_relaxed(&vr->dmas, &dmas);
    return dmas;
}

static bool
vring_is_tx(uint16_t vring)
{
    /* Even vrings carry packets to the guest: OVS's Tx. */
    return !(vring & 1);
}

uint64_t
vhost_async_socket_flags(void)
{
    return dpdk_vhost_async_enabled() ? RTE_VHOST_USER_ASYNC_COPY : 0;
}

/* Returns the virtio features that a vhost-user socket must not offer with
 * vhost async: packed virtqueues.
 *
 * DPDK 22.11's async dequeue on a packed ring frees an mbuf twice when it
 * cannot set up a descriptor chain's copies (lib/vhost/virtio_net.c:
 * virtio_dev_tx_async_single_packed() frees the mbuf when desc_to_mbuf()
 * fails, and virtio_dev_tx_async_packed() then bulk-frees from the same
 * index), which a guest can cause with long chains: a corrupted mempool in
 * the switch.  DPDK's synchronous path, which the small-packet policy and
 * threads without a DMA device use, is also unsafe on a packed ring while
 * async copies are in flight (its batch paths assume last_used_idx ==
 * last_avail_idx).  A guest that asks for packed rings gets split rings,
 * which every virtio driver supports. */
uint64_t
vhost_async_socket_unsupported_features(void)
{
    return dpdk_vhost_async_enabled()
           ? UINT64_C(1) << VIRTIO_F_RING_PACKED : 0;
}

/* Warns if a vring of vhost device 'vid' has more descriptors than the
 * smallest DMA ring: a burst that fills such a vring cannot be submitted
 * at once, and what does not fit is retried, then dropped and counted. */
static void
vhost_async_check_ring_size(int vid, const char *ifname, int n_vrings)
{
    uint16_t ring = dpdk_dma_min_ring_size();
    uint16_t max_size = 0;

    for (int i = 0; i < n_vrings; i++) {
        struct rte_vhost_vring vring;

        if (!rte_vhost_get_vhost_vring(vid, i, &vring)) {
            max_size = MAX(max_size, vring.size);
        }
    }
    if (ring && max_size > ring) {
        VLOG_WARN("vHost Device '%s': the guest's queues have up to %"PRIu16
                  " descriptors, more than the %"PRIu16" of the smallest "
                  "DMA ring: copies that do not fit are retried, then "
                  "dropped and counted (see other_config:"
                  "vhost-async-dma-ring-size).", ifname, max_size, ring);
    }
}

/* Registers an async channel for every vring of new vhost device 'vid'. */
void
vhost_async_device_new(int vid, const char *ifname)
{
    struct vhost_async_dev *dev, *old;
    int n_vrings, n_registered = 0;
    bool rx_small;

    if (!dpdk_vhost_async_enabled()
        || vid < 0 || vid >= RTE_MAX_VHOST_DEVICE) {
        return;
    }

    n_vrings = rte_vhost_get_vring_num(vid);
    if (n_vrings > VHOST_ASYNC_MAX_VRINGS) {
        n_vrings = VHOST_ASYNC_MAX_VRINGS;
    }

    dev = xzalloc_cacheline(sizeof *dev);
    dev->vid = vid;
    dev->ifname = xstrdup(ifname);
    dev->n_vrings = n_vrings;
    /* Receive queues start with CPU copies if small packets take them, or
     * the copy policy measures: the first burst received tells. */
    rx_small = dpdk_dma_policy() != DPDK_DMA_POLICY_DMA
               || dpdk_dma_async_min_size() > 0;
    for (int i = 0; i < VHOST_ASYNC_MAX_VRINGS; i++) {
        struct vhost_async_vring *vr = &dev->vrings[i];

        atomic_init(&vr->inflight, 0);
        atomic_init(&vr->dmas, 0);
        atomic_init(&vr->tx_dma, -1);
        vr->rx_dma = -1;
        vr->rx_small = rx_small;
        atomic_init(&vr->tx_submitted, 0);
        atomic_init(&vr->tx_orphans, 0);
        atomic_init(&vr->async_pkts, 0);
        atomic_init(&vr->cpu_pkts, 0);
        atomic_init(&vr->dropped, 0);
        atomic_init(&vr->tx_undelivered, 0);
    }
    for (int i = 0; i < n_vrings; i++) {
        if (!rte_vhost_async_channel_register(vid, i)) {
            dev->vrings[i].registered = true;
            n_registered++;
        } else {
            VLOG_WARN("vHost Device '%s': cannot register a vhost async "
                      "channel for queue %d: it copies with the CPU.",
                      ifname, i);
        }
    }

    vhost_async_check_ring_size(vid, ifname, n_vrings);
    if (n_registered
        && rte_vhost_extern_callback_register(vid, &vhost_async_extern_ops,
                                              NULL)) {
        VLOG_WARN("vHost Device '%s': cannot register the vhost-user "
                  "message hook: copies in flight when the guest disables "
                  "a queue may never be returned to it.", ifname);
    }

    atomic_read_explicit(&async_devs[vid], &old, memory_order_acquire);
    atomic_store_explicit(&async_devs[vid], dev, memory_order_release);
    if (old) {
        VLOG_WARN("vHost Device '%s': replaced stale vhost async state of "
                  "device %d.", ifname, vid);
        free(old->ifname);
        free_cacheline(old);
    }
    VLOG_INFO("vHost Device '%s': vhost async copies on %d of %d queues.",
              ifname, n_registered, n_vrings);
}

/* Completes the copies in flight on 'vring' of 'dev', polling every DMA
 * device that carried some, until none is left or 'deadline' (msec) has
 * passed.  With 'locked', the caller holds the vring's lock (it is inside a
 * DPDK callback).  Completed Tx packets are freed: DPDK wrote them to the
 * guest if 'delivered' (the vring is still enabled), and counts them as
 * sent either way.  Completed Rx packets are dropped.  Returns the number
 * of packets still in flight. */
static int
vhost_async_vring_drain(struct vhost_async_dev *dev, uint16_t vring,
                        bool locked, bool delivered, long long int deadline)
{
    struct vhost_async_vring *vr = &dev->vrings[vring];
    uint64_t dmas = vring_dmas(vr);
    uint64_t cleared = 0;
    int inflight;

    for (;;) {
        inflight = locked
                   ? rte_vhost_async_get_inflight_thread_unsafe(dev->vid,
                                                                vring)
                   : rte_vhost_async_get_inflight(dev->vid, vring);
        if (inflight < 0) {
            /* Busy vring: fall back on OVS's count. */
            inflight = vring_inflight(vr);
        }
        if (inflight <= 0 || time_msec() > deadline) {
            break;
        }

        for (int16_t dma = 0; dma < 64; dma++) {
            struct rte_mbuf *pkts[VHOST_ASYNC_BURST];
            uint16_t n;

            if (!(dmas & (UINT64_C(1) << dma))) {
                continue;
            }
            n = locked
                ? rte_vhost_clear_queue_thread_unsafe(dev->vid, vring, pkts,
                                                      VHOST_ASYNC_BURST,
                                                      dma, 0)
                : rte_vhost_clear_queue(dev->vid, vring, pkts,
                                        VHOST_ASYNC_BURST, dma, 0);
            if (n == UINT16_MAX) {
                /* DPDK says the vring lock is not held after all. */
                locked = false;
                continue;
            }
            if (n) {
                rte_pktmbuf_free_bulk(pkts, n);
                vring_inflight_add(vr, -n);
                cleared += n;
            }
        }
    }

    if (cleared) {
        dpdk_dma_count_teardown(DPDK_DMA_TEARDOWN_FINISHED, cleared);
        if (vring_is_tx(vring)) {
            counter_add(&vr->async_pkts, cleared);
            if (!delivered) {
                counter_add(&vr->tx_undelivered, cleared);
            }
        } else {
            counter_add(&vr->dropped, cleared);
        }
        VLOG_INFO("vHost Device '%s': completed %"PRIu64" in-flight "
                  "%s copies of queue %d%s.", dev->ifname, cleared,
                  vring_is_tx(vring) ? "Tx" : "Rx", vring,
                  vring_is_tx(vring) && delivered ? ""
                  : " (packets dropped)");
    }
    if (inflight > 0) {
        /* DPDK frees the vring's async state, and may unmap the guest's
         * memory, when this returns: the devices that still hold its
         * copies must take no more.  Their guards stop a device that
         * completes nothing for DPDK_DMA_GUARD_STALL_MS, well within the
         * deadline, and then finish its copies with the CPU, so this
         * happens only where the CPU cannot (IOVA as PA): the stopped
         * device writes nothing late. */
        dpdk_dma_count_teardown(DPDK_DMA_TEARDOWN_STUCK, inflight);
        for (int16_t dma = 0; dma < 64; dma++) {
            if (dmas & (UINT64_C(1) << dma)) {
                dpdk_dma_guard_quarantine(dma, "copies stuck at a vring "
                                          "teardown");
            }
        }
        VLOG_WARN("vHost Device '%s': %d copies of queue %d still in flight "
                  "after %d ms: DMA device stuck?", dev->ifname, inflight,
                  vring, VHOST_ASYNC_TEARDOWN_MS);
    }
    return inflight;
}

/* Completes what is in flight on every vring of vhost device 'vid' and
 * unregisters its async channels.  The caller has made sure that no PMD
 * thread uses 'vid' anymore. */
void
vhost_async_device_destroy(int vid, const char *ifname)
{
    struct vhost_async_dev *dev = vhost_async_dev_get(vid);

    if (!dev) {
        return;
    }
    for (int i = 0; i < dev->n_vrings; i++) {
        if (!dev->vrings[i].registered) {
            continue;
        }
        /* Each vring has its own deadline: one slow vring must not cut
         * the drain of the others short. */
        if (!vhost_async_vring_drain(dev, i, false, false,
                                     time_msec() + VHOST_ASYNC_TEARDOWN_MS)
            && rte_vhost_async_channel_unregister(vid, i)) {
            VLOG_WARN("vHost Device '%s': cannot unregister the vhost async "
                      "channel of queue %d.", ifname, i);
        }
    }
    atomic_store_explicit(&async_devs[vid], NULL, memory_order_release);
    free(dev->ifname);
    free_cacheline(dev);
}

/* Completes the copies in flight on 'vring' of vhost device 'vid' from a
 * DPDK callback, which holds the device's vring locks.  'delivered': the
 * vring is still enabled, so DPDK writes completed copies to the guest. */
static void
vhost_async_vring_drain_in_callback(int vid, uint32_t vring, bool delivered)
{
    struct vhost_async_dev *dev = vhost_async_dev_get(vid);

    if (dev && vring < dev->n_vrings && dev->vrings[vring].registered
        && vring_inflight(&dev->vrings[vring])) {
        vhost_async_vring_drain(dev, vring, true, delivered,
                                time_msec() + VHOST_ASYNC_TEARDOWN_MS);
    }
}

/* The start of a vhost-user message, as the vhost-user protocol defines it
 * (DPDK hands the whole message to vhost_async_pre_msg()). */
struct vhost_async_user_msg {
    uint32_t request;
    uint32_t flags;
    uint32_t size;
    uint32_t index;             /* SET_VRING_ENABLE: vring. */
    uint32_t num;               /* SET_VRING_ENABLE: 0 to disable. */
};
#define VHOST_ASYNC_USER_SET_MEM_TABLE 5
#define VHOST_ASYNC_USER_SET_VRING_ENABLE 18

/* DPDK calls this for every vhost-user message of vhost device 'vid'
 * before handling it, with the device's vring locks held for the messages
 * that change a vring.
 *
 * Copies completed once a vring is disabled are never written back to its
 * used ring: DPDK 22.11 only moves on its own index.  A guest that disables
 * a vring only to pause it (net_virtio_user does around every memory table
 * change) and enables it again would never get those descriptors back, and
 * with VIRTIO_F_IN_ORDER every later frame would come with the length of
 * another.  So copies in flight on a vring about to be disabled are
 * completed here, while it is still enabled. */
static enum rte_vhost_msg_result
vhost_async_pre_msg(int vid, void *msg_)
{
    const struct vhost_async_user_msg *msg = msg_;
    struct vhost_async_dev *dev = vhost_async_dev_get(vid);

    if (dev) {
        /* A message that failed gets no post_msg_handle() call. */
        dev->in_mem_table = msg->request == VHOST_ASYNC_USER_SET_MEM_TABLE;
    }
    if (msg->request == VHOST_ASYNC_USER_SET_VRING_ENABLE && !msg->num) {
        vhost_async_vring_drain_in_callback(vid, msg->index, true);
    }
    return RTE_VHOST_MSG_RESULT_NOT_HANDLED;
}

/* DPDK calls this for every vhost-user message of vhost device 'vid' that
 * it handled without an error. */
static enum rte_vhost_msg_result
vhost_async_post_msg(int vid, void *msg OVS_UNUSED)
{
    struct vhost_async_dev *dev = vhost_async_dev_get(vid);

    if (dev) {
        dev->in_mem_table = false;
    }
    return RTE_VHOST_MSG_RESULT_NOT_HANDLED;
}

/* DPDK calls this with the vring locks held after it stopped using a vring
 * (normally drained already by vhost_async_pre_msg()) and, on a memory
 * table change, before it unmaps the guest's memory: copies in flight must
 * be finished before returning.
 *
 * Returns false if the application must ignore the change: with async
 * copies, DPDK 22.11 reports every vring of the device disabled, then
 * enabled, around a memory table change, whatever the guest had enabled
 * (lib/vhost/vhost_user.c, vhost_user_set_mem_table(), lines 1305-1311
 * and 1403-1406), only so that the application stops its DMA copies.
 * Passed on, the "enabled" would have OVS send into vrings that the guest
 * never enabled.  The guest's own state does not change, and DPDK holds
 * every vring lock of the device until the new table is in place, so no
 * copy can start meanwhile. */
bool
vhost_async_vring_state_changed(int vid, uint16_t vring, int enable)
{
    struct vhost_async_dev *dev = vhost_async_dev_get(vid);
    bool in_mem_table = dev && dev->in_mem_table;

    if (!enable) {
        /* A memory table change leaves the vring enabled. */
        vhost_async_vring_drain_in_callback(vid, vring, in_mem_table);
    }
    return !in_mem_table;
}

bool
vhost_async_vring_active(int vid, uint16_t vring)
{
    struct vhost_async_dev *dev = vhost_async_dev_get(vid);

    return dev && vring < dev->n_vrings && dev->vrings[vring].registered;
}

/* Returns the completed Tx copies of 'vring' that DMA device 'dma' reports
 * and frees their mbufs.  Returns the number of packets completed. */
static unsigned int
vhost_async_tx_complete(struct vhost_async_dev *dev, uint16_t vring,
                        int16_t dma)
{
    struct vhost_async_vring *vr = &dev->vrings[vring];
    struct rte_mbuf *pkts[VHOST_ASYNC_BURST];
    uint16_t n;

    n = rte_vhost_poll_enqueue_completed(dev->vid, vring, pkts,
                                         VHOST_ASYNC_BURST, dma, 0);
    if (n) {
        rte_pktmbuf_free_bulk(pkts, n);
        vring_inflight_add(vr, -n);
        counter_add(&vr->async_pkts, n);
        dpdk_dma_count(DPDK_DMA_TX_ASYNC, n);
    }
    return n;
}

/* Polls 'vring' through every DMA device other than 'skip' that carried
 * copies for it.  Copies complete in order within a vring, so packets
 * queued behind another thread's copies wait for that thread's DMA device;
 * if that thread has stopped polling it, this keeps the vring moving. */
static unsigned int
vhost_async_tx_complete_others(struct vhost_async_dev *dev, uint16_t vring,
                               int16_t skip)
{
    uint64_t dmas = vring_dmas(&dev->vrings[vring]);
    unsigned int n = 0;

    if (skip >= 0) {
        dmas &= ~(UINT64_C(1) << skip);
    }
    for (int16_t dma = 0; dmas; dma++, dmas >>= 1) {
        if (dmas & 1) {
            n += vhost_async_tx_complete(dev, vring, dma);
        }
    }
    return n;
}

/* Returns true if the copies of Tx vring 'vr' have completed as far as a
 * deferred entry whose latest cookie is 'cookie' waits for: copies
 * complete in submission order, counted in 'async_pkts'.  Copies that a
 * thread without a list (the main thread) queues behind ours are waited
 * for too: it raises 'tx_orphans' before it submits them, so 'async_pkts'
 * is read first, with acquire: once it counts one of those copies,
 * 'tx_orphans' counts them all. */
static bool
vhost_async_defer_done(struct vhost_async_vring *vr, uint64_t cookie)
{
    uint64_t completed, submitted, orphans;

    atomic_read_explicit(&vr->async_pkts, &completed, memory_order_acquire);
    atomic_read_relaxed(&vr->tx_orphans, &orphans);
    atomic_read_relaxed(&vr->tx_submitted, &submitted);
    /* A cookie beyond what was submitted is from an earlier connection. */
    if (cookie > submitted) {
        cookie = 0;
    }
    return completed >= MAX(cookie, orphans);
}

/* The deferred-work poll function: 'port' is the vid of the netdev the
 * work was registered for, read anew at each poll, so that a destroyed
 * device is never touched.  'cookie' is the vring's 'tx_submitted' after
 * this thread's latest submission: copies complete in submission order, so
 * this thread's are done once that many have completed, whatever other
 * threads sharing the vring (XPS) have submitted since.  Waiting for the
 * whole vring instead kept a reloading thread spinning while another one
 * kept the vring busy. */
static enum dp_defer_status
vhost_async_defer_poll(void *port, int vring, uint64_t cookie,
                       unsigned int *n_completed)
{
    int vid = ovsrcu_index_get((const ovsrcu_index *) port);
    struct vhost_async_dev *dev = vhost_async_dev_get(vid);
    struct vhost_async_vring *vr;
    int16_t dma;

    *n_completed = 0;
    if (!dev || vring >= dev->n_vrings) {
        return DP_DEFER_DONE;
    }
    vr = &dev->vrings[vring];
    if (vhost_async_defer_done(vr, cookie)) {
        /* Another thread collected them. */
        return DP_DEFER_DONE;
    }

    bool timed = vhost_async_timed(vhost_async_polls_get());
    uint64_t start = timed ? rte_rdtsc() : 0;

    dma = dpdk_dma_thread_id();
    /* A thread that sends to this vring from several rx queues may have
     * more than a batch to collect: poll while a poll finds a full one. */
    for (int round = 0; round < VHOST_ASYNC_MAX_POLL_ROUNDS; round++) {
        unsigned int n = dma >= 0 ? vhost_async_tx_complete(dev, vring, dma)
                                  : 0;

        if (!n) {
            /* Copies complete in order within a vring: ours may wait
             * behind those of a thread that shares it, on its device. */
            n = vhost_async_tx_complete_others(dev, vring, dma);
        }
        *n_completed += n;
        if (n < VHOST_ASYNC_BURST) {
            break;
        }
    }
    if (timed) {
        dpdk_dma_record_poll((rte_rdtsc() - start)
                             * VHOST_ASYNC_TIME_EVERY);
    }
    return vhost_async_defer_done(vr, cookie) ? DP_DEFER_DONE
                                              : DP_DEFER_PENDING;
}

/* Returns true if every packet in 'pkts' is shorter than 'min_size' bytes,
 * false if one is not (always with 'min_size' 0). */
static bool
vhost_async_all_small(struct rte_mbuf **pkts, int cnt, uint32_t min_size)
{
    for (int i = 0; i < cnt; i++) {
        if (pkts[i]->pkt_len >= min_size) {
            return false;
        }
    }
    return true;
}

/* Returns true if the copy policy wants the 'cnt' packets in 'pkts' copied
 * by the CPU (which happens only where nothing is in flight). */
static bool
vhost_async_policy_cpu(struct rte_mbuf **pkts, int cnt)
{
    switch (dpdk_dma_policy()) {
    case DPDK_DMA_POLICY_CPU:
        return true;
    case DPDK_DMA_POLICY_DMA:
        return vhost_async_all_small(pkts, cnt, dpdk_dma_async_min_size());
    case DPDK_DMA_POLICY_ADAPTIVE:
    default:
        return !dpdk_dma_adaptive_dma();
    }
}

/* Copies 'pkts' with the CPU.  Nothing is in flight on 'vring' and the
 * caller holds its Tx queue lock, so nothing can be submitted meanwhile:
 * DPDK's synchronous API is safe to use.  Frees all of 'pkts'; returns how
 * many were dropped. */
static int
vhost_async_send_cpu(struct vhost_async_dev *dev, uint16_t vring,
                     struct rte_mbuf **pkts, int cnt, int max_retries,
                     int *retries)
{
    struct vhost_async_vring *vr = &dev->vrings[vring];
    bool timed = vhost_async_timed(vhost_async_sends_get());
    uint64_t start = timed ? rte_rdtsc() : 0;
    int sent = 0;

    do {
        int n = rte_vhost_enqueue_burst(dev->vid, vring, pkts + sent,
                                        cnt - sent);
        if (!n) {
            break;
        }
        sent += n;
    } while (sent < cnt && (*retries)++ < max_retries);
    if (timed) {
        dpdk_dma_record_copy(false, rte_rdtsc() - start,
                             VHOST_ASYNC_TIME_EVERY);
    }

    rte_pktmbuf_free_bulk(pkts, cnt);
    counter_add(&vr->cpu_pkts, sent);
    dpdk_dma_count(DPDK_DMA_TX_CPU, sent);
    if (sent < cnt) {
        counter_add(&vr->dropped, cnt - sent);
    }
    return cnt - sent;
}

/* Sends 'cnt' packets to 'vring' of vhost device 'vid', which must be
 * active (vhost_async_vring_active()), retrying up to 'max_retries' times
 * while the vring or the DMA ring is full.  'vidp' is the port's vid, for
 * the deferred-work list.  The caller holds the Tx queue lock of 'vring'.
 *
 * Takes ownership of 'pkts': packets whose copy was submitted are freed
 * when it completes, the others right away.  Returns the number of packets
 * dropped; stores the number of retries in '*retries'. */
int
vhost_async_send(const ovsrcu_index *vidp, int vid, uint16_t vring,
                 struct rte_mbuf **pkts, int cnt, int max_retries,
                 int *retries)
{
    struct vhost_async_dev *dev = vhost_async_dev_get(vid);
    int16_t dma = dpdk_dma_thread_id();
    struct vhost_async_vring *vr = &dev->vrings[vring];
    uint64_t orphans = 0;
    int sent = 0;

    *retries = 0;
    if (dma < 0) {
        /* No DMA device of our own.  With nothing in flight, copy with the
         * CPU.  Otherwise DPDK's synchronous API would overtake the copies
         * in flight (and is unsafe with packed rings): queue behind them
         * on the DMA device that carries them instead, which keeps the
         * vring's order; the threads that poll that vring, or this one if
         * it has a deferred-work list, complete them. */
        if (!vring_inflight_join(vr, cnt)) {
            return vhost_async_send_cpu(dev, vring, pkts, cnt, max_retries,
                                        retries);
        }
        atomic_read_relaxed(&vr->tx_dma, &dma);
        if (OVS_UNLIKELY(dma < 0 || dpdk_dma_guard_quarantined(dma))) {
            /* The copies in flight are on a device that takes no more:
             * finish them (its guard does what the device cannot), then
             * copy with the CPU.  Until then the vring is not ours. */
            vring_inflight_add(vr, -cnt);
            vhost_async_tx_complete_others(dev, vring, -1);
            if (!vring_inflight(vr)) {
                return vhost_async_send_cpu(dev, vring, pkts, cnt,
                                            max_retries, retries);
            }
            rte_pktmbuf_free_bulk(pkts, cnt);
            counter_add(&vr->dropped, cnt);
            return cnt;
        }
        COVERAGE_INC(vhost_async_tx_shared_dma);
        if (!dp_defer_thread_get()) {
            /* No deferred-work list (the main thread): the threads that
             * have copies in flight on this vring must go on polling until
             * ours have completed too, and must know it before they can
             * see their own copies complete. */
            uint64_t submitted;

            atomic_read_relaxed(&vr->tx_submitted, &submitted);
            orphans = submitted + cnt;
            atomic_store_explicit(&vr->tx_orphans, orphans,
                                  memory_order_release);
        }
    } else if (vhost_async_policy_cpu(pkts, cnt)
               && (!vring_inflight(vr)
                   || (vhost_async_tx_complete(dev, vring, dma)
                       && !vring_inflight(vr)))) {
        /* The copy policy wants the CPU (e.g. small packets cost less to
         * copy than to hand to a DMA device), and nothing is in flight,
         * perhaps once this thread collected its completions: otherwise a
         * steady flow would keep queueing behind its own DMA copies.  The
         * caller's Tx queue lock keeps other senders out, so the CPU copy
         * cannot overtake a DMA copy. */
        return vhost_async_send_cpu(dev, vring, pkts, cnt, max_retries,
                                    retries);
    } else {
        /* Count the whole burst in flight before submitting it, so that a
         * thread polling completions never sees this vring idle while
         * copies are on their way; the rest is taken back below.  The
         * caller's Tx queue lock keeps other senders out: with nothing in
         * flight, no other device carries copies of this vring anymore. */
        int16_t last_dma;

        if (!vring_inflight(vr)) {
            uint64_t dmas = vring_dmas(vr);

            /* Written only when it changes: other threads read this line. */
            if (dmas != UINT64_C(1) << dma) {
                atomic_store_relaxed(&vr->dmas, UINT64_C(1) << dma);
            }
        } else {
            vring_note_dma(vr, dma);
        }
        atomic_read_relaxed(&vr->tx_dma, &last_dma);
        if (last_dma != dma) {
            atomic_store_relaxed(&vr->tx_dma, dma);
        }
        vring_inflight_add(vr, cnt);
    }
    bool timed = vhost_async_timed(vhost_async_sends_get());
    uint64_t start = timed ? rte_rdtsc() : 0;

    for (;;) {
        int n;

        n = rte_vhost_submit_enqueue_burst(vid, vring, pkts + sent,
                                           cnt - sent, dma, 0);
        sent += n;
        if (sent >= cnt) {
            break;
        }
        /* The vring or the DMA ring is full: completions make room.  Like
         * the synchronous path, give up when nothing moves at all. */
        COVERAGE_INC(vhost_async_tx_ring_full);
        if ((*retries)++ >= max_retries
            || (!vhost_async_tx_complete(dev, vring, dma) && !n)) {
            break;
        }
    }
    if (sent != cnt) {
        vring_inflight_add(vr, sent - cnt);
    }
    if (timed) {
        dpdk_dma_record_copy(true, rte_rdtsc() - start,
                             VHOST_ASYNC_TIME_EVERY);
    }

    uint64_t submitted;

    atomic_read_relaxed(&vr->tx_submitted, &submitted);
    submitted += sent;
    atomic_store_relaxed(&vr->tx_submitted, submitted);
    if (orphans && sent < cnt) {
        atomic_store_relaxed(&vr->tx_orphans, submitted);
    }
    if (sent && !dp_defer_thread_add(vhost_async_defer_poll,
                                     CONST_CAST(ovsrcu_index *, vidp),
                                     vring, submitted)) {
        /* No deferred-work list (the non-PMD thread) or no room in it:
         * complete the copies now, as far as they go in a bounded time,
         * with the Tx queue lock held.  What is left has another poller:
         * this vring had copies in flight from a thread with a list,
         * which polls until 'tx_orphans' have completed too, or this
         * thread's list already holds it. */
        uint64_t completed;

        COVERAGE_INC(vhost_async_tx_complete_inline);
        if (!orphans) {
            /* A thread with a full list. */
            atomic_store_relaxed(&vr->tx_orphans, submitted);
        }
        long long int deadline = time_usec() + VHOST_ASYNC_INLINE_US;

        for (;;) {
            atomic_read_relaxed(&vr->async_pkts, &completed);
            if (completed >= submitted || time_usec() > deadline) {
                break;
            }
            if (!vhost_async_tx_complete(dev, vring, dma)) {
                vhost_async_tx_complete_others(dev, vring, dma);
            }
        }
    }

    if (sent < cnt) {
        rte_pktmbuf_free_bulk(pkts + sent, cnt - sent);
        counter_add(&vr->dropped, cnt - sent);
    }
    return cnt - sent;
}

/* Collects the dequeue copies in flight on 'vr' through its DMA device
 * 'vr->rx_dma', in order, into 'pkts'.  Returns how many. */
static uint16_t
vhost_async_rx_collect(struct vhost_async_dev *dev, uint16_t vring,
                       struct rte_mbuf **pkts, uint16_t count)
{
    struct vhost_async_vring *vr = &dev->vrings[vring];
    int nr_inflight;
    uint16_t n;

    n = rte_vhost_clear_queue(dev->vid, vring, pkts, count, vr->rx_dma, 0);
    nr_inflight = rte_vhost_async_get_inflight(dev->vid, vring);
    if (nr_inflight >= 0) {
        atomic_store_relaxed(&vr->inflight, nr_inflight);
    } else {
        vring_inflight_add(vr, -n);
    }
    counter_add(&vr->async_pkts, n);
    dpdk_dma_count(DPDK_DMA_RX_ASYNC, n);
    return n;
}

/* Returns how many descriptor chains of 'vring' of vhost device 'vid' were
 * consumed between the available indexes 'before' and 'after'
 * (rte_vhost_get_vring_base()), or UINT16_MAX if that cannot be told. */
static uint16_t
vhost_vring_consumed(int vid, uint16_t vring, uint16_t before,
                     uint16_t after)
{
    struct rte_vhost_vring vr;
    uint64_t features;

    if (!((before ^ after) & 0x8000)
        || rte_vhost_get_negotiated_features(vid, &features)
        || !(features & (UINT64_C(1) << VIRTIO_F_RING_PACKED))) {
        /* A split ring's index runs freely modulo 2^16. */
        return after - before;
    }
    /* A packed ring's index is below the ring size, with the wrap counter
     * in bit 15, which flipped. */
    if (rte_vhost_get_vhost_vring(vid, vring, &vr)) {
        return UINT16_MAX;
    }
    return (after & 0x7fff) + vr.size - (before & 0x7fff);
}

/* Dequeues up to 'count' packets from 'vring' of vhost device 'vid' into
 * 'pkts' with DPDK's synchronous API, allocating from 'mp'.
 *
 * DPDK drops a frame that it cannot put in one mbuf of 'mp' (the guest's
 * MTU is larger than the port's) or that is no larger than the virtio-net
 * header: it consumes the frame's descriptors, returns the frames before
 * it, and logs an error once per process.  Such drops are added to
 * '*dropped', told from how far the vring's available index moved. */
uint16_t
vhost_dequeue_burst(int vid, uint16_t vring, struct rte_mempool *mp,
                    struct rte_mbuf **pkts, uint16_t count,
                    unsigned int *dropped)
{
    uint16_t before, after, used, consumed, n;

    if (OVS_UNLIKELY(rte_vhost_get_vring_base(vid, vring, &before, &used))) {
        return rte_vhost_dequeue_burst(vid, vring, mp, pkts, count);
    }
    n = rte_vhost_dequeue_burst(vid, vring, mp, pkts, count);
    if (n < count
        && !rte_vhost_get_vring_base(vid, vring, &after, &used)
        && after != before) {
        consumed = vhost_vring_consumed(vid, vring, before, after);
        /* Only this thread dequeues from 'vring'; a guest that reconnected
         * meanwhile may have moved the index further. */
        if (OVS_UNLIKELY(consumed > n && consumed <= count)) {
            *dropped += consumed - n;
            COVERAGE_ADD(vhost_rx_guest_frame_dropped, consumed - n);
        }
    }
    return n;
}

/* Called after a dequeue from 'vr', vring 'vring' of vhost device 'vid',
 * found nothing with nothing in flight.  Returns true if the async dequeue
 * keeps refusing the frame at the head of the vring: the guest had frames
 * waiting, with the same available index, VHOST_ASYNC_RX_STALL_POLLS such
 * dequeues ago, and still has. */
static bool
vhost_async_rx_refused(int vid, struct vhost_async_vring *vr, uint16_t vring)
{
    uint16_t avail_idx, used_idx;
    bool waiting;

    if (++vr->rx_idle < VHOST_ASYNC_RX_STALL_POLLS) {
        return false;
    }
    vr->rx_idle = 0;
    waiting = !rte_vhost_get_vring_base(vid, vring, &avail_idx, &used_idx)
              && rte_vhost_rx_queue_count(vid, vring) > 0;
    if (waiting && vr->rx_waiting && avail_idx == vr->rx_stuck_idx) {
        vr->rx_waiting = false;
        return true;
    }
    vr->rx_waiting = waiting;
    vr->rx_stuck_idx = avail_idx;
    return false;
}

/* Receives up to 'count' packets from 'vring' of vhost device 'vid', which
 * must be active, into 'pkts', allocating from 'mp'.  Only the thread that
 * polls the rx queue calls this.  Adds the guest's frames that could not
 * be received (see vhost_dequeue_burst()) to '*dropped'.
 *
 * A dequeue does not know the size of the packets it is about to copy, so
 * the small-packet policy goes by the latest packets received: while they
 * are all shorter than the minimum size, the queue is copied by the CPU
 * (after the copies in flight have been collected, so that order is
 * kept), and by DMA again from the first burst with a larger packet.
 *
 * DPDK's async dequeue stops at a frame that it cannot put in an mbuf, or
 * that is no larger than the virtio-net header, without consuming it
 * (lib/vhost/virtio_net.c, virtio_dev_tx_async_split(): the "dropped"
 * breaks leave last_avail_idx on that frame): the queue would stall there
 * for good.  So when the guest has had frames waiting at the same place for
 * two rounds of VHOST_ASYNC_RX_STALL_POLLS polls that found nothing to
 * dequeue and nothing in flight (vhost_async_rx_refused()), DPDK's
 * synchronous dequeue, which drops such a frame and consumes it, runs once.
 * Nothing is in flight, so it cannot overtake an async copy, and it copies
 * no good frame, as it stops after the one it drops. */
uint16_t
vhost_async_recv(int vid, uint16_t vring, struct rte_mempool *mp,
                 struct rte_mbuf **pkts, uint16_t count,
                 unsigned int *dropped)
{
    struct vhost_async_dev *dev = vhost_async_dev_get(vid);
    struct vhost_async_vring *vr = &dev->vrings[vring];
    int16_t dma = dpdk_dma_thread_id();
    int nr_inflight = -1;
    uint16_t n = 0;

    if (OVS_UNLIKELY(vr->rx_dma >= 0 && (vr->rx_dma != dma || vr->rx_small))
        && vring_inflight(vr) > 0) {
        /* Copies in flight that must come first: the queue was polled by
         * another thread, which left them on its DMA device, or it goes
         * over to CPU copies. */
        if (vr->rx_dma != dma) {
            COVERAGE_INC(vhost_async_rx_handover);
        }
        return vhost_async_rx_collect(dev, vring, pkts, count);
    }

    /* A thread polls its rx queues far more often than it finds packets:
     * not every dequeue is timed (see VHOST_ASYNC_TIME_EVERY). */
    bool timed = vhost_async_timed(&vr->rx_calls);
    uint64_t start = timed ? rte_rdtsc() : 0;

    if (dma >= 0 && !vr->rx_small) {
        int prev_inflight = vring_inflight(vr);

        n = rte_vhost_async_try_dequeue_burst(vid, vring, mp, pkts, count,
                                              &nr_inflight, dma, 0);
        if (!n && nr_inflight > prev_inflight) {
            dp_defer_thread_note_submitted(nr_inflight - prev_inflight);
        }
        if (timed && (n || nr_inflight > 0)) {
            /* Idle polls are not copies. */
            dpdk_dma_record_copy(true, rte_rdtsc() - start,
                                 VHOST_ASYNC_TIME_EVERY);
        }
        if (nr_inflight >= 0) {
            atomic_store_relaxed(&vr->inflight, nr_inflight);
            if (nr_inflight && vr->rx_dma != dma) {
                vr->rx_dma = dma;
                vring_note_dma(vr, dma);
            }
        }
        if (n || nr_inflight) {
            /* Progress, or copies in flight (-1: the vring was busy). */
            vr->rx_idle = 0;
            vr->rx_waiting = false;
            if (!n) {
                return 0;
            }
            counter_add(&vr->async_pkts, n);
            dpdk_dma_count(DPDK_DMA_RX_ASYNC, n);
        } else if (!vhost_async_rx_refused(vid, vr, vring)) {
            return 0;
        }
    }
    if (dma < 0 || vr->rx_small || !n) {
        /* CPU copies, or a frame that the async dequeue refused (see
         * above). */
        vr->rx_waiting = false;
        if (timed) {
            /* Not the time of a refused async dequeue before it. */
            start = rte_rdtsc();
        }
        n = vhost_dequeue_burst(vid, vring, mp, pkts, count, dropped);
        if (n && timed) {
            dpdk_dma_record_copy(false, rte_rdtsc() - start,
                                 VHOST_ASYNC_TIME_EVERY);
        }
        if (n) {
            counter_add(&vr->cpu_pkts, n);
            dpdk_dma_count(DPDK_DMA_RX_CPU, n);
        }
    }

    if (n && dma >= 0) {
        /* The next dequeue copies by CPU or by DMA as the policy decides
         * for these packets. */
        vr->rx_small = vhost_async_policy_cpu(pkts, n);
    }
    return n;
}

/* DPDK counts every copy that completes in its per-vring "good_packets"
 * statistics, from which netdev-dpdk takes rx_packets and tx_packets, even
 * those that a teardown completed and that never reached their
 * destination: moves those of vhost device 'vid' from the packets to the
 * drops of 'stats'. */
void
vhost_async_adjust_stats(int vid, struct netdev_stats *stats)
{
    struct vhost_async_dev *dev = vhost_async_dev_get(vid);
    uint64_t rx_lost = 0, tx_lost = 0;

    for (int i = 0; dev && i < dev->n_vrings; i++) {
        struct vhost_async_vring *vr = &dev->vrings[i];
        uint64_t v;

        if (vring_is_tx(i)) {
            atomic_read_relaxed(&vr->tx_undelivered, &v);
            tx_lost += v;
        } else {
            atomic_read_relaxed(&vr->dropped, &v);
            rx_lost += v;
        }
    }
    rx_lost = MIN(rx_lost, stats->rx_packets);
    stats->rx_packets -= rx_lost;
    stats->rx_dropped += rx_lost;
    tx_lost = MIN(tx_lost, stats->tx_packets);
    stats->tx_packets -= tx_lost;
    stats->tx_dropped += tx_lost;
}

/* Appends the vhost async counters of vhost device 'vid' to 'stats'. */
void
vhost_async_get_custom_stats(int vid, int n_rxq, int n_txq,
                             struct netdev_custom_stats *stats)
{
    struct vhost_async_dev *dev = vhost_async_dev_get(vid);
    enum {
        TX_INFLIGHT, RX_INFLIGHT, TX_ASYNC, RX_ASYNC, TX_CPU, RX_CPU,
        TX_DROPPED, RX_DROPPED, N_COUNTERS
    };
    static const char *names[N_COUNTERS] = {
        [TX_INFLIGHT] = "vhost_async_tx_inflight",
        [RX_INFLIGHT] = "vhost_async_rx_inflight",
        [TX_ASYNC] = "vhost_async_tx_dma_packets",
        [RX_ASYNC] = "vhost_async_rx_dma_packets",
        [TX_CPU] = "vhost_async_tx_cpu_packets",
        [RX_CPU] = "vhost_async_rx_cpu_packets",
        [TX_DROPPED] = "vhost_async_tx_dropped",
        [RX_DROPPED] = "vhost_async_rx_dropped",
    };
    uint64_t values[N_COUNTERS] = { 0 };

    if (!dpdk_vhost_async_enabled()) {
        return;
    }
    for (int i = 0; dev && i < dev->n_vrings; i++) {
        struct vhost_async_vring *vr = &dev->vrings[i];
        bool tx = vring_is_tx(i);
        uint64_t v;

        if (i / 2 >= (tx ? n_txq : n_rxq)) {
            continue;
        }
        values[tx ? TX_INFLIGHT : RX_INFLIGHT] += MAX(vring_inflight(vr), 0);
        atomic_read_relaxed(&vr->async_pkts, &v);
        values[tx ? TX_ASYNC : RX_ASYNC] += v;
        atomic_read_relaxed(&vr->cpu_pkts, &v);
        values[tx ? TX_CPU : RX_CPU] += v;
        atomic_read_relaxed(&vr->dropped, &v);
        values[tx ? TX_DROPPED : RX_DROPPED] += v;
        if (tx) {
            /* Completed, but never delivered. */
            atomic_read_relaxed(&vr->tx_undelivered, &v);
            values[TX_ASYNC] -= v;
            values[TX_DROPPED] += v;
        }
    }

    stats->counters = xrealloc(stats->counters,
                               (stats->size + N_COUNTERS)
                               * sizeof *stats->counters);
    for (int i = 0; i < N_COUNTERS; i++) {
        struct netdev_custom_counter *c = &stats->counters[stats->size++];

        ovs_strlcpy(c->name, names[i], NETDEV_CUSTOM_STATS_NAME_SIZE);
        c->value = values[i];
    }
}
