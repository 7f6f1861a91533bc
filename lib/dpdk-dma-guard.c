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
#include "dpdk-dma-guard.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <rte_cycles.h>
#include <rte_dmadev.h>
#include <rte_eal.h>

#include "openvswitch/dynamic-string.h"
#include "openvswitch/vlog.h"
#include "ovs-atomic.h"
#include "unixctl.h"
#include "util.h"

VLOG_DEFINE_THIS_MODULE(dpdk_dma_guard);

/* Test-only faults (dpdk_dma_guard_register_injector()). */
enum guard_inject {
    INJECT_OFF,
    INJECT_ERRORS,      /* Fail every 'every'th copy, or the next 'next_n'. */
    INJECT_STALL,       /* Complete nothing. */
    INJECT_DELAY,       /* Complete a copy 'delay_tsc' after it was queued
                         * at the earliest. */
    INJECT_INSTANT,     /* Report copies complete at once, copying
                         * nothing. */
};

/* A copy that the device has not reported complete yet. */
struct guard_job {
    rte_iova_t src;
    rte_iova_t dst;
    uint32_t len;
    bool fail;                  /* Injected: the device did not copy it. */
    uint64_t tsc;               /* When it was queued. */
};

struct dpdk_dma_guard {
    struct rte_dma_fp_object orig;      /* The driver's functions. */
    int16_t id;
    char *name;
    bool iova_va;               /* The CPU can redo copies. */
    struct guard_job *jobs;     /* Indexed by ring index & 'mask'. */
    uint16_t mask;

    /* Ring indexes as vhost sees them: consecutive, one per copy.  The
     * driver's own indexes are not needed, as it completes in order. */
    uint16_t next_idx;          /* The next copy's. */
    uint16_t next_cpl;          /* The oldest copy not reported complete. */
    uint16_t n_redone;          /* Copies from 'next_cpl' on that the CPU
                                 * did, still to report. */
    uint16_t n_fail;            /* Injected failures not yet reported. */

    /* An injected error, reported as the hardware drivers do: the copies
     * the driver completed from the failed one on are held back until
     * completed_status() is called. */
    uint16_t held;
    bool err_pending;

    uint16_t unsubmitted;       /* Copies queued since the last doorbell
                                 * (see guard_submit()). */
    atomic_uint64_t n_doorbells;    /* Doorbells rung (driver submits). */
    atomic_uint64_t n_rung;         /* Copies they carried. */

    uint64_t progress_tsc;      /* Last completion, or the first copy
                                 * queued on an idle device. */
    unsigned int empty_polls;
    bool stopped;               /* rte_dma_stop() called. */
    bool instant;               /* INJECT_INSTANT in effect (it starts
                                 * and ends only on an idle device). */

    atomic_bool quarantined;
    const char *reason;         /* Set before 'quarantined'. */
    atomic_uint64_t n_errors;   /* Copies the device failed. */
    atomic_uint64_t n_cpu;      /* Copies the CPU did in its place. */
    atomic_uint64_t n_lost;     /* Copies that could not be redone. */

    /* Injection, set by the main thread. */
    atomic_int inject;
    atomic_uint32_t every;
    atomic_uint32_t next_n;
    atomic_uint64_t delay_tsc;
    uint64_t n_copies;          /* Copies seen while injecting errors. */
};

static struct dpdk_dma_guard *guards[RTE_DMADEV_DEFAULT_MAX];

static void
guard_count(atomic_uint64_t *counter)
{
    uint64_t orig;

    atomic_add_relaxed(counter, 1, &orig);
}

static uint64_t
guard_stall_tsc(void)
{
    return rte_get_tsc_hz() / 1000 * DPDK_DMA_GUARD_STALL_MS;
}

static void
guard_quarantine(struct dpdk_dma_guard *g, const char *why)
{
    bool was;

    atomic_read_explicit(&g->quarantined, &was, memory_order_acquire);
    if (was) {
        return;
    }
    g->reason = why;
    atomic_store_explicit(&g->quarantined, true, memory_order_release);
    VLOG_WARN("DMA device %s (id %d) quarantined: %s.  It takes no new "
              "copies; its copies in flight are finished%s, and its PMD "
              "thread copies with the CPU until ovs-vswitchd restarts.",
              g->name, g->id, why,
              g->iova_va ? " (by the CPU where the device failed)" : "");
}

/* Does the copy of 'job' with the CPU, in place of the device, which
 * needs IOVA as VA. */
static void
guard_redo(struct dpdk_dma_guard *g, const struct guard_job *job)
{
    if (job->len) {
        memcpy((void *) (uintptr_t) job->dst,
               (const void *) (uintptr_t) job->src, job->len);
    }
    guard_count(&g->n_cpu);
}

static int
guard_inject_mode(const struct dpdk_dma_guard *g)
{
    int mode;

    atomic_read_relaxed(&CONST_CAST(struct dpdk_dma_guard *, g)->inject,
                        &mode);
    return mode;
}

/* With INJECT_ERRORS: should the next copy fail? */
static bool
guard_inject_fail(struct dpdk_dma_guard *g)
{
    uint32_t every, next_n;

    atomic_read_relaxed(&g->next_n, &next_n);
    if (next_n) {
        atomic_store_relaxed(&g->next_n, next_n - 1);
        return true;
    }
    atomic_read_relaxed(&g->every, &every);
    return every && !(++g->n_copies % every);
}

static int
guard_copy(void *priv, uint16_t vchan, rte_iova_t src, rte_iova_t dst,
           uint32_t len, uint64_t flags)
{
    struct dpdk_dma_guard *g = priv;
    int mode = guard_inject_mode(g);
    struct guard_job *job;
    bool fail = false;
    bool quarantined;

    atomic_read_relaxed(&g->quarantined, &quarantined);
    if (OVS_UNLIKELY(quarantined)) {
        return -ENOSPC;
    }
    if (g->next_idx == g->next_cpl) {
        g->progress_tsc = rte_get_tsc_cycles();
        g->instant = mode == INJECT_INSTANT;
    }
    if (OVS_UNLIKELY(mode == INJECT_ERRORS)) {
        fail = guard_inject_fail(g);
    }
    if (!g->instant) {
        /* An injected failure copies nothing. */
        int ret = g->orig.copy(g->orig.dev_private, vchan, src, dst,
                               fail ? 0 : len, flags);
        if (ret < 0) {
            return ret;
        }
    }
    job = &g->jobs[g->next_idx & g->mask];
    job->src = src;
    job->dst = dst;
    job->len = len;
    job->fail = fail;
    job->tsc = OVS_UNLIKELY(mode == INJECT_DELAY) ? rte_get_tsc_cycles() : 0;
    g->n_fail += fail;
    g->unsubmitted++;
    return g->next_idx++;
}

static int
guard_copy_sg(void *priv OVS_UNUSED, uint16_t vchan OVS_UNUSED,
              const struct rte_dma_sge *src OVS_UNUSED,
              const struct rte_dma_sge *dst OVS_UNUSED,
              uint16_t nb_src OVS_UNUSED, uint16_t nb_dst OVS_UNUSED,
              uint64_t flags OVS_UNUSED)
{
    return -ENOTSUP;
}

static int
guard_fill(void *priv OVS_UNUSED, uint16_t vchan OVS_UNUSED,
           uint64_t pattern OVS_UNUSED, rte_iova_t dst OVS_UNUSED,
           uint32_t length OVS_UNUSED, uint64_t flags OVS_UNUSED)
{
    return -ENOTSUP;
}

/* Rings the device's doorbell for the copies queued since the last one. */
static int
guard_ring(struct dpdk_dma_guard *g, uint16_t vchan)
{
    uint16_t n = g->unsubmitted;
    uint64_t v;

    g->unsubmitted = 0;
    if (g->instant || g->stopped || !n) {
        return 0;
    }
    /* Only this thread writes them (under vhost's lock): no atomic
     * read-modify-write needed. */
    atomic_read_relaxed(&g->n_doorbells, &v);
    atomic_store_relaxed(&g->n_doorbells, v + 1);
    atomic_read_relaxed(&g->n_rung, &v);
    atomic_store_relaxed(&g->n_rung, v + n);
    return g->orig.submit(g->orig.dev_private, vchan);
}

/* vhost submits at the end of every burst, however few copies it queued.
 * A doorbell costs a hardware engine (an MMIO write) and the PMD thread
 * (a store that leaves the CPU) as much for one copy as for many, and DMA
 * engines work best on batches (DSA: 16 descriptors or more per doorbell).
 * So the doorbell waits until DPDK_DMA_GUARD_BATCH copies are queued, or
 * until the device is next polled for completions, whichever is first:
 * every thread that submits polls that device for its completions, in the
 * same PMD iteration when busy, within DP_DEFER_IDLE_RUN_US when idle. */
static int
guard_submit(void *priv, uint16_t vchan)
{
    struct dpdk_dma_guard *g = priv;

    return g->unsubmitted >= DPDK_DMA_GUARD_BATCH ? guard_ring(g, vchan) : 0;
}

static uint16_t
guard_burst_capacity(const void *priv, uint16_t vchan)
{
    struct dpdk_dma_guard *g = CONST_CAST(struct dpdk_dma_guard *, priv);
    bool quarantined;

    atomic_read_relaxed(&g->quarantined, &quarantined);
    if (quarantined) {
        return 0;
    } else if (g->instant) {
        return g->mask + 1 - (uint16_t) (g->next_idx - g->next_cpl);
    }
    return g->orig.burst_capacity(g->orig.dev_private, vchan);
}

/* The driver's completed(), with injected faults.  Reports up to 'nb'
 * copies from 'g->next_cpl' on. */
static uint16_t
drv_completed(struct dpdk_dma_guard *g, uint16_t vchan, uint16_t nb,
              bool *has_error)
{
    int mode = guard_inject_mode(g);
    uint16_t last_idx, n;

    if (mode == INJECT_STALL) {
        return 0;
    }
    if (g->err_pending) {
        *has_error = true;
        return 0;
    }
    if (mode == INJECT_DELAY) {
        uint64_t delay, now = rte_get_tsc_cycles();
        uint16_t ready = 0;

        atomic_read_relaxed(&g->delay_tsc, &delay);
        while (ready < nb
               && now - g->jobs[(g->next_cpl + ready) & g->mask].tsc
                  >= delay) {
            ready++;
        }
        nb = ready;
    }
    if (!nb) {
        return 0;
    }
    n = g->orig.completed(g->orig.dev_private, vchan, nb, &last_idx,
                          has_error);
    if (OVS_UNLIKELY(g->n_fail)) {
        for (uint16_t k = 0; k < n; k++) {
            if (g->jobs[(g->next_cpl + k) & g->mask].fail) {
                g->held = n - k;
                g->err_pending = true;
                *has_error = true;
                return k;
            }
        }
    }
    return n;
}

/* The driver's completed_status() for the copies from ring index 'start'
 * on, with injected faults. */
static uint16_t
drv_completed_status(struct dpdk_dma_guard *g, uint16_t vchan,
                     uint16_t start, uint16_t nb,
                     enum rte_dma_status_code *status)
{
    uint16_t last_idx, n;

    if (!g->err_pending) {
        return g->orig.completed_status(g->orig.dev_private, vchan, nb,
                                        &last_idx, status);
    }
    n = MIN(nb, g->held);
    for (uint16_t k = 0; k < n; k++) {
        struct guard_job *job = &g->jobs[(start + k) & g->mask];

        status[k] = job->fail ? RTE_DMA_STATUS_ERROR_UNKNOWN
                              : RTE_DMA_STATUS_SUCCESSFUL;
        g->n_fail -= job->fail;
        job->fail = false;
    }
    g->held -= n;
    g->err_pending = g->held > 0;
    return n;
}

/* Stops the device, so that it can write nothing more, and counts the
 * copies that then never complete, where the CPU cannot do them. */
static void
guard_stop(struct dpdk_dma_guard *g, uint16_t n_done)
{
    if (!g->stopped) {
        g->stopped = true;
        rte_dma_stop(g->id);
        if (!g->iova_va) {
            uint64_t orig;

            atomic_add_relaxed(&g->n_lost,
                               (uint16_t) (g->next_idx - g->next_cpl)
                               - n_done, &orig);
        }
    }
}

/* The device reported a failed copy after 'n_ok' good ones: takes the
 * status of up to 'room' copies after them and does the failed ones with
 * the CPU.  Returns how many copies after the first 'n_ok' are complete. */
static uint16_t
guard_recover_errors(struct dpdk_dma_guard *g, uint16_t vchan,
                     uint16_t n_ok, uint16_t room)
{
    enum rte_dma_status_code status[64];
    uint16_t start = g->next_cpl + n_ok;
    uint16_t n;

    guard_quarantine(g, "a copy failed");
    n = drv_completed_status(g, vchan, start, MIN(room, ARRAY_SIZE(status)),
                             status);
    for (uint16_t k = 0; k < n; k++) {
        if (status[k] != RTE_DMA_STATUS_SUCCESSFUL) {
            guard_count(&g->n_errors);
            if (!g->iova_va) {
                /* Never report a copy that did not happen. */
                guard_stop(g, n_ok + k);
                return k;
            }
            guard_redo(g, &g->jobs[(start + k) & g->mask]);
        }
    }
    return n;
}

/* The device completed nothing for too long: stops it and does its
 * outstanding copies with the CPU. */
static void
guard_recover_stall(struct dpdk_dma_guard *g)
{
    uint16_t outstanding = g->next_idx - g->next_cpl;

    guard_quarantine(g, "no copy completed for "
                     OVS_STRINGIZE(DPDK_DMA_GUARD_STALL_MS) " ms");
    if (g->stopped) {
        return;
    }
    guard_stop(g, 0);
    if (!g->iova_va) {
        return;
    }
    for (uint16_t k = 0; k < outstanding; k++) {
        guard_redo(g, &g->jobs[(g->next_cpl + k) & g->mask]);
    }
    g->n_redone = outstanding;
}

static uint16_t
guard_report(struct dpdk_dma_guard *g, uint16_t n, uint16_t *last_idx)
{
    g->next_cpl += n;
    *last_idx = g->next_cpl - 1;
    return n;
}

static uint16_t
guard_completed(void *priv, uint16_t vchan, const uint16_t nb_cpls,
                uint16_t *last_idx, bool *has_error)
{
    struct dpdk_dma_guard *g = priv;
    uint16_t outstanding = g->next_idx - g->next_cpl;
    bool err = false;
    uint16_t n;

    *has_error = false;
    if (g->unsubmitted) {
        /* The doorbell that guard_submit() held back. */
        guard_ring(g, vchan);
    }
    if (OVS_UNLIKELY(g->n_redone)) {
        n = MIN(nb_cpls, g->n_redone);
        g->n_redone -= n;
        return guard_report(g, n, last_idx);
    }
    if (!outstanding) {
        *last_idx = g->next_cpl - 1;
        return 0;
    }
    if (OVS_UNLIKELY(g->instant)) {
        return guard_report(g, MIN(nb_cpls, outstanding), last_idx);
    }

    n = g->stopped ? 0 : drv_completed(g, vchan, MIN(nb_cpls, outstanding),
                                       &err);
    if (OVS_UNLIKELY(err) && !g->stopped) {
        n += guard_recover_errors(g, vchan, n, nb_cpls - n);
    }
    if (n) {
        g->progress_tsc = rte_get_tsc_cycles();
        g->empty_polls = 0;
        return guard_report(g, n, last_idx);
    }
    if (!(++g->empty_polls % 64)
        && rte_get_tsc_cycles() - g->progress_tsc > guard_stall_tsc()) {
        guard_recover_stall(g);
        if (g->n_redone) {
            n = MIN(nb_cpls, g->n_redone);
            g->n_redone -= n;
            return guard_report(g, n, last_idx);
        }
    }
    *last_idx = g->next_cpl - 1;
    return 0;
}

static uint16_t
guard_completed_status(void *priv, uint16_t vchan, const uint16_t nb_cpls,
                       uint16_t *last_idx, enum rte_dma_status_code *status)
{
    bool has_error;
    uint16_t n = guard_completed(priv, vchan, nb_cpls, last_idx, &has_error);

    for (uint16_t i = 0; i < n; i++) {
        status[i] = RTE_DMA_STATUS_SUCCESSFUL;
    }
    return n;
}

/* Wraps the fast-path functions of DMA device 'id', which is configured
 * and started, and not used yet. */
bool
dpdk_dma_guard_install(int16_t id, const char *name)
{
    struct rte_dma_fp_object *obj = &rte_dma_fp_objs[id];
    struct dpdk_dma_guard *g;
    struct rte_dma_info info;
    uint32_t size;

    if (id < 0 || id >= RTE_DMADEV_DEFAULT_MAX || guards[id]
        || rte_dma_info_get(id, &info)) {
        return false;
    }
    /* Never more copies outstanding than descriptors. */
    size = rte_align32pow2(MAX(info.max_desc, 2));
    if (size > UINT16_MAX + 1u) {
        return false;
    }

    g = xzalloc_cacheline(sizeof *g);
    g->orig = *obj;
    g->id = id;
    g->name = xstrdup(name);
    g->iova_va = rte_eal_iova_mode() == RTE_IOVA_VA;
    g->jobs = xcalloc(size, sizeof *g->jobs);
    g->mask = size - 1;
    atomic_init(&g->quarantined, false);
    atomic_init(&g->n_errors, 0);
    atomic_init(&g->n_cpu, 0);
    atomic_init(&g->n_lost, 0);
    atomic_init(&g->n_doorbells, 0);
    atomic_init(&g->n_rung, 0);
    atomic_init(&g->inject, INJECT_OFF);
    atomic_init(&g->every, 0);
    atomic_init(&g->next_n, 0);
    atomic_init(&g->delay_tsc, 0);
    guards[id] = g;

    obj->dev_private = g;
    obj->copy = guard_copy;
    obj->copy_sg = guard_copy_sg;
    obj->fill = guard_fill;
    obj->submit = guard_submit;
    obj->completed = guard_completed;
    obj->completed_status = guard_completed_status;
    obj->burst_capacity = guard_burst_capacity;
    return true;
}

bool
dpdk_dma_guard_quarantined(int16_t id)
{
    struct dpdk_dma_guard *g = guards[id];
    bool quarantined = false;

    if (g) {
        atomic_read_relaxed(&g->quarantined, &quarantined);
    }
    return quarantined;
}

/* Quarantines DMA device 'id' for reason 'why', a string constant. */
void
dpdk_dma_guard_quarantine(int16_t id, const char *why)
{
    if (id >= 0 && id < RTE_DMADEV_DEFAULT_MAX && guards[id]) {
        guard_quarantine(guards[id], why);
    }
}

/* Appends DMA device 'id''s state to 's', for "netdev-dpdk/dma-show". */
void
dpdk_dma_guard_format(struct ds *s, int16_t id)
{
    struct dpdk_dma_guard *g = guards[id];
    uint64_t errors, cpu, lost;
    bool quarantined;
    int mode;

    if (!g) {
        return;
    }
    atomic_read_explicit(&g->quarantined, &quarantined,
                         memory_order_acquire);
    atomic_read_relaxed(&g->n_errors, &errors);
    atomic_read_relaxed(&g->n_cpu, &cpu);
    atomic_read_relaxed(&g->n_lost, &lost);
    ds_put_format(s, "    state: %s%s%s, copy errors %"PRIu64", copies "
                  "done by the CPU %"PRIu64", copies lost %"PRIu64"\n",
                  quarantined ? "quarantined (" : "ok",
                  quarantined ? g->reason : "", quarantined ? ")" : "",
                  errors, cpu, lost);

    uint64_t doorbells, rung;

    atomic_read_relaxed(&g->n_doorbells, &doorbells);
    atomic_read_relaxed(&g->n_rung, &rung);
    ds_put_format(s, "    doorbells %"PRIu64" for %"PRIu64" copies "
                  "(%.1f per doorbell)\n", doorbells, rung,
                  doorbells ? rung / (double) doorbells : 0.0);
    mode = guard_inject_mode(g);
    if (mode != INJECT_OFF) {
        static const char *names[] = {
            [INJECT_ERRORS] = "errors", [INJECT_STALL] = "stall",
            [INJECT_DELAY] = "delay", [INJECT_INSTANT] = "instant",
        };

        ds_put_format(s, "    injected fault (test only): %s\n",
                      names[mode]);
    }
}

static struct dpdk_dma_guard *
guard_find(const char *name)
{
    for (int i = 0; i < RTE_DMADEV_DEFAULT_MAX; i++) {
        if (guards[i] && !strcmp(guards[i]->name, name)) {
            return guards[i];
        }
    }
    return NULL;
}

/* "netdev-dpdk/dma-inject-fault DEVICE FAULT [ARG]". */
static void
guard_inject_cmd(struct unixctl_conn *conn, int argc, const char *argv[],
                 void *aux OVS_UNUSED)
{
    struct dpdk_dma_guard *g = guard_find(argv[1]);
    const char *fault = argv[2];
    unsigned int arg = 0;
    int mode;

    if (!g) {
        unixctl_command_reply_error(conn, "no such DMA device in use");
        return;
    }
    if (argc > 3 && !str_to_uint(argv[3], 10, &arg)) {
        unixctl_command_reply_error(conn, "invalid number");
        return;
    }
    if (!strcmp(fault, "off")) {
        mode = INJECT_OFF;
    } else if (!strcmp(fault, "error-every") && arg) {
        mode = INJECT_ERRORS;
        atomic_store_relaxed(&g->next_n, 0);
        atomic_store_relaxed(&g->every, arg);
    } else if (!strcmp(fault, "error-next") && arg) {
        mode = INJECT_ERRORS;
        atomic_store_relaxed(&g->every, 0);
        atomic_store_relaxed(&g->next_n, arg);
    } else if (!strcmp(fault, "stall")) {
        mode = INJECT_STALL;
    } else if (!strcmp(fault, "delay") && arg) {
        mode = INJECT_DELAY;
        atomic_store_relaxed(&g->delay_tsc, rte_get_tsc_hz() / 1000000 * arg);
    } else if (!strcmp(fault, "instant")) {
        mode = INJECT_INSTANT;
    } else {
        unixctl_command_reply_error(conn, "unknown fault or missing "
                                    "argument (off, error-every N, "
                                    "error-next N, stall, delay USEC, "
                                    "instant)");
        return;
    }
    atomic_store_relaxed(&g->inject, mode);
    VLOG_WARN("DMA device %s: injecting fault \"%s%s%s\" (test only).",
              g->name, fault, argc > 3 ? " " : "", argc > 3 ? argv[3] : "");
    unixctl_command_reply(conn, NULL);
}

void
dpdk_dma_guard_register_injector(void)
{
    const char *env = getenv("OVS_VHOST_ASYNC_FAULT_INJECTION");

    if (env && !strcmp(env, "1")) {
        VLOG_WARN("OVS_VHOST_ASYNC_FAULT_INJECTION=1: DMA fault injection "
                  "is available (test only, never in production).");
        unixctl_command_register("netdev-dpdk/dma-inject-fault",
                                 "DEVICE off|error-every N|error-next N|"
                                 "stall|delay USEC|instant", 2, 3,
                                 guard_inject_cmd, NULL);
    }
}
