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

/* The rte_dma and vhost async APIs are experimental in DPDK 22.11. */
#ifndef ALLOW_EXPERIMENTAL_API
#define ALLOW_EXPERIMENTAL_API 1
#endif

#include <config.h>
#include "dpdk-dma.h"

#include <string.h>

#include <rte_dmadev.h>
#include <rte_errno.h>
#include <rte_vhost_async.h>

#include "dpdk-dma-guard.h"
#include "openvswitch/dynamic-string.h"
#include "openvswitch/list.h"
#include "openvswitch/vlog.h"
#include "ovs-thread.h"
#include "smap.h"
#include "unixctl.h"
#include "util.h"
#include "vhost-async-policy.h"

VLOG_DEFINE_THIS_MODULE(dpdk_dma);

/* Descriptors per DMA vchannel: other_config:vhost-async-dma-ring-size,
 * by default this many or the device's maximum if lower. */
#define DPDK_DMA_DEFAULT_DESC 4096
#define DPDK_DMA_MAX_RING_SIZE 32768

struct dpdk_dma_dev {
    int16_t id;
    char *name;
    int numa_id;
    bool ready;                 /* Configured, started, known to vhost. */
    int owner;                  /* Core id of the owning PMD, or -1. */
};

static struct ovs_mutex dma_mutex = OVS_MUTEX_INITIALIZER;
static struct dpdk_dma_dev *dma_devs OVS_GUARDED_BY(dma_mutex);
static size_t n_dma_devs OVS_GUARDED_BY(dma_mutex);
static bool vhost_async_enabled;
static unsigned int dma_ring_size;     /* 0: the default. */
/* The fewest descriptors of a ready DMA device (0: none is ready).  Written
 * once at start-up, before any vhost device exists. */
static atomic_uint16_t min_ring_size;

/* other_config:vhost-async-min-size: frames shorter than this are copied by
 * the CPU when that keeps their queue's order (0: every frame by DMA). */
#define DPDK_DMA_DEFAULT_MIN_SIZE 256
#define DPDK_DMA_MAX_MIN_SIZE 65535
static atomic_uint32_t async_min_size = DPDK_DMA_DEFAULT_MIN_SIZE;

/* other_config:vhost-async-copy-policy. */
static atomic_int copy_policy = DPDK_DMA_POLICY_ADAPTIVE;
static const char *const policy_names[] = {
    [DPDK_DMA_POLICY_ADAPTIVE] = "adaptive",
    [DPDK_DMA_POLICY_DMA] = "dma",
    [DPDK_DMA_POLICY_CPU] = "cpu",
};

static atomic_uint64_t teardown_stats[DPDK_DMA_N_TEARDOWN_STATS];

/* The DMA device id of the current thread, or -1 for CPU copies. */
DEFINE_STATIC_PER_THREAD_DATA(int16_t, thread_dma_id, -1);

/* Copy counters of one thread.  Records live as long as the process, so
 * that a PMD thread's figures survive reloads. */
/* What one copy mode cost a PMD thread, for "pmd-stats-show": the busy
 * cycles per received packet of its latest DPDK_DMA_COST_EPOCHS epochs in
 * that mode, and their median.  Only the owning thread writes them. */
#define DPDK_DMA_COST_EPOCHS 5
struct dpdk_dma_cost {
    uint64_t recent[DPDK_DMA_COST_EPOCHS];
    unsigned int n;             /* Epochs recorded, all told. */
    atomic_uint64_t median;     /* 0: nothing measured yet. */
};
BUILD_ASSERT_DECL(DPDK_DMA_COST_EPOCHS <= VHOST_ASYNC_POLICY_PAIRS);

/* After the mode changes, copies in flight drain and bursts change size:
 * the first packets of an epoch in the new mode are not measured. */
#define DPDK_DMA_SETTLE_PKTS (DPDK_DMA_EPOCH_PKTS / 4)

struct dpdk_dma_thread_stats {
    struct ovs_list node;       /* In 'thread_stats_list'. */
    unsigned int core_id;
    atomic_uint64_t n[DPDK_DMA_N_STATS];
    uint64_t base[DPDK_DMA_N_STATS];    /* 'n' at the last clear. */

    /* The adaptive policy (dpdk_dma_adaptive_dma()).  The current epoch
     * started at 'epoch_cycles' and 'epoch_pkts' of the PMD thread's
     * counters and copies by DMA if 'epoch_dma'. */
    struct vhost_async_policy policy;
    struct dpdk_dma_cost mode_cost[2];  /* By CPU ([0]) and by DMA ([1]). */
    bool epoch_dma;
    bool settling;              /* The mode just changed: the first
                                 * DPDK_DMA_SETTLE_PKTS are not measured. */
    uint64_t epoch_cycles;
    uint64_t epoch_pkts;
    atomic_uint64_t ratio;      /* 'policy.ratio', for other threads. */
    atomic_uint64_t n_epochs;
};

static struct ovs_list thread_stats_list OVS_GUARDED_BY(dma_mutex)
    = OVS_LIST_INITIALIZER(&thread_stats_list);

static uint64_t dpdk_dma_cost_get(const struct dpdk_dma_cost *);

/* The calling PMD thread's busy cycles and received packets (see
 * dpdk_dma_thread_set_counters()), NULL in other threads. */
DEFINE_STATIC_PER_THREAD_DATA(const atomic_uint64_t *, thread_busy_cycles,
                              NULL);
DEFINE_STATIC_PER_THREAD_DATA(const atomic_uint64_t *, thread_rx_pkts, NULL);

/* The record of the non-PMD thread (and of any thread that has none). */
static struct dpdk_dma_thread_stats non_pmd_stats;

DEFINE_STATIC_PER_THREAD_DATA(struct dpdk_dma_thread_stats *, thread_stats,
                              NULL);

static struct dpdk_dma_thread_stats *
dpdk_dma_find_stats(unsigned int core_id)
    OVS_REQUIRES(dma_mutex)
{
    struct dpdk_dma_thread_stats *ts;

    LIST_FOR_EACH (ts, node, &thread_stats_list) {
        if (ts->core_id == core_id) {
            return ts;
        }
    }
    return NULL;
}

static struct dpdk_dma_thread_stats *
dpdk_dma_get_stats(unsigned int core_id)
    OVS_REQUIRES(dma_mutex)
{
    struct dpdk_dma_thread_stats *ts = dpdk_dma_find_stats(core_id);

    if (!ts) {
        ts = xzalloc(sizeof *ts);
        ts->core_id = core_id;
        ovs_list_push_back(&thread_stats_list, &ts->node);
    }
    return ts;
}

void
dpdk_dma_count_teardown(enum dpdk_dma_teardown_stat stat, uint64_t n)
{
    uint64_t orig;

    atomic_add_relaxed(&teardown_stats[stat], n, &orig);
}

/* Adds 'n' to the calling thread's counter 'stat'. */
void
dpdk_dma_count(enum dpdk_dma_stat stat, uint64_t n)
{
    struct dpdk_dma_thread_stats *ts = *thread_stats_get();
    uint64_t cur;

    if (!ts) {
        ts = &non_pmd_stats;
    }
    /* One writer per record: no atomic read-modify-write needed. */
    atomic_read_relaxed(&ts->n[stat], &cur);
    atomic_store_relaxed(&ts->n[stat], cur + n);
}

static bool
dpdk_dma_setup(int16_t id, const struct rte_dma_info *info)
{
    struct rte_dma_vchan_conf vchan_conf = {
        .direction = RTE_DMA_DIR_MEM_TO_MEM,
        .nb_desc = (dma_ring_size ? dma_ring_size
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
        err = rte_dma_vchan_setup(id, 0, &vchan_conf);
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
    if (rte_vhost_async_dma_configure(id, 0)) {
        VLOG_WARN("DMA device %s (id %d): vhost refused it; not used",
                  info->dev_name, id);
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

/* Returns the number of descriptors of the smallest DMA ring in use for
 * vhost async, or 0 if no DMA device is. */
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

static void
dpdk_dma_show(struct unixctl_conn *conn, int argc OVS_UNUSED,
              const char *argv[] OVS_UNUSED, void *aux OVS_UNUSED)
{
    struct ds s = DS_EMPTY_INITIALIZER;

    ovs_mutex_lock(&dma_mutex);
    ds_put_format(&s, "vhost async: %s\n",
                  vhost_async_enabled ? "enabled" : "disabled");
    ds_put_format(&s, "vhost async min size: %"PRIu32" bytes\n",
                  dpdk_dma_async_min_size());
    if (vhost_async_enabled) {
        uint64_t n[DPDK_DMA_N_TEARDOWN_STATS];

        for (int i = 0; i < DPDK_DMA_N_TEARDOWN_STATS; i++) {
            atomic_read_relaxed(&teardown_stats[i], &n[i]);
        }
        ds_put_format(&s, "vhost async teardowns: %"PRIu64" copies finished, "
                      "%"PRIu64" left in flight\n",
                      n[DPDK_DMA_TEARDOWN_FINISHED],
                      n[DPDK_DMA_TEARDOWN_STUCK]);
    }
    ds_put_format(&s, "DMA devices: %"PRIuSIZE"\n", n_dma_devs);
    for (size_t i = 0; i < n_dma_devs; i++) {
        const struct dpdk_dma_dev *dev = &dma_devs[i];
        struct rte_dma_stats stats;
        struct rte_dma_info info;

        ds_put_format(&s, "  %s: id %d, numa %d", dev->name, dev->id,
                      dev->numa_id);
        if (!rte_dma_info_get(dev->id, &info)) {
            ds_put_format(&s, ", descriptors %"PRIu16"-%"PRIu16
                          ", vchans %"PRIu16"/%"PRIu16", ", info.min_desc,
                          info.max_desc, info.nb_vchans, info.max_vchans);
            dpdk_dma_format_capa(&s, info.dev_capa);
        }
        ds_put_char(&s, '\n');
        if (!dev->ready) {
            ds_put_cstr(&s, "    not in use\n");
            continue;
        }
        if (dev->owner >= 0) {
            ds_put_format(&s, "    owner: PMD thread on core %d\n",
                          dev->owner);
        } else {
            ds_put_cstr(&s, "    owner: none\n");
        }
        if (!rte_dma_stats_get(dev->id, 0, &stats)) {
            ds_put_format(&s, "    submitted %"PRIu64", completed %"PRIu64
                          ", errors %"PRIu64"\n", stats.submitted,
                          stats.completed, stats.errors);
        }
        dpdk_dma_guard_format(&s, dev->id);
    }
    ovs_mutex_unlock(&dma_mutex);
    unixctl_command_reply(conn, ds_cstr(&s));
    ds_destroy(&s);
}

/* Reads other_config:vhost-async-support.  Anything but "true" or "false"
 * is warned about and taken as false. */
static bool
dpdk_dma_parse_async(const struct smap *cfg)
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
dpdk_dma_parse_ring_size(const struct smap *cfg)
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

void
dpdk_dma_init(const struct smap *ovs_other_config)
{
    int16_t id;

    vhost_async_enabled = dpdk_dma_parse_async(ovs_other_config);
    dma_ring_size = dpdk_dma_parse_ring_size(ovs_other_config);
    VLOG_INFO("vhost async support %s.",
              vhost_async_enabled ? "enabled" : "disabled");

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
        dev->ready = vhost_async_enabled && dpdk_dma_setup(id, &info);
    }
    VLOG_INFO("%"PRIuSIZE" DMA device%s found", n_dma_devs,
              n_dma_devs == 1 ? "" : "s");
    ovs_mutex_unlock(&dma_mutex);

    unixctl_command_register("netdev-dpdk/dma-show", "", 0, 0,
                             dpdk_dma_show, NULL);
    if (vhost_async_enabled) {
        dpdk_dma_guard_register_injector();
    }
}

/* Appends to 'reply' the copy policy that thread record 'ts' follows and,
 * for the adaptive policy, what it measured. */
static void
dpdk_dma_format_policy(struct ds *reply,
                       const struct dpdk_dma_thread_stats *ts)
{
    enum dpdk_dma_policy policy = dpdk_dma_policy();
    uint32_t min_size = dpdk_dma_async_min_size();

    ds_put_format(reply, "  vhost async copy policy: %s",
                  policy_names[policy]);
    if (policy == DPDK_DMA_POLICY_DMA) {
        if (min_size) {
            ds_put_format(reply, ", by DMA from %"PRIu32" bytes", min_size);
        } else {
            ds_put_cstr(reply, ", every frame by DMA");
        }
    } else if (policy == DPDK_DMA_POLICY_ADAPTIVE) {
        uint64_t cost[2], n_epochs;

        atomic_read_relaxed(CONST_CAST(atomic_uint64_t *, &ts->n_epochs),
                            &n_epochs);
        ds_put_format(reply, ", now by %s, %"PRIu64" epochs",
                      ts->epoch_dma ? "DMA" : "CPU", n_epochs);
        for (int mode = 0; mode < 2; mode++) {
            cost[mode] = dpdk_dma_cost_get(&ts->mode_cost[mode]);
            ds_put_format(reply, ", by %s: ", mode ? "DMA" : "CPU");
            if (cost[mode] == UINT64_MAX) {
                ds_put_cstr(reply, "-");
            } else {
                ds_put_format(reply, "%"PRIu64, cost[mode]);
            }
        }
        ds_put_cstr(reply, " cycles per packet");

        uint64_t ratio;

        atomic_read_relaxed(CONST_CAST(atomic_uint64_t *, &ts->ratio),
                            &ratio);
        if (ratio) {
            ds_put_format(reply, ", DMA/CPU %"PRIu64".%02"PRIu64,
                          ratio / 1000, ratio % 1000 / 10);
        }
    }
    ds_put_char(reply, '\n');
}

/* Appends to 'reply' the line of "dpif-netdev/pmd-stats-show" that names
 * the DMA device of the PMD thread on 'core_id' (any other core id: the
 * main thread).  Nothing when vhost async is off, so that the output stays
 * that of stock OVS. */
void
dpdk_dma_format_pmd(struct ds *reply, unsigned int core_id)
{
    const struct dpdk_dma_dev *owned = NULL;

    if (!vhost_async_enabled) {
        return;
    }
    ovs_mutex_lock(&dma_mutex);
    for (size_t i = 0; i < n_dma_devs; i++) {
        if (dma_devs[i].owner >= 0 && dma_devs[i].owner == core_id) {
            owned = &dma_devs[i];
            break;
        }
    }
    if (owned) {
        ds_put_format(reply, "  vhost async DMA device: %s (id %d)%s\n",
                      owned->name, owned->id,
                      dpdk_dma_guard_quarantined(owned->id)
                      ? ", quarantined: CPU copy" : "");
    } else {
        ds_put_cstr(reply, "  vhost async DMA device: none, CPU copy\n");
    }

    const struct dpdk_dma_thread_stats *ts = dpdk_dma_find_stats(core_id);
    uint64_t n[DPDK_DMA_N_STATS];

    if (!ts) {
        ts = &non_pmd_stats;
    }
    for (int i = 0; i < DPDK_DMA_N_STATS; i++) {
        atomic_read_relaxed(CONST_CAST(atomic_uint64_t *, &ts->n[i]), &n[i]);
        n[i] -= ts->base[i];
    }
    ds_put_format(reply, "  vhost async tx packets: %"PRIu64" by DMA, "
                  "%"PRIu64" by CPU copy\n",
                  n[DPDK_DMA_TX_ASYNC], n[DPDK_DMA_TX_CPU]);
    ds_put_format(reply, "  vhost async rx packets: %"PRIu64" by DMA, "
                  "%"PRIu64" by CPU copy\n",
                  n[DPDK_DMA_RX_ASYNC], n[DPDK_DMA_RX_CPU]);
    dpdk_dma_format_policy(reply, ts);
    ds_put_format(reply, "  vhost async cycles: %"PRIu64" submitting, "
                  "%"PRIu64" polling completions, %"PRIu64" copying by "
                  "CPU\n", n[DPDK_DMA_CYC_SUBMIT], n[DPDK_DMA_CYC_POLL],
                  n[DPDK_DMA_CYC_CPU]);
    ovs_mutex_unlock(&dma_mutex);
}

/* Starts the counters of the thread on 'core_id' from zero, for
 * "dpif-netdev/pmd-stats-clear". */
void
dpdk_dma_clear_pmd(unsigned int core_id)
{
    struct dpdk_dma_thread_stats *ts;

    ovs_mutex_lock(&dma_mutex);
    ts = dpdk_dma_find_stats(core_id);
    if (!ts) {
        ts = &non_pmd_stats;
    }
    for (int i = 0; i < DPDK_DMA_N_STATS; i++) {
        atomic_read_relaxed(&ts->n[i], &ts->base[i]);
    }
    ovs_mutex_unlock(&dma_mutex);
}

bool
dpdk_vhost_async_enabled(void)
{
    return vhost_async_enabled;
}

/* Returns true if 'value' differs from the value '*last' had at the
 * previous call, or if '*first'; remembers 'value' in '*last'. */
static bool
dpdk_dma_config_changed(const char *value, char **last, bool *first)
{
    if (!*first && nullable_string_is_equal(value, *last)) {
        return false;
    }
    *first = false;
    free(*last);
    *last = nullable_xstrdup(value);
    return true;
}

/* Reads other_config:vhost-async-min-size.  A malformed value is warned
 * about once and replaced by the default. */
static void
dpdk_dma_set_min_size(const struct smap *ovs_other_config)
{
    static char *last_value;
    static bool first = true;
    const char *value = smap_get(ovs_other_config, "vhost-async-min-size");
    unsigned int min_size = DPDK_DMA_DEFAULT_MIN_SIZE;

    if (!dpdk_dma_config_changed(value, &last_value, &first)) {
        return;
    }
    if (value && (!str_to_uint(value, 10, &min_size)
                  || min_size > DPDK_DMA_MAX_MIN_SIZE)) {
        VLOG_WARN("Invalid value \"%s\" for other_config:"
                  "vhost-async-min-size (expected bytes, 0 to %d): "
                  "using %d.", value, DPDK_DMA_MAX_MIN_SIZE,
                  DPDK_DMA_DEFAULT_MIN_SIZE);
        min_size = DPDK_DMA_DEFAULT_MIN_SIZE;
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
 * about once and replaced by the default, "adaptive". */
static void
dpdk_dma_set_policy(const struct smap *ovs_other_config)
{
    static char *last_value;
    static bool first = true;
    const char *value = smap_get(ovs_other_config,
                                 "vhost-async-copy-policy");
    int policy = DPDK_DMA_POLICY_ADAPTIVE;

    if (!dpdk_dma_config_changed(value, &last_value, &first)) {
        return;
    }
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
            policy = DPDK_DMA_POLICY_ADAPTIVE;
        }
    }
    atomic_store_relaxed(&copy_policy, policy);
    if (vhost_async_enabled) {
        VLOG_INFO("vhost async copy policy: %s.", policy_names[policy]);
    }
}

/* Reads the vhost async knobs that may change at run time, on every change
 * of the database. */
void
dpdk_dma_set_config(const struct smap *ovs_other_config)
{
    dpdk_dma_set_min_size(ovs_other_config);
    dpdk_dma_set_policy(ovs_other_config);
}

enum dpdk_dma_policy
dpdk_dma_policy(void)
{
    int policy;

    atomic_read_relaxed(&copy_policy, &policy);
    return policy;
}

/* Returns the cycles per packet of 'cost', or UINT64_MAX if nothing was
 * measured yet. */
static uint64_t
dpdk_dma_cost_get(const struct dpdk_dma_cost *cost)
{
    uint64_t median;

    atomic_read_relaxed(CONST_CAST(atomic_uint64_t *, &cost->median),
                        &median);
    return median ? median : UINT64_MAX;
}

/* Tells the calling PMD thread's copy policy where the thread counts its
 * busy cycles and the packets it receives (dpif-netdev's per-PMD
 * counters, which only the thread itself updates). */
void
dpdk_dma_thread_set_counters(const atomic_uint64_t *busy_cycles,
                             const atomic_uint64_t *rx_pkts)
{
    *thread_busy_cycles_get() = busy_cycles;
    *thread_rx_pkts_get() = rx_pkts;
}

/* The adaptive policy: returns true if the calling thread should copy by
 * DMA now.
 *
 * What a copy costs the thread is not only the time of the vhost calls
 * that make it: a DMA engine that falls behind, or that takes CPU time
 * from the guest (dma_skeleton), makes bursts smaller and every packet
 * dearer.  So the thread measures whole epochs of DPDK_DMA_EPOCH_PKTS
 * received packets by its own busy cycles per packet (those of
 * "pmd-stats-show"), leaving out the first DPDK_DMA_SETTLE_PKTS after a
 * change of mode, and lets vhost-async-policy.h decide from those. */
bool
dpdk_dma_adaptive_dma(void)
{
    const atomic_uint64_t *busy_cycles = *thread_busy_cycles_get();
    const atomic_uint64_t *rx_pkts = *thread_rx_pkts_get();
    struct dpdk_dma_thread_stats *ts = *thread_stats_get();
    uint64_t cycles, pkts, cost, median;
    bool was_dma;

    if (!busy_cycles || !ts) {
        return false;
    }
    atomic_read_relaxed(CONST_CAST(atomic_uint64_t *, rx_pkts), &pkts);
    if (OVS_LIKELY(pkts - ts->epoch_pkts
                   < (ts->settling ? DPDK_DMA_SETTLE_PKTS
                                   : DPDK_DMA_EPOCH_PKTS))) {
        return ts->epoch_dma;
    }
    atomic_read_relaxed(CONST_CAST(atomic_uint64_t *, busy_cycles), &cycles);
    if (ts->settling || !ts->epoch_pkts) {
        /* Settled (or just started): the measured part of the epoch
         * starts. */
        if (!ts->epoch_pkts) {
            vhost_async_policy_init(&ts->policy);
        }
        ts->settling = false;
        ts->epoch_cycles = cycles;
        ts->epoch_pkts = pkts;
        return ts->epoch_dma;
    }

    /* The epoch is over. */
    was_dma = ts->epoch_dma;
    cost = MAX((cycles - ts->epoch_cycles) / (pkts - ts->epoch_pkts), 1);
    median = vhost_async_median(ts->mode_cost[was_dma].recent,
                                DPDK_DMA_COST_EPOCHS,
                                &ts->mode_cost[was_dma].n, cost);
    atomic_store_relaxed(&ts->mode_cost[was_dma].median, median);

    ts->epoch_dma = vhost_async_policy_epoch(&ts->policy, was_dma, cost);
    atomic_store_relaxed(&ts->n_epochs, ts->policy.n_epochs);
    atomic_store_relaxed(&ts->ratio, ts->policy.ratio);
    ts->settling = ts->epoch_dma != was_dma;
    ts->epoch_cycles = cycles;
    ts->epoch_pkts = pkts;
    return ts->epoch_dma;
}

/* Records that the calling thread spent 'cycles' in a vhost call that
 * copied packets by DMA if 'by_dma', otherwise by the CPU.  The caller
 * times one call in 'weight': it counts 'weight' times. */
void
dpdk_dma_record_copy(bool by_dma, uint64_t cycles, unsigned int weight)
{
    dpdk_dma_count(by_dma ? DPDK_DMA_CYC_SUBMIT : DPDK_DMA_CYC_CPU,
                   cycles * weight);
}

/* Records that the calling thread spent 'cycles' polling for Tx
 * completions. */
void
dpdk_dma_record_poll(uint64_t cycles)
{
    dpdk_dma_count(DPDK_DMA_CYC_POLL, cycles);
}

/* Frames shorter than this many bytes go by CPU copy where order allows;
 * 0 if every frame goes by DMA. */
uint32_t
dpdk_dma_async_min_size(void)
{
    uint32_t min_size;

    atomic_read_relaxed(&async_min_size, &min_size);
    return min_size;
}


/* Gives the calling PMD thread, which runs on 'core_id' of NUMA node
 * 'numa_id', a free DMA device: one on its NUMA node if there is one, any
 * other otherwise.  Without one, the thread copies with the CPU. */
void
dpdk_dma_thread_claim(unsigned int core_id, int numa_id)
{
    struct dpdk_dma_dev *best = NULL;

    *thread_dma_id_get() = -1;
    if (!vhost_async_enabled) {
        return;
    }

    ovs_mutex_lock(&dma_mutex);
    *thread_stats_get() = dpdk_dma_get_stats(core_id);
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
        *thread_dma_id_get() = best->id;
        VLOG_INFO("PMD thread on core %u (NUMA node %d) claimed DMA device "
                  "%s (id %d).", core_id, numa_id, best->name, best->id);
    } else {
        VLOG_INFO("PMD thread on core %u: no DMA device free, vhost copies "
                  "stay on the CPU.", core_id);
    }
    ovs_mutex_unlock(&dma_mutex);
}

/* Releases the calling thread's DMA device, if any. */
void
dpdk_dma_thread_release(void)
{
    int16_t *id = thread_dma_id_get();

    *thread_stats_get() = NULL;
    if (*id < 0) {
        return;
    }
    ovs_mutex_lock(&dma_mutex);
    for (size_t i = 0; i < n_dma_devs; i++) {
        struct dpdk_dma_dev *dev = &dma_devs[i];

        if (dev->id == *id) {
            VLOG_INFO("PMD thread on core %d released DMA device %s "
                      "(id %d).", dev->owner, dev->name, dev->id);
            dev->owner = -1;
        }
    }
    ovs_mutex_unlock(&dma_mutex);
    *id = -1;
}

/* Returns the calling thread's DMA device id, or -1 if it copies with the
 * CPU (it has none, or its device is quarantined). */
int16_t
dpdk_dma_thread_id(void)
{
    int16_t id = *thread_dma_id_get();

    return id >= 0 && !dpdk_dma_guard_quarantined(id) ? id : -1;
}
