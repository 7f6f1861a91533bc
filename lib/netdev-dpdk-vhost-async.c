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
#include "vhost-async.h"

#include <string.h>

#include <rte_cycles.h>
#include <rte_dmadev.h>
#include <rte_mbuf.h>
#include <rte_spinlock.h>
#include <rte_version.h>
#include <rte_vhost.h>
#include <rte_vhost_async.h>

#include "coverage.h"
#include "dpdk-dma.h"
#include "dpif-netdev-defer.h"
#include "netdev.h"
#include "openvswitch/dynamic-string.h"
#include "openvswitch/list.h"
#include "openvswitch/vlog.h"
#include "ovs-atomic.h"
#include "ovs-numa.h"
#include "ovs-rcu.h"
#include "ovs-thread.h"
#include "smap.h"
#include "timeval.h"
#include "unixctl.h"
#include "util.h"
#include "vhost-async-policy.h"

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

/* A TSC read costs tens of cycles (more in some VMs): of the sends and the
 * dequeues, which the "vhost async cycles" counters time, one call in
 * VHOST_ASYNC_TIME_EVERY of each kind is timed, and counts for them all.
 * (Completion polls are timed by the deferred-work list that runs them.) */
#define VHOST_ASYNC_TIME_EVERY 8

/* Counts a call in '*calls'; returns true if it is one to time. */
static inline bool
vhost_async_timed(unsigned int *calls)
{
    *calls += 1;
    return !(*calls % VHOST_ASYNC_TIME_EVERY);
}

/* Dequeue: polls in a row that found nothing to dequeue and nothing in
 * flight, after which vhost_async_recv() looks for a frame that the async
 * dequeue refuses (see there). */
#define VHOST_ASYNC_RX_STALL_POLLS 8

/*
 * Configuration.
 *
 * Every other_config key of vhost async is read here, by
 * vhost_async_set_config(), at start-up and on every database change.
 * vhost-async-support and vhost-async-dma-ring-size take effect at
 * start-up only; vhost-async-min-size and vhost-async-copy-policy at any
 * time.
 */

/* other_config:vhost-async-min-size: frames shorter than this are copied by
 * the CPU when that keeps their queue's order (0: every frame by DMA). */
#define VHOST_ASYNC_DEFAULT_MIN_SIZE 256
#define VHOST_ASYNC_MAX_MIN_SIZE 65535

/* other_config:vhost-async-copy-policy: which copies go to a thread's DMA
 * device.  Whatever the policy, a CPU copy happens only where the queue
 * has no DMA copies in flight, so that it cannot overtake one. */
enum vhost_async_copy_policy {
    VHOST_ASYNC_POLICY_ADAPTIVE, /* Measured: the cheaper for this thread. */
    VHOST_ASYNC_POLICY_DMA,      /* Frames of vhost-async-min-size and up
                                  * by DMA, shorter ones by the CPU. */
    VHOST_ASYNC_POLICY_CPU,      /* Every frame by the CPU. */
};
static const char *const policy_names[] = {
    [VHOST_ASYNC_POLICY_ADAPTIVE] = "adaptive",
    [VHOST_ASYNC_POLICY_DMA] = "dma",
    [VHOST_ASYNC_POLICY_CPU] = "cpu",
};

static bool vhost_async_enabled;       /* Set once, at start-up. */
static atomic_uint32_t async_min_size = VHOST_ASYNC_DEFAULT_MIN_SIZE;
static atomic_int copy_policy = VHOST_ASYNC_POLICY_ADAPTIVE;

static void vhost_async_register_commands(void);

/* Reads other_config:vhost-async-support.  Anything but "true" or "false"
 * is warned about and taken as false. */
static bool
vhost_async_parse_support(const struct smap *cfg)
{
    const char *value = smap_get(cfg, "vhost-async-support");

    if (!value || !strcmp(value, "false")) {
        return false;
    } else if (!strcmp(value, "true")) {
        if (smap_get_bool(cfg, "vhost-iommu-support", false)) {
            VLOG_WARN("vhost-async-support disabled: DPDK does not support "
                      "vhost async copies together with "
                      "vhost-iommu-support, which stays enabled.");
            return false;
        }
        if (smap_get_bool(cfg, "vhost-postcopy-support", false)) {
            VLOG_WARN("vhost-async-support disabled: DPDK does not support "
                      "vhost async copies together with "
                      "vhost-postcopy-support, which stays enabled.");
            return false;
        }
        return true;
    }
    VLOG_WARN("Invalid value \"%s\" for other_config:vhost-async-support "
              "(expected true or false): vhost async disabled.", value);
    return false;
}

/* Reads other_config:vhost-async-dma-ring-size.  Returns 0 (the default)
 * if it is not set or malformed, with a warning in the latter case.  A
 * size the device does not support makes its setup fail, which is
 * logged. */
static unsigned int
vhost_async_parse_ring_size(const struct smap *cfg)
{
    const char *value = smap_get(cfg, "vhost-async-dma-ring-size");
    unsigned int size;

    if (!value) {
        return 0;
    }
    if (!str_to_uint(value, 10, &size) || !size
        || size > DPDK_DMA_MAX_RING_SIZE) {
        VLOG_WARN("Invalid value \"%s\" for other_config:"
                  "vhost-async-dma-ring-size (expected descriptors, 1 to "
                  "%d): using the default.", value, DPDK_DMA_MAX_RING_SIZE);
        return 0;
    }
    return size;
}

/* Reads other_config:vhost-async-min-size.  A malformed value is warned
 * about and replaced by the default. */
static void
vhost_async_set_min_size(const char *value)
{
    unsigned int min_size = VHOST_ASYNC_DEFAULT_MIN_SIZE;

    if (value && (!str_to_uint(value, 10, &min_size)
                  || min_size > VHOST_ASYNC_MAX_MIN_SIZE)) {
        VLOG_WARN("Invalid value \"%s\" for other_config:"
                  "vhost-async-min-size (expected bytes, 0 to %d): "
                  "using %d.", value, VHOST_ASYNC_MAX_MIN_SIZE,
                  VHOST_ASYNC_DEFAULT_MIN_SIZE);
        min_size = VHOST_ASYNC_DEFAULT_MIN_SIZE;
    }
    atomic_store_relaxed(&async_min_size, min_size);
    if (vhost_async_enabled) {
        if (min_size) {
            VLOG_INFO("vhost async: frames shorter than %u bytes are "
                      "copied by the CPU when their queue has no copies "
                      "in flight.", min_size);
        } else {
            VLOG_INFO("vhost async: frames of every size are copied by "
                      "DMA.");
        }
    }
}

/* Reads other_config:vhost-async-copy-policy.  A malformed value is warned
 * about and replaced by the default, "adaptive". */
static void
vhost_async_set_policy(const char *value)
{
    int policy = VHOST_ASYNC_POLICY_ADAPTIVE;

    if (value) {
        for (policy = 0; policy < ARRAY_SIZE(policy_names); policy++) {
            if (!strcmp(value, policy_names[policy])) {
                break;
            }
        }
        if (policy >= ARRAY_SIZE(policy_names)) {
            VLOG_WARN("Invalid value \"%s\" for other_config:"
                      "vhost-async-copy-policy (expected adaptive, dma or "
                      "cpu): using adaptive.", value);
            policy = VHOST_ASYNC_POLICY_ADAPTIVE;
        }
    }
    atomic_store_relaxed(&copy_policy, policy);
    if (vhost_async_enabled) {
        VLOG_INFO("vhost async copy policy: %s.", policy_names[policy]);
    }
}

/* A configuration key and the value it had when last read. */
struct vhost_async_key {
    const char *name;
    void (*set)(const char *value);     /* NULL: read at start-up only. */
    char *value;
};

static struct vhost_async_key config_keys[] = {
    { "vhost-async-support", NULL, NULL },
    { "vhost-async-dma-ring-size", NULL, NULL },
    { "vhost-async-min-size", vhost_async_set_min_size, NULL },
    { "vhost-async-copy-policy", vhost_async_set_policy, NULL },
};

/* DMA devices that dpdk_dma_init() set up are registered with vhost. */
static bool
vhost_async_use_dma(const struct dpdk_dma_chan *chan, const char *name)
{
    if (rte_vhost_async_dma_configure(chan->dev_id, chan->vchan)) {
        VLOG_WARN("DMA device %s (id %d): vhost refused it; not used",
                  name, chan->dev_id);
        return false;
    }
    return true;
}

/* Reads vhost async's configuration from 'ovs_other_config': everything at
 * the first call, which must come once DPDK's EAL is up, then the keys
 * that may change at run time, each when it changes.  The main thread
 * calls it. */
void
vhost_async_set_config(const struct smap *ovs_other_config)
{
    static bool initialized;

    if (!initialized) {
        vhost_async_enabled = vhost_async_parse_support(ovs_other_config);
        VLOG_INFO("vhost async support %s.",
                  vhost_async_enabled ? "enabled" : "disabled");
    }
    for (size_t i = 0; i < ARRAY_SIZE(config_keys); i++) {
        struct vhost_async_key *key = &config_keys[i];
        const char *value = smap_get(ovs_other_config, key->name);

        if (initialized && nullable_string_is_equal(value, key->value)) {
            continue;
        }
        free(key->value);
        key->value = nullable_xstrdup(value);
        if (key->set) {
            key->set(value);
        } else if (initialized) {
            VLOG_INFO("other_config:%s changed: it takes effect when "
                      "ovs-vswitchd restarts.", key->name);
        }
    }
    if (!initialized) {
        initialized = true;
        dpdk_dma_init(vhost_async_parse_ring_size(ovs_other_config),
                      vhost_async_enabled ? vhost_async_use_dma : NULL);
        vhost_async_register_commands();
    }
}

static enum vhost_async_copy_policy
vhost_async_policy(void)
{
    int policy;

    atomic_read_relaxed(&copy_policy, &policy);
    return policy;
}

/* Frames shorter than this many bytes go by CPU copy where order allows;
 * 0 if every frame goes by DMA. */
static uint32_t
vhost_async_min_size(void)
{
    uint32_t min_size;

    atomic_read_relaxed(&async_min_size, &min_size);
    return min_size;
}

/*
 * Counters.
 *
 * One kind of counter block, in the pattern of dpif-netdev-perf.h's per-PMD
 * counters ('n' counts, 'zero' is where "pmd-stats-clear" last left them),
 * kept per vring (port statistics), per PMD thread and for all other
 * threads together ("pmd-stats-show", "netdev-dpdk/dma-show").
 * vhost_async_count() counts an event in both the vring's block and the
 * calling thread's, in one call.  A PMD thread's block has one writer;
 * the others are added to atomically.
 */
enum vhost_async_stat {
    VHOST_ASYNC_TX_DMA,         /* Tx packets whose DMA copy completed. */
    VHOST_ASYNC_RX_DMA,         /* Rx packets whose DMA copy completed. */
    VHOST_ASYNC_TX_CPU,         /* Tx packets copied by the CPU. */
    VHOST_ASYNC_RX_CPU,         /* Rx packets copied by the CPU. */
    VHOST_ASYNC_TX_DROPPED,     /* Tx packets not accepted. */
    VHOST_ASYNC_RX_DROPPED,     /* Rx copies completed at a teardown, never
                                 * delivered. */
    VHOST_ASYNC_TX_UNDELIVERED, /* Tx copies completed at a teardown that
                                 * the guest never got (also in
                                 * VHOST_ASYNC_TX_DMA). */
    VHOST_ASYNC_TEARDOWN_FINISHED, /* Copies a teardown completed. */
    VHOST_ASYNC_TEARDOWN_STUCK, /* Copies still in flight after
                                 * VHOST_ASYNC_TEARDOWN_MS. */
    VHOST_ASYNC_CYC_SUBMIT,     /* Cycles in vhost calls that copy by DMA
                                 * (submitting; Rx also collects). */
    VHOST_ASYNC_CYC_CPU,        /* Cycles in vhost calls that copy by CPU. */
    VHOST_ASYNC_N_STATS
};

struct vhost_async_counters {
    atomic_uint64_t n[VHOST_ASYNC_N_STATS];
    uint64_t zero[VHOST_ASYNC_N_STATS];
};

static void
vhost_async_counters_init(struct vhost_async_counters *c)
{
    for (int i = 0; i < VHOST_ASYNC_N_STATS; i++) {
        atomic_init(&c->n[i], 0);
        c->zero[i] = 0;
    }
}

static void
vhost_async_counters_add(struct vhost_async_counters *c,
                         enum vhost_async_stat stat, uint64_t n,
                         bool one_writer)
{
    uint64_t cur;

    if (one_writer) {
        atomic_read_relaxed(&c->n[stat], &cur);
        atomic_store_relaxed(&c->n[stat], cur + n);
    } else {
        atomic_add_relaxed(&c->n[stat], n, &cur);
    }
}

static uint64_t
vhost_async_counter_get(const struct vhost_async_counters *c,
                        enum vhost_async_stat stat)
{
    uint64_t n;

    atomic_read_relaxed(CONST_CAST(atomic_uint64_t *, &c->n[stat]), &n);
    return n - c->zero[stat];
}

static void
vhost_async_counters_clear(struct vhost_async_counters *c)
{
    for (int i = 0; i < VHOST_ASYNC_N_STATS; i++) {
        atomic_read_relaxed(&c->n[i], &c->zero[i]);
    }
}

/*
 * Threads.
 *
 * The thread-context contract: a PMD thread calls vhost_async_pmd_start()
 * before it sends or receives and vhost_async_pmd_stop() when it exits;
 * in between, the calling thread's record (below) gives every vhost async
 * call it makes its DMA channel, its deferred-work list and its counters.
 * Any other thread (the main thread, DPDK's vhost thread) has no record of
 * its own: it copies with the CPU, completes its Tx copies itself, and
 * counts in 'other_threads'.
 */

/* What one copy mode cost a PMD thread, for "pmd-stats-show": the busy
 * cycles per received packet of its latest VHOST_ASYNC_COST_EPOCHS epochs
 * in that mode, and their median.  Only the owning thread writes them. */
#define VHOST_ASYNC_COST_EPOCHS 5
struct vhost_async_cost {
    uint64_t recent[VHOST_ASYNC_COST_EPOCHS];
    unsigned int n;             /* Epochs recorded, all told. */
    atomic_uint64_t median;     /* 0: nothing measured yet. */
};
BUILD_ASSERT_DECL(VHOST_ASYNC_COST_EPOCHS <= VHOST_ASYNC_POLICY_PAIRS);

/* The adaptive policy (vhost_async_adaptive_dma()) measures epochs of
 * VHOST_ASYNC_EPOCH_PKTS received packets.  After the mode changes, copies
 * in flight drain and bursts change size: the first
 * VHOST_ASYNC_SETTLE_PKTS packets of an epoch in the new mode are not
 * measured. */
#define VHOST_ASYNC_EPOCH_PKTS 16384
#define VHOST_ASYNC_SETTLE_PKTS (VHOST_ASYNC_EPOCH_PKTS / 4)

/* A PMD thread's record.  Records live as long as the process, so that a
 * thread's figures survive reloads and restarts on the same core. */
struct vhost_async_thread {
    struct ovs_list node;       /* In 'threads'. */
    unsigned int core_id;
    struct vhost_async_counters counters;

    /* Set by vhost_async_pmd_start(), under 'threads_mutex'. */
    struct dpdk_dma_chan chan;  /* DPDK_DMA_CHAN_NONE: CPU copies. */
    struct dp_defer *defer;     /* The thread's deferred-work list. */
    const atomic_uint64_t *busy_cycles; /* The thread's busy cycles... */
    const atomic_uint64_t *rx_pkts;     /* ...and received packets. */

    /* Only the thread itself uses these. */
    unsigned int n_sends;       /* Sends, to time some. */
    struct vhost_async_policy policy;
    struct vhost_async_cost mode_cost[2];   /* By CPU ([0]), by DMA ([1]). */
    bool epoch_dma;             /* The current epoch copies by DMA. */
    bool settling;              /* The mode just changed. */
    uint64_t epoch_cycles;      /* The current epoch started at these busy */
    uint64_t epoch_pkts;        /* cycles and received packets. */

    /* What the adaptive policy measured, for other threads. */
    atomic_uint64_t ratio;      /* 'policy.ratio'. */
    atomic_uint64_t n_epochs;
};

static struct ovs_mutex threads_mutex = OVS_MUTEX_INITIALIZER;
static struct ovs_list threads OVS_GUARDED_BY(threads_mutex)
    = OVS_LIST_INITIALIZER(&threads);

/* The counters of every thread without a record. */
static struct vhost_async_counters other_threads;

/* The calling thread's record, NULL in threads other than PMD threads. */
DEFINE_STATIC_PER_THREAD_DATA(struct vhost_async_thread *, cur_thread, NULL);

static struct vhost_async_thread *
vhost_async_thread_find(unsigned int core_id)
    OVS_REQUIRES(threads_mutex)
{
    struct vhost_async_thread *t;

    LIST_FOR_EACH (t, node, &threads) {
        if (t->core_id == core_id) {
            return t;
        }
    }
    return NULL;
}

/* Starts vhost async in the calling PMD thread, which runs on 'core_id' and
 * owns 'defer'.  The copy policy reads the thread's busy cycles and
 * received packets from '*busy_cycles' and '*rx_pkts' (dpif-netdev's
 * per-PMD counters, which only the thread itself updates). */
void
vhost_async_pmd_start(unsigned int core_id, struct dp_defer *defer,
                      const atomic_uint64_t *busy_cycles,
                      const atomic_uint64_t *rx_pkts)
{
    struct vhost_async_thread *t;

    if (!vhost_async_enabled) {
        return;
    }
    ovs_mutex_lock(&threads_mutex);
    t = vhost_async_thread_find(core_id);
    if (!t) {
        t = xzalloc(sizeof *t);
        t->core_id = core_id;
        vhost_async_counters_init(&t->counters);
        ovs_list_push_back(&threads, &t->node);
    }
    dpdk_dma_claim(core_id, ovs_numa_get_numa_id(core_id), &t->chan);
    t->defer = defer;
    t->busy_cycles = busy_cycles;
    t->rx_pkts = rx_pkts;
    t->epoch_pkts = 0;
    ovs_mutex_unlock(&threads_mutex);
    *cur_thread_get() = t;
}

/* Stops vhost async in the calling PMD thread, which must have finished its
 * deferred-work list: releases its DMA device. */
void
vhost_async_pmd_stop(void)
{
    struct vhost_async_thread *t = *cur_thread_get();

    if (!t) {
        return;
    }
    *cur_thread_get() = NULL;
    ovs_mutex_lock(&threads_mutex);
    dpdk_dma_release(&t->chan);
    t->defer = NULL;
    t->busy_cycles = t->rx_pkts = NULL;
    ovs_mutex_unlock(&threads_mutex);
}

/* Returns the DMA device id that the calling thread copies with, or -1 if
 * it copies with the CPU (it has none, or its device is quarantined).
 * Every copy goes to vchannel DPDK_DMA_VCHAN of its device. */
static int16_t
vhost_async_thread_dma(void)
{
    struct vhost_async_thread *t = *cur_thread_get();

    return t && dpdk_dma_chan_usable(&t->chan) ? t->chan.dev_id : -1;
}

/* Returns true if DMA device 'dma' (-1: none) takes copies. */
static bool
vhost_async_dma_usable(int16_t dma)
{
    struct dpdk_dma_chan chan = { .dev_id = dma, .vchan = DPDK_DMA_VCHAN };

    return dpdk_dma_chan_usable(&chan);
}

/* The calling thread's deferred-work list, or NULL. */
static struct dp_defer *
vhost_async_thread_defer(void)
{
    struct vhost_async_thread *t = *cur_thread_get();

    return t ? t->defer : NULL;
}

/* Counts 'n' for 'stat' in the counters of the calling thread and, unless it
 * is NULL, of 'vring_counters'. */
static void
vhost_async_count(struct vhost_async_counters *vring_counters,
                  enum vhost_async_stat stat, uint64_t n)
{
    struct vhost_async_thread *t = *cur_thread_get();

    if (vring_counters) {
        vhost_async_counters_add(vring_counters, stat, n, false);
    }
    if (t) {
        vhost_async_counters_add(&t->counters, stat, n, true);
    } else {
        vhost_async_counters_add(&other_threads, stat, n, false);
    }
}

/* Records that the calling thread spent 'cycles' in a vhost call that
 * copied packets by DMA if 'by_dma', otherwise by the CPU.  The caller
 * times one call in VHOST_ASYNC_TIME_EVERY: it counts for them all. */
static void
vhost_async_record_copy(bool by_dma, uint64_t cycles)
{
    vhost_async_count(NULL,
                      by_dma ? VHOST_ASYNC_CYC_SUBMIT : VHOST_ASYNC_CYC_CPU,
                      cycles * VHOST_ASYNC_TIME_EVERY);
}

/* Returns the cycles per packet of 'cost', or UINT64_MAX if nothing was
 * measured yet. */
static uint64_t
vhost_async_cost_get(const struct vhost_async_cost *cost)
{
    uint64_t median;

    atomic_read_relaxed(CONST_CAST(atomic_uint64_t *, &cost->median),
                        &median);
    return median ? median : UINT64_MAX;
}

/* The adaptive policy: returns true if the calling thread should copy by
 * DMA now.
 *
 * What a copy costs the thread is not only the time of the vhost calls
 * that make it: a DMA engine that falls behind, or that takes CPU time
 * from the guest (dma_skeleton), makes bursts smaller and every packet
 * dearer.  So the thread measures whole epochs of VHOST_ASYNC_EPOCH_PKTS
 * received packets by its own busy cycles per packet (those of
 * "pmd-stats-show"), leaving out the first VHOST_ASYNC_SETTLE_PKTS after a
 * change of mode, and lets vhost-async-policy.h decide from those. */
static bool
vhost_async_adaptive_dma(void)
{
    struct vhost_async_thread *t = *cur_thread_get();
    uint64_t cycles, pkts, cost, median;
    bool was_dma;

    if (!t || !t->busy_cycles) {
        return false;
    }
    atomic_read_relaxed(CONST_CAST(atomic_uint64_t *, t->rx_pkts), &pkts);
    if (OVS_LIKELY(pkts - t->epoch_pkts
                   < (t->settling ? VHOST_ASYNC_SETTLE_PKTS
                                  : VHOST_ASYNC_EPOCH_PKTS))) {
        return t->epoch_dma;
    }
    atomic_read_relaxed(CONST_CAST(atomic_uint64_t *, t->busy_cycles),
                        &cycles);
    if (t->settling || !t->epoch_pkts) {
        /* Settled (or just started): the measured part of the epoch
         * starts. */
        if (!t->epoch_pkts) {
            vhost_async_policy_init(&t->policy);
        }
        t->settling = false;
        t->epoch_cycles = cycles;
        t->epoch_pkts = pkts;
        return t->epoch_dma;
    }

    /* The epoch is over. */
    was_dma = t->epoch_dma;
    cost = MAX((cycles - t->epoch_cycles) / (pkts - t->epoch_pkts), 1);
    median = vhost_async_median(t->mode_cost[was_dma].recent,
                                VHOST_ASYNC_COST_EPOCHS,
                                &t->mode_cost[was_dma].n, cost);
    atomic_store_relaxed(&t->mode_cost[was_dma].median, median);

    t->epoch_dma = vhost_async_policy_epoch(&t->policy, was_dma, cost);
    atomic_store_relaxed(&t->n_epochs, t->policy.n_epochs);
    atomic_store_relaxed(&t->ratio, t->policy.ratio);
    t->settling = t->epoch_dma != was_dma;
    t->epoch_cycles = cycles;
    t->epoch_pkts = pkts;
    return t->epoch_dma;
}

/* Appends to 'reply' the copy policy that thread record 't' (NULL: a
 * thread without one) follows and, for the adaptive policy, what it
 * measured. */
static void
vhost_async_format_policy(struct ds *reply,
                          const struct vhost_async_thread *t)
{
    enum vhost_async_copy_policy policy = vhost_async_policy();
    uint32_t min_size = vhost_async_min_size();

    ds_put_format(reply, "  vhost async copy policy: %s",
                  policy_names[policy]);
    if (policy == VHOST_ASYNC_POLICY_DMA) {
        if (min_size) {
            ds_put_format(reply, ", by DMA from %"PRIu32" bytes", min_size);
        } else {
            ds_put_cstr(reply, ", every frame by DMA");
        }
    } else if (policy == VHOST_ASYNC_POLICY_ADAPTIVE) {
        uint64_t n_epochs = 0, ratio = 0;

        if (t) {
            atomic_read_relaxed(CONST_CAST(atomic_uint64_t *, &t->n_epochs),
                                &n_epochs);
            atomic_read_relaxed(CONST_CAST(atomic_uint64_t *, &t->ratio),
                                &ratio);
        }
        ds_put_format(reply, ", now by %s, %"PRIu64" epochs",
                      t && t->epoch_dma ? "DMA" : "CPU", n_epochs);
        for (int mode = 0; mode < 2; mode++) {
            uint64_t cost = t ? vhost_async_cost_get(&t->mode_cost[mode])
                              : UINT64_MAX;

            ds_put_format(reply, ", by %s: ", mode ? "DMA" : "CPU");
            if (cost == UINT64_MAX) {
                ds_put_cstr(reply, "-");
            } else {
                ds_put_format(reply, "%"PRIu64, cost);
            }
        }
        ds_put_cstr(reply, " cycles per packet");
        if (ratio) {
            ds_put_format(reply, ", DMA/CPU %"PRIu64".%02"PRIu64,
                          ratio / 1000, ratio % 1000 / 10);
        }
    }
    ds_put_char(reply, '\n');
}

/* Appends to 'reply' the vhost async lines of "dpif-netdev/pmd-stats-show"
 * for the thread on 'core_id' (any other core id: the main thread), whose
 * deferred-work list is 'defer'.  Nothing when vhost async is off, so that
 * the output stays that of stock OVS. */
void
vhost_async_pmd_stats_format(struct ds *reply, unsigned int core_id,
                             const struct dp_defer *defer)
{
    const struct vhost_async_counters *c;
    const struct vhost_async_thread *t;

    if (!vhost_async_enabled) {
        return;
    }
    ovs_mutex_lock(&threads_mutex);
    t = vhost_async_thread_find(core_id);
    c = t ? &t->counters : &other_threads;
    ds_put_cstr(reply, "  vhost async DMA device: ");
    if (t && t->chan.dev_id >= 0) {
        dpdk_dma_format_chan(reply, &t->chan);
        if (!dpdk_dma_chan_usable(&t->chan)) {
            ds_put_cstr(reply, ", quarantined: CPU copy");
        }
        ds_put_char(reply, '\n');
    } else {
        ds_put_cstr(reply, "none, CPU copy\n");
    }
    ds_put_format(reply, "  vhost async tx packets: %"PRIu64" by DMA, "
                  "%"PRIu64" by CPU copy\n",
                  vhost_async_counter_get(c, VHOST_ASYNC_TX_DMA),
                  vhost_async_counter_get(c, VHOST_ASYNC_TX_CPU));
    ds_put_format(reply, "  vhost async rx packets: %"PRIu64" by DMA, "
                  "%"PRIu64" by CPU copy\n",
                  vhost_async_counter_get(c, VHOST_ASYNC_RX_DMA),
                  vhost_async_counter_get(c, VHOST_ASYNC_RX_CPU));
    vhost_async_format_policy(reply, t);

    uint64_t defer_stats[DP_DEFER_N_STATS];

    dp_defer_stats_read(defer, defer_stats);
    ds_put_format(reply, "  vhost async cycles: %"PRIu64" submitting, "
                  "%"PRIu64" polling completions, %"PRIu64" copying by "
                  "CPU\n", vhost_async_counter_get(c, VHOST_ASYNC_CYC_SUBMIT),
                  defer_stats[DP_DEFER_STAT_CYCLES],
                  vhost_async_counter_get(c, VHOST_ASYNC_CYC_CPU));
    ovs_mutex_unlock(&threads_mutex);
    dp_defer_format_stats(reply, defer);
}

/* Starts the counters of the thread on 'core_id', and of its deferred-work
 * list 'defer', from zero, for "dpif-netdev/pmd-stats-clear". */
void
vhost_async_pmd_stats_clear(unsigned int core_id, struct dp_defer *defer)
{
    struct vhost_async_thread *t;

    ovs_mutex_lock(&threads_mutex);
    t = vhost_async_thread_find(core_id);
    vhost_async_counters_clear(t ? &t->counters : &other_threads);
    ovs_mutex_unlock(&threads_mutex);
    dp_defer_stats_clear(defer);
}

/* Stores in 'totals' the counters of every thread together. */
static void
vhost_async_totals(uint64_t totals[VHOST_ASYNC_N_STATS])
{
    const struct vhost_async_thread *t;

    ovs_mutex_lock(&threads_mutex);
    for (int i = 0; i < VHOST_ASYNC_N_STATS; i++) {
        totals[i] = vhost_async_counter_get(&other_threads, i)
                    + other_threads.zero[i];
        LIST_FOR_EACH (t, node, &threads) {
            totals[i] += vhost_async_counter_get(&t->counters, i)
                         + t->counters.zero[i];
        }
    }
    ovs_mutex_unlock(&threads_mutex);
}

static void
vhost_async_dma_show(struct unixctl_conn *conn, int argc OVS_UNUSED,
                     const char *argv[] OVS_UNUSED, void *aux OVS_UNUSED)
{
    struct ds s = DS_EMPTY_INITIALIZER;

    ds_put_format(&s, "vhost async: %s\n",
                  vhost_async_enabled ? "enabled" : "disabled");
    ds_put_format(&s, "vhost async min size: %"PRIu32" bytes\n",
                  vhost_async_min_size());
    if (vhost_async_enabled) {
        uint64_t n[VHOST_ASYNC_N_STATS];

        vhost_async_totals(n);
        ds_put_format(&s, "vhost async teardowns: %"PRIu64" copies finished, "
                      "%"PRIu64" left in flight\n",
                      n[VHOST_ASYNC_TEARDOWN_FINISHED],
                      n[VHOST_ASYNC_TEARDOWN_STUCK]);
    }
    dpdk_dma_format_devices(&s);
    unixctl_command_reply(conn, ds_cstr(&s));
    ds_destroy(&s);
}

static void
vhost_async_register_commands(void)
{
    unixctl_command_register("netdev-dpdk/dma-show", "", 0, 0,
                             vhost_async_dma_show, NULL);
}

/*
 * Devices.
 */

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
        rte_spinlock_t poll_lock;   /* Taken (trylock) around every DPDK call
                                     * that harvests completed copies:
                                     * vhost_async_poll_lock(). */
    );
    /* Tx: VHOST_ASYNC_TX_DMA counts the copies completed, in submission
     * order. */
    struct vhost_async_counters counters;
};

struct vhost_async_dev {
    int vid;
    uint32_t generation;        /* Tells this device from earlier ones with
                                 * the same 'vid'. */
    char *ifname;
    int n_vrings;
    bool msg_locks_vrings;      /* DPDK holds the vring locks while it
                                 * handles the current message.  Only
                                 * DPDK's vhost thread uses it. */
    bool in_mem_table;          /* DPDK is handling SET_MEM_TABLE.  Only
                                 * DPDK's vhost thread uses it. */
    struct vhost_async_vring vrings[VHOST_ASYNC_MAX_VRINGS];
};

BUILD_ASSERT_DECL(RTE_DMADEV_DEFAULT_MAX <= 64);

/* The state of each vhost device id, and the port key of its deferred
 * work: a slot lives as long as the process, whatever device it holds, so
 * the deferred-work list may keep a pointer to it for as long as it
 * likes.  An entry also carries the generation of the device it was
 * registered for (see vhost_async_defer_key()). */
struct vhost_async_slot {
    ATOMIC(struct vhost_async_dev *) dev;
};
static struct vhost_async_slot slots[RTE_MAX_VHOST_DEVICE];

/* Deferred-work entries are keyed by (slot, vring and generation): the
 * vring in the low VHOST_ASYNC_KEY_VRING_BITS of the entry's queue id, the
 * device's generation above them. */
#define VHOST_ASYNC_KEY_VRING_BITS 8
#define VHOST_ASYNC_GENERATION_MASK (INT_MAX >> VHOST_ASYNC_KEY_VRING_BITS)
BUILD_ASSERT_DECL(VHOST_ASYNC_MAX_VRINGS
                  <= 1 << VHOST_ASYNC_KEY_VRING_BITS);
static atomic_uint32_t next_generation;

static int
vhost_async_defer_key(const struct vhost_async_dev *dev, uint16_t vring)
{
    return (int) (dev->generation << VHOST_ASYNC_KEY_VRING_BITS) | vring;
}

static struct vhost_async_dev *
vhost_async_dev_get(int vid)
{
    struct vhost_async_dev *dev;

    if (OVS_UNLIKELY(vid < 0 || vid >= RTE_MAX_VHOST_DEVICE)) {
        return NULL;
    }
    atomic_read_explicit(&slots[vid].dev, &dev, memory_order_acquire);
    return dev;
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
    return vhost_async_enabled ? RTE_VHOST_USER_ASYNC_COPY : 0;
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
    return vhost_async_enabled
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

static void
vhost_async_dev_free(struct vhost_async_dev *dev)
{
    free(dev->ifname);
    free_cacheline(dev);
}

/* Registers an async channel for every vring of new vhost device 'vid'. */
void
vhost_async_device_new(int vid, const char *ifname)
{
    struct vhost_async_dev *dev, *old;
    int n_vrings, n_registered = 0;
    bool rx_small;

    if (!vhost_async_enabled
        || vid < 0 || vid >= RTE_MAX_VHOST_DEVICE) {
        return;
    }

    n_vrings = rte_vhost_get_vring_num(vid);
    if (n_vrings > VHOST_ASYNC_MAX_VRINGS) {
        n_vrings = VHOST_ASYNC_MAX_VRINGS;
    }

    dev = xzalloc_cacheline(sizeof *dev);
    dev->vid = vid;
    atomic_add_relaxed(&next_generation, 1, &dev->generation);
    dev->generation &= VHOST_ASYNC_GENERATION_MASK;
    dev->ifname = xstrdup(ifname);
    dev->n_vrings = n_vrings;
    /* Receive queues start with CPU copies if small packets take them, or
     * the copy policy measures: the first burst received tells. */
    rx_small = vhost_async_policy() != VHOST_ASYNC_POLICY_DMA
               || vhost_async_min_size() > 0;
    for (int i = 0; i < VHOST_ASYNC_MAX_VRINGS; i++) {
        struct vhost_async_vring *vr = &dev->vrings[i];

        atomic_init(&vr->inflight, 0);
        atomic_init(&vr->dmas, 0);
        atomic_init(&vr->tx_dma, -1);
        vr->rx_dma = -1;
        vr->rx_small = rx_small;
        atomic_init(&vr->tx_submitted, 0);
        atomic_init(&vr->tx_orphans, 0);
        rte_spinlock_init(&vr->poll_lock);
        vhost_async_counters_init(&vr->counters);
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

    atomic_read_explicit(&slots[vid].dev, &old, memory_order_acquire);
    atomic_store_explicit(&slots[vid].dev, dev, memory_order_release);
    if (old) {
        VLOG_WARN("vHost Device '%s': replaced stale vhost async state of "
                  "device %d.", ifname, vid);
        /* Without waiting: DPDK's vhost thread must not wait here for
         * threads that may be waiting for it.  It stays quiescent. */
        bool quiescent = ovsrcu_is_quiescent();

        ovsrcu_postpone(vhost_async_dev_free, old);
        if (quiescent) {
            ovsrcu_quiesce_start();
        }
    }
    VLOG_INFO("vHost Device '%s': vhost async copies on %d of %d queues.",
              ifname, n_registered, n_vrings);
}

/* Serialises the harvest of a vring's completed copies.
 *
 * DPDK 22.11 takes the vring's access lock (a spinlock) with a trylock in
 * rte_vhost_poll_enqueue_completed(), rte_vhost_clear_queue() and
 * rte_vhost_async_try_dequeue_burst(), so at most one thread harvests a
 * vring at a time.  DPDK 23.07 made the lock a rwlock and those three take
 * it for reading only (24.11: lib/vhost/virtio_net.c lines 2373, 2481 and
 * 4252; only the submit, line 2532, writes): two threads can then harvest
 * the same completions, free the same mbufs twice and corrupt the vring's
 * count of copies in flight, after which unregistering the channel frees
 * the completion flags that a DMA device still writes.  Threads of ours do
 * poll one vring together: PMD threads that share a Tx queue, the thread
 * that sends and the one whose deferred work polls, DPDK's vhost thread
 * draining a vring that goes away.  So each of those calls is made under
 * 'poll_lock', taken with a trylock like DPDK 22.11's own: a thread that
 * finds it taken harvests nothing this time, as it would if DPDK's lock
 * were busy, and the thread holding it does the work.  DPDK's lock is
 * only ever tried under it, so the two cannot deadlock. */
static bool
vhost_async_poll_lock(struct vhost_async_vring *vr)
{
    return rte_spinlock_trylock(&vr->poll_lock);
}

static void
vhost_async_poll_unlock(struct vhost_async_vring *vr)
{
    rte_spinlock_unlock(&vr->poll_lock);
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
    static struct vlog_rate_limit drain_rl = VLOG_RATE_LIMIT_INIT(5, 20);
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

            if (!(dmas & (UINT64_C(1) << dma))
                || !vhost_async_poll_lock(vr)) {
                continue;
            }
            n = locked
                ? rte_vhost_clear_queue_thread_unsafe(dev->vid, vring, pkts,
                                                      VHOST_ASYNC_BURST,
                                                      dma, DPDK_DMA_VCHAN)
                : rte_vhost_clear_queue(dev->vid, vring, pkts,
                                        VHOST_ASYNC_BURST, dma,
                                        DPDK_DMA_VCHAN);
            vhost_async_poll_unlock(vr);
            if (n == UINT16_MAX) {
                /* DPDK 22.11 says the vring lock is not held after all.
                 * (DPDK 24.11 panics instead: 'locked' must be right.) */
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
        vhost_async_count(&vr->counters, VHOST_ASYNC_TEARDOWN_FINISHED,
                          cleared);
        if (vring_is_tx(vring)) {
            vhost_async_count(&vr->counters, VHOST_ASYNC_TX_DMA, cleared);
            if (!delivered) {
                vhost_async_count(&vr->counters, VHOST_ASYNC_TX_UNDELIVERED,
                                  cleared);
            }
        } else {
            vhost_async_count(&vr->counters, VHOST_ASYNC_RX_DROPPED,
                              cleared);
        }
        /* A guest can make this happen at will: rate-limited. */
        VLOG_INFO_RL(&drain_rl, "vHost Device '%s': completed %"PRIu64
                     " in-flight %s copies of queue %d%s.", dev->ifname,
                     cleared, vring_is_tx(vring) ? "Tx" : "Rx", vring,
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
        vhost_async_count(&vr->counters, VHOST_ASYNC_TEARDOWN_STUCK,
                          inflight);
        for (int16_t dma = 0; dma < 64; dma++) {
            if (dmas & (UINT64_C(1) << dma)) {
                dpdk_dma_quarantine(dma, "copies stuck at a vring teardown");
            }
        }
        VLOG_WARN_RL(&drain_rl, "vHost Device '%s': %d copies of queue %d "
                     "still in flight after %d ms: DMA device stuck?",
                     dev->ifname, inflight, vring, VHOST_ASYNC_TEARDOWN_MS);
    }
    return inflight;
}

/* Completes what is in flight on every vring of vhost device 'vid' and
 * unregisters its async channels.  The caller has made sure that no PMD
 * thread sends to or receives from 'vid' anymore.  With 'in_use', PMD
 * threads may still have its copies in their deferred-work lists (the
 * device belongs to a port): this waits for them to quiesce, which only
 * DPDK's vhost thread may do, as netdev-dpdk's destroy_device() does in
 * that case.  Otherwise (the port was deleted, and its PMD threads
 * finished their lists when they reloaded) it does not wait. */
void
vhost_async_device_destroy(int vid, const char *ifname, bool in_use)
{
    struct vhost_async_dev *dev = vhost_async_dev_get(vid);

    if (!dev) {
        return;
    }
    /* Deferred-work entries find the slot empty from here on. */
    atomic_store_explicit(&slots[vid].dev, NULL, memory_order_release);
    if (in_use) {
        ovsrcu_synchronize();
        /* DPDK's vhost thread stays quiescent. */
        ovsrcu_quiesce_start();
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
    vhost_async_dev_free(dev);
}

/* Completes the copies in flight on 'vring' of vhost device 'vid' from a
 * DPDK callback, which holds the device's vring locks for most messages
 * (vhost_async_msg_locks_vrings()).  'delivered': the vring is still
 * enabled, so DPDK writes completed copies to the guest. */
static void
vhost_async_vring_drain_in_callback(int vid, uint32_t vring, bool delivered)
{
    struct vhost_async_dev *dev = vhost_async_dev_get(vid);

    if (dev && vring < dev->n_vrings && dev->vrings[vring].registered
        && vring_inflight(&dev->vrings[vring])) {
        vhost_async_vring_drain(dev, vring, dev->msg_locks_vrings, delivered,
                                time_msec() + VHOST_ASYNC_TEARDOWN_MS);
    }
}

/* The start of a vhost-user message: the header and request numbers are
 * the vhost-user protocol's (QEMU's docs/interop/vhost-user.rst), and
 * DPDK hands vhost_async_pre_msg() its 'struct vhu_msg_context', which
 * starts with the message (lib/vhost/vhost_user.h, private to DPDK).  That
 * layout was checked against the DPDK lines below: check it again before
 * allowing another. */
#if RTE_VERSION < RTE_VERSION_NUM(22, 11, 0, 0) \
    || RTE_VERSION >= RTE_VERSION_NUM(24, 12, 0, 0)
#error "Check struct vhost_async_user_msg against lib/vhost/vhost_user.h"
#endif
struct vhost_async_user_msg {
    uint32_t request;
    uint32_t flags;
    uint32_t size;              /* Of the payload that follows. */
    uint32_t index;             /* SET_VRING_ENABLE: vring. */
    uint32_t num;               /* SET_VRING_ENABLE: 0 to disable. */
};
#define VHOST_ASYNC_USER_SET_MEM_TABLE 5
#define VHOST_ASYNC_USER_SET_VRING_ENABLE 18
#define VHOST_ASYNC_USER_VRING_STATE_SIZE 8     /* struct vhost_vring_state */

/* Returns true if DPDK holds every vring lock of the device while it
 * handles vhost-user message 'request', and so while it calls
 * vring_state_changed() after handling it.  The list is DPDK's, the same in
 * 22.11 (lib/vhost/vhost_user.c, vhost_user_msg_handler(), lines
 * 3048-3069) and 24.11 (the handlers declared with lock_all_qps, lines
 * 71-94); GET_VRING_BASE and RESET_OWNER are left out on purpose there.
 * DPDK 24.11 panics when a *_thread_unsafe() call is made without the
 * lock, so this must be exact. */
static bool
vhost_async_msg_locks_vrings(uint32_t request)
{
    switch (request) {
    case 2:     /* SET_FEATURES */
    case 3:     /* SET_OWNER */
    case 5:     /* SET_MEM_TABLE */
    case 6:     /* SET_LOG_BASE */
    case 7:     /* SET_LOG_FD */
    case 8:     /* SET_VRING_NUM */
    case 9:     /* SET_VRING_ADDR */
    case 10:    /* SET_VRING_BASE */
    case 12:    /* SET_VRING_KICK */
    case 13:    /* SET_VRING_CALL */
    case 14:    /* SET_VRING_ERR */
    case 16:    /* SET_PROTOCOL_FEATURES */
    case 18:    /* SET_VRING_ENABLE */
    case 19:    /* SEND_RARP */
    case 20:    /* NET_SET_MTU */
    case 21:    /* SET_BACKEND_REQ_FD */
        return true;
    default:
        return false;
    }
}

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
        dev->msg_locks_vrings = vhost_async_msg_locks_vrings(msg->request);
    }
    if (msg->request == VHOST_ASYNC_USER_SET_VRING_ENABLE && !msg->num) {
        if (msg->size != VHOST_ASYNC_USER_VRING_STATE_SIZE) {
            static struct vlog_rate_limit rl = VLOG_RATE_LIMIT_INIT(1, 5);

            /* DPDK rejects such a message itself. */
            VLOG_WARN_RL(&rl, "vhost device %d: SET_VRING_ENABLE with a %"
                         PRIu32"-byte payload ignored.", vid, msg->size);
        } else {
            vhost_async_vring_drain_in_callback(vid, msg->index, true);
        }
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

/* DPDK calls this after it stopped using a vring (normally drained already
 * by vhost_async_pre_msg()), with the vring locks held unless the message
 * was GET_VRING_BASE, which a guest sends when it stops, and, on a memory
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

    if (!vhost_async_poll_lock(vr)) {
        return 0;
    }
    n = rte_vhost_poll_enqueue_completed(dev->vid, vring, pkts,
                                         VHOST_ASYNC_BURST, dma,
                                         DPDK_DMA_VCHAN);
    vhost_async_poll_unlock(vr);
    if (n) {
        rte_pktmbuf_free_bulk(pkts, n);
        vring_inflight_add(vr, -n);
        vhost_async_count(&vr->counters, VHOST_ASYNC_TX_DMA, n);
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

/* Returns the number of Tx copies of 'vr' ever completed: they complete in
 * submission order. */
static uint64_t
vring_tx_completed(struct vhost_async_vring *vr)
{
    uint64_t completed;

    atomic_read_explicit(&vr->counters.n[VHOST_ASYNC_TX_DMA], &completed,
                         memory_order_acquire);
    return completed;
}

/* Returns true if the copies of Tx vring 'vr' have completed as far as a
 * deferred entry whose latest cookie is 'cookie' waits for: copies
 * complete in submission order (vring_tx_completed()).  Copies that a
 * thread without a list (the main thread) queues behind ours are waited
 * for too: it raises 'tx_orphans' before it submits them, so the completed
 * count is read first, with acquire: once it counts one of those copies,
 * 'tx_orphans' counts them all. */
static bool
vhost_async_defer_done(struct vhost_async_vring *vr, uint64_t cookie)
{
    uint64_t completed = vring_tx_completed(vr);
    uint64_t submitted, orphans;

    atomic_read_relaxed(&vr->tx_orphans, &orphans);
    atomic_read_relaxed(&vr->tx_submitted, &submitted);
    /* A cookie beyond what was submitted is from an earlier connection
     * (entries are keyed by device generation: only a defensive check). */
    if (cookie > submitted) {
        cookie = 0;
    }
    return completed >= MAX(cookie, orphans);
}

/* The deferred-work poll function.  'slot' is the vhost device id's slot
 * and 'key' the vring and the generation of the device that the work was
 * registered for (vhost_async_defer_key()): a device that was destroyed,
 * or replaced by another, is never touched.  'cookie' is the vring's
 * 'tx_submitted' after this thread's latest submission: copies complete in
 * submission order, so this thread's are done once that many have
 * completed, whatever other threads sharing the vring (XPS) have submitted
 * since.  Waiting for the whole vring instead kept a reloading thread
 * spinning while another one kept the vring busy. */
static enum dp_defer_status
vhost_async_defer_poll(void *slot_, int key, uint64_t cookie,
                       unsigned int *n_completed)
{
    struct vhost_async_slot *slot = slot_;
    uint16_t vring = key & ((1 << VHOST_ASYNC_KEY_VRING_BITS) - 1);
    struct vhost_async_vring *vr;
    struct vhost_async_dev *dev;
    unsigned int n;
    int16_t dma;

    *n_completed = 0;
    atomic_read_explicit(&slot->dev, &dev, memory_order_acquire);
    if (!dev || vhost_async_defer_key(dev, vring) != key
        || vring >= dev->n_vrings) {
        return DP_DEFER_DONE;
    }
    vr = &dev->vrings[vring];
    if (vhost_async_defer_done(vr, cookie)) {
        /* Another thread collected them. */
        return DP_DEFER_DONE;
    }

    dma = vhost_async_thread_dma();
    n = dma >= 0 ? vhost_async_tx_complete(dev, vring, dma) : 0;
    if (!n) {
        /* Copies complete in order within a vring: ours may wait behind
         * those of a thread that shares it, on its device. */
        n = vhost_async_tx_complete_others(dev, vring, dma);
    }
    *n_completed = n;
    if (vhost_async_defer_done(vr, cookie)) {
        return DP_DEFER_DONE;
    }
    /* A thread that sends to this vring from several rx queues may have
     * more than a batch to collect. */
    return n >= VHOST_ASYNC_BURST ? DP_DEFER_MORE : DP_DEFER_PENDING;
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

/* Counts a send of the calling thread; returns true if it is one to time.
 * Only PMD threads time their sends. */
static bool
vhost_async_send_timed(void)
{
    struct vhost_async_thread *t = *cur_thread_get();

    return t && vhost_async_timed(&t->n_sends);
}

/* Returns true if the copy policy wants the 'cnt' packets in 'pkts' copied
 * by the CPU (which happens only where nothing is in flight). */
static bool
vhost_async_policy_cpu(struct rte_mbuf **pkts, int cnt)
{
    switch (vhost_async_policy()) {
    case VHOST_ASYNC_POLICY_CPU:
        return true;
    case VHOST_ASYNC_POLICY_DMA:
        return vhost_async_all_small(pkts, cnt, vhost_async_min_size());
    case VHOST_ASYNC_POLICY_ADAPTIVE:
    default:
        return !vhost_async_adaptive_dma();
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
    bool timed = vhost_async_send_timed();
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
        vhost_async_record_copy(false, rte_rdtsc() - start);
    }

    rte_pktmbuf_free_bulk(pkts, cnt);
    vhost_async_count(&vr->counters, VHOST_ASYNC_TX_CPU, sent);
    if (sent < cnt) {
        vhost_async_count(&vr->counters, VHOST_ASYNC_TX_DROPPED, cnt - sent);
    }
    return cnt - sent;
}

/* Sends 'cnt' packets to 'vring' of vhost device 'vid', which must be
 * active (vhost_async_vring_active()), retrying up to 'max_retries' times
 * while the vring or the DMA ring is full.  The caller holds the Tx queue
 * lock of 'vring'.
 *
 * Takes ownership of 'pkts': packets whose copy was submitted are freed
 * when it completes, the others right away.  Returns the number of packets
 * dropped; stores the number of retries in '*retries'. */
int
vhost_async_send(int vid, uint16_t vring, struct rte_mbuf **pkts, int cnt,
                 int max_retries, int *retries)
{
    struct vhost_async_dev *dev = vhost_async_dev_get(vid);
    struct dp_defer *defer = vhost_async_thread_defer();
    int16_t dma = vhost_async_thread_dma();
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
        if (OVS_UNLIKELY(!vhost_async_dma_usable(dma))) {
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
            vhost_async_count(&vr->counters, VHOST_ASYNC_TX_DROPPED, cnt);
            return cnt;
        }
        COVERAGE_INC(vhost_async_tx_shared_dma);
        if (!defer) {
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
    bool timed = vhost_async_send_timed();
    uint64_t start = timed ? rte_rdtsc() : 0;

    for (;;) {
        int n;

        n = rte_vhost_submit_enqueue_burst(vid, vring, pkts + sent,
                                           cnt - sent, dma, DPDK_DMA_VCHAN);
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
        vhost_async_record_copy(true, rte_rdtsc() - start);
    }

    uint64_t submitted;

    atomic_read_relaxed(&vr->tx_submitted, &submitted);
    submitted += sent;
    atomic_store_relaxed(&vr->tx_submitted, submitted);
    if (orphans && sent < cnt) {
        atomic_store_relaxed(&vr->tx_orphans, submitted);
    }
    if (sent && !(defer && dp_defer_add(defer, vhost_async_defer_poll,
                                        &slots[vid],
                                        vhost_async_defer_key(dev, vring),
                                        submitted))) {
        /* No deferred-work list (the non-PMD thread) or no room in it:
         * complete the copies now, as far as they go in a bounded time,
         * with the Tx queue lock held.  What is left has another poller:
         * this vring had copies in flight from a thread with a list,
         * which polls until 'tx_orphans' have completed too, or this
         * thread's list already holds it. */
        COVERAGE_INC(vhost_async_tx_complete_inline);
        if (!orphans) {
            /* A thread with a full list. */
            atomic_store_relaxed(&vr->tx_orphans, submitted);
        }
        long long int deadline = time_usec() + VHOST_ASYNC_INLINE_US;

        while (vring_tx_completed(vr) < submitted
               && time_usec() <= deadline) {
            if (!vhost_async_tx_complete(dev, vring, dma)) {
                vhost_async_tx_complete_others(dev, vring, dma);
            }
        }
    }

    if (sent < cnt) {
        rte_pktmbuf_free_bulk(pkts + sent, cnt - sent);
        vhost_async_count(&vr->counters, VHOST_ASYNC_TX_DROPPED, cnt - sent);
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

    if (!vhost_async_poll_lock(vr)) {
        return 0;
    }
    n = rte_vhost_clear_queue(dev->vid, vring, pkts, count, vr->rx_dma,
                              DPDK_DMA_VCHAN);
    vhost_async_poll_unlock(vr);
    nr_inflight = rte_vhost_async_get_inflight(dev->vid, vring);
    if (nr_inflight >= 0) {
        atomic_store_relaxed(&vr->inflight, nr_inflight);
    } else {
        vring_inflight_add(vr, -n);
    }
    vhost_async_count(&vr->counters, VHOST_ASYNC_RX_DMA, n);
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
    int16_t dma = vhost_async_thread_dma();
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

        if (!vhost_async_poll_lock(vr)) {
            /* Another thread is draining the queue: nothing this time, and
             * no CPU copy either, which would overtake its copies. */
            return 0;
        }
        n = rte_vhost_async_try_dequeue_burst(vid, vring, mp, pkts, count,
                                              &nr_inflight, dma,
                                              DPDK_DMA_VCHAN);
        vhost_async_poll_unlock(vr);
        if (!n && nr_inflight > prev_inflight) {
            struct dp_defer *defer = vhost_async_thread_defer();

            if (defer) {
                dp_defer_note_submitted(defer, nr_inflight - prev_inflight);
            }
        }
        if (timed && (n || nr_inflight > 0)) {
            /* Idle polls are not copies. */
            vhost_async_record_copy(true, rte_rdtsc() - start);
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
            vhost_async_count(&vr->counters, VHOST_ASYNC_RX_DMA, n);
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
            vhost_async_record_copy(false, rte_rdtsc() - start);
        }
        if (n) {
            vhost_async_count(&vr->counters, VHOST_ASYNC_RX_CPU, n);
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
        const struct vhost_async_counters *c = &dev->vrings[i].counters;

        if (vring_is_tx(i)) {
            tx_lost += vhost_async_counter_get(c, VHOST_ASYNC_TX_UNDELIVERED);
        } else {
            rx_lost += vhost_async_counter_get(c, VHOST_ASYNC_RX_DROPPED);
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

    if (!vhost_async_enabled) {
        return;
    }
    for (int i = 0; dev && i < dev->n_vrings; i++) {
        struct vhost_async_vring *vr = &dev->vrings[i];
        const struct vhost_async_counters *c = &vr->counters;

        if (vring_is_tx(i)) {
            /* Copies completed at a teardown but never delivered are
             * drops. */
            uint64_t undelivered
                = vhost_async_counter_get(c, VHOST_ASYNC_TX_UNDELIVERED);

            if (i / 2 >= n_txq) {
                continue;
            }
            values[TX_INFLIGHT] += MAX(vring_inflight(vr), 0);
            values[TX_ASYNC] += vhost_async_counter_get(c, VHOST_ASYNC_TX_DMA)
                                - undelivered;
            values[TX_CPU] += vhost_async_counter_get(c, VHOST_ASYNC_TX_CPU);
            values[TX_DROPPED]
                += vhost_async_counter_get(c, VHOST_ASYNC_TX_DROPPED)
                   + undelivered;
        } else {
            if (i / 2 >= n_rxq) {
                continue;
            }
            values[RX_INFLIGHT] += MAX(vring_inflight(vr), 0);
            values[RX_ASYNC] += vhost_async_counter_get(c, VHOST_ASYNC_RX_DMA);
            values[RX_CPU] += vhost_async_counter_get(c, VHOST_ASYNC_RX_CPU);
            values[RX_DROPPED]
                += vhost_async_counter_get(c, VHOST_ASYNC_RX_DROPPED);
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
