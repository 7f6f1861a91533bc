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

/* vhost-guest-verify: a correctness-checking "guest" for an OVS-DPDK switch.
 *
 * The program runs as a plain DPDK application that owns two (or one)
 * net_virtio_user ports connected to vhost-user sockets of a switch.  It
 * sends frames that carry a per-flow sequence number, a checksum and a
 * payload that can be regenerated from (direction, flow, sequence), and it
 * checks every frame that comes back for corruption, duplication, reordering
 * and loss.  Everything runs on the main lcore in a single thread.
 *
 * Frame layout after the 14-byte Ethernet header (EtherType 0x88B5), all
 * fields in network byte order:
 *
 *     magic (u32)   VGV_MAGIC, the low bit is the direction (0 or 1).
 *     flow  (u16)   Sequence space, 0 <= flow < --flows.
 *     len   (u16)   Frame length without CRC.
 *     seq   (u64)   Sequence number within the flow, from 0.
 *     csum  (u32)   CRC32C of the payload, that is, of all bytes after csum.
 *     payload       Pseudo-random bytes derived from (direction, flow, seq).
 *
 * Packet number 'g' of a direction (counting only packets that the PMD
 * accepted) goes to flow g % flows with sequence number g / flows, and its
 * size is a function of 'g' too.  A packet refused by rte_eth_tx_burst() is
 * freed and its number is reused by the next packet, so 'sent' counts only
 * accepted packets and every flow's sequence space stays dense.
 *
 * The per-flow "seen" bitmaps live in one anonymous mapping per direction
 * that the kernel populates lazily, so memory use follows the number of
 * packets actually sent.  Each flow has room for ceil(--count / --flows)
 * sequence numbers with --count, otherwise for min(2^28, 2^34 / --flows)
 * (2^28 packets per flow with up to 64 flows, 32 MiB of bitmap per flow at
 * most); a direction stops sending when one of its flows reaches its
 * bound.
 *
 * Before counting anything, and unless --no-warmup is given, the program
 * sends a probe frame (VGV_PROBE_MAGIC, never counted) every 10 ms in each
 * direction until one comes back, so that a switch that is still setting up
 * its ports does not show up as loss at the start.
 *
 * Notes on net_virtio_user with server=1 (DPDK 22.11): rte_eal_init() blocks
 * until the switch connects to each socket.  When the backend goes away, the
 * port reports link down and reconnects by itself when a backend connects
 * again; meanwhile rte_eth_tx_burst() keeps accepting packets until the
 * virtqueue is full (those are counted as sent, and probably lost) and then
 * refuses them.  The virtqueue size is the "queue_size" devarg (default
 * 256), not the descriptor count passed to the queue setup functions. */

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/mman.h>

#include <rte_byteorder.h>
#include <rte_common.h>
#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_ethdev.h>
#include <rte_ether.h>
/* DPDK 24.11's rte_hash_crc.h defines its SSE4.2 CRC functions inline,
 * which needs SSE4.2 enabled where it is included; it picks them at run
 * time only on a CPU that has SSE4.2 (DPDK 22.11 compiled them into the
 * library). */
#if defined(__x86_64__) && !defined(__SSE4_2__)
#pragma GCC push_options
#pragma GCC target("sse4.2")
#include <rte_hash_crc.h>
#pragma GCC pop_options
#else
#include <rte_hash_crc.h>
#endif
#include <rte_log.h>
#include <rte_malloc.h>
#include <rte_memory.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>

#define VGV_ETHERTYPE 0x88B5
#define VGV_MAGIC 0x56475600u       /* "VGV\0", low bit is the direction. */
#define VGV_PROBE_MAGIC 0x56475000u /* "VGP\0", warm-up probe frames. */
#define VGV_HDR_OFS RTE_ETHER_HDR_LEN
#define VGV_PAYLOAD_OFS (VGV_HDR_OFS + 20)
#define VGV_MIN_FRAME 64
#define VGV_MAX_FRAME 9000
#define VGV_SEG_SIZE 2000u          /* Data per segment of a chained frame. */
#define VGV_NB_MBUFS 16384
#define VGV_MBUF_CACHE 256
#define VGV_RX_DESC 1024
#define VGV_TX_DESC 1024
#define VGV_RX_BURST 64
#define VGV_MAX_BURST 512
#define VGV_MAX_FLOWS 65535
#define VGV_MAX_SIZES 64
#define VGV_MAX_SEQ (UINT64_C(1) << 28)    /* Per flow. */
#define VGV_MAX_SEQ_TOTAL (UINT64_C(1) << 34) /* All flows together. */
#define VGV_LINK_POLL_MS 10
#define VGV_BUF_SIZE 16384          /* Scratch buffers, above any frame. */
#define VGV_MAX_LOGGED 10           /* Corrupted frames described on stderr. */
#define VGV_SIGNAL_DRAIN_MS UINT64_C(500)
#define VGV_MARK_MS 10               /* Resolution of send times. */
#define VGV_MAX_MARKS (24 * 3600 * 1000 / VGV_MARK_MS)  /* A day. */

/* Command line options. */
struct options {
    uint16_t tx_port;
    uint16_t rx_port;
    bool bidir;
    uint32_t sizes[VGV_MAX_SIZES];  /* Cycled sizes, or the fixed size. */
    uint32_t n_sizes;
    uint32_t size_min;              /* Random sizes when size_max != 0. */
    uint32_t size_max;
    bool size_given;                /* --size was given. */
    bool sizes_given;               /* --sizes was given. */
    uint32_t mtu;
    uint32_t flows;
    uint64_t count;                 /* Per direction, 0 = unlimited. */
    double duration;                /* Seconds, 0 = unlimited. */
    double rate;                    /* Packets/s per direction, 0 = max. */
    uint32_t burst;
    uint64_t drain_ms;
    uint64_t interval_ms;
    const char *stats_file;
    double wait_link;
    struct rte_ether_addr src_mac;
    struct rte_ether_addr dst_mac;
    bool ignore_foreign;
    bool no_warmup;
    bool linger;
    uint64_t grow_mb;               /* --grow-mem, 0 = never. */
    uint64_t grow_at_ms;
    uint64_t grow_hold_ms;
};

/* Receive state of one flow of one direction. */
struct flow_state {
    uint64_t *seen;                 /* Bitmap of received sequence numbers. */
    uint64_t max_seq;               /* Highest sequence number received. */
    bool any_rx;                    /* True once 'max_seq' is valid. */
};

/* One direction of traffic: sent on 'tx_port', expected on 'rx_port'. */
struct direction {
    uint8_t id;
    uint16_t tx_port;
    uint16_t rx_port;
    struct rte_ether_addr src_mac;
    struct rte_ether_addr dst_mac;
    struct flow_state *flows;
    uint64_t *bitmap;               /* Mapping that holds all 'seen's. */
    size_t bitmap_size;             /* Size of 'bitmap' in bytes. */

    bool done;                      /* No more sending in this direction. */
    double tokens;                  /* Pacing credit, with --rate. */
    uint64_t last_token_tsc;
    uint64_t backoff_until;         /* TSC before which not to retry tx. */
    uint64_t probes_tx;             /* Warm-up probes sent. */
    uint64_t probes_rx;             /* Warm-up probes received. */

    uint64_t sent;                  /* Accepted by rte_eth_tx_burst(). */
    uint64_t tx_refused;
    uint64_t received;              /* Unique valid packets. */
    uint64_t reordered;
    uint64_t duplicated;
    uint64_t rx_bytes;

    /* marks[i] is 'sent' when slot i (VGV_MARK_MS long, from the start)
     * began: packet number g went out in the slot i with
     * marks[i] <= g < marks[i + 1]. */
    uint64_t *marks;                /* VGV_MAX_MARKS, mapped lazily. */
    size_t n_marks;
};

static struct options opt;
static struct direction dirs[2];
static struct flow_state flow_states[2][VGV_MAX_FLOWS];
static uint64_t max_seq;            /* Sequence numbers per flow. */
static unsigned int n_dirs;
static uint16_t ports[2];           /* Distinct ports in use. */
static unsigned int n_ports;
static bool link_up[RTE_MAX_ETHPORTS];
static bool lsc_intr[RTE_MAX_ETHPORTS];        /* LSC interrupts in use. */
static uint64_t lsc_downs[RTE_MAX_ETHPORTS];   /* Written by LSC callback. */
static uint64_t lsc_downs_seen[RTE_MAX_ETHPORTS];
static struct rte_mempool *pool;

static uint64_t corrupted;
static uint64_t foreign;
static bool counting;               /* False before the traffic starts. */
static uint64_t discarded;          /* Non-probe frames before that. */
static uint64_t link_down_events;
static uint64_t max_rx_gap_tsc;
static uint64_t last_rx_tsc;
static bool any_rx;
static uint64_t start_tsc;
static uint64_t stop_tsc;
static bool sending;
static uint64_t hz;
static uint64_t start_unix_ms;      /* Wall clock at 'start_tsc'. */

static pthread_t grow_thread;        /* Runs --grow-mem. */
static bool grow_started;
static bool grow_stop;               /* Tells 'grow_thread' to finish. */
static bool grow_failed;             /* Written by 'grow_thread'. */
static uint64_t mem_events;         /* Written by the EAL callback. */

static volatile sig_atomic_t n_signals;

static uint8_t tx_buf[VGV_BUF_SIZE];
static uint8_t rx_buf[VGV_BUF_SIZE];
static uint8_t ref_buf[VGV_BUF_SIZE];

static void
usage(void)
{
    printf("Usage: vhost-guest-verify [EAL options] -- [options]\n"
           "\n"
           "Sends sequence-numbered, checksummed frames (EtherType 0x88B5)\n"
           "on one port and checks the frames received on the other for\n"
           "loss, reordering, duplication and corruption, on the main lcore.\n"
           "\n"
           "Options:\n"
           "  --tx-port N        port to send on (default 0)\n"
           "  --rx-port N        port to receive on (default 1)\n"
           "  --bidir            also send from rx-port to tx-port; each\n"
           "                     direction has its own flows, the counters\n"
           "                     are summed\n"
           "  --size N           fixed frame size without CRC (default 64)\n"
           "  --sizes A,B,...    cycle through these frame sizes (up to %d)\n"
           "  --size-min A       with --size-max, pseudo-random frame sizes\n"
           "  --size-max B         in [A, B]; all sizes are in [%d, %d]\n"
           "  --mtu N            port MTU (default 1500); frames may have\n"
           "                     up to MTU + 18 bytes (as OVS allows), those\n"
           "                     above 2048 bytes are sent as chains of\n"
           "                     2000-byte segments\n"
           "  --flows N          sequence spaces per direction (default 4)\n"
           "  --count N          stop sending after N packets per direction\n"
           "  --duration SEC     stop sending after SEC seconds (a float);\n"
           "                     --count, --duration or both are needed\n"
           "  --rate PPS         packets per second per direction,\n"
           "                     0 = unpaced (default 0)\n"
           "  --burst N          tx burst size, 1 to %d (default 32)\n"
           "  --drain-ms MS      keep receiving up to MS ms after sending\n"
           "                     stops, then count what is missing as lost\n"
           "                     (default 1000)\n"
           "  --interval-ms MS   print an \"interim: verify: ...\" line\n"
           "                     every MS ms (default 0, off)\n"
           "  --stats-file PATH  atomically rewrite PATH with the latest\n"
           "                     line at each interval and at the end\n"
           "  --wait-link SEC    wait up to SEC seconds for link up before\n"
           "                     sending, else fail (default 10)\n"
           "  --src-mac MAC      source MAC (default 02:00:00:00:00:01)\n"
           "  --dst-mac MAC      destination MAC (default\n"
           "                     02:00:00:00:00:02); the reverse direction\n"
           "                     swaps them\n"
           "  --ignore-foreign   do not count frames of other EtherTypes as\n"
           "                     corrupted\n"
           "  --grow-mem MB      AT-MS ms after the start, allocate MB MiB\n"
           "                     of DPDK memory, beyond what EAL reserved,\n"
           "                     and free it HOLD-MS ms later: each of\n"
           "                     these changes the guest memory table that\n"
           "                     net_virtio_user sends to the switch\n"
           "  --grow-at-ms MS    (default 1000)\n"
           "  --grow-hold-ms MS  (default 1000)\n"
           "  --linger           after the result line, keep the ports\n"
           "                     open (receiving and dropping) until\n"
           "                     SIGTERM or SIGINT, so that the switch\n"
           "                     still has a running device to report\n"
           "                     statistics for\n"
           "  --no-warmup        start as soon as the links are up; by\n"
           "                     default, once they are, probe frames (not\n"
           "                     counted) are sent every 10 ms until one\n"
           "                     comes back in each direction, within the\n"
           "                     --wait-link time, else it fails\n"
           "  -h, --help         print this help and exit\n"
           "\n"
           "Output, one final line on stdout:\n"
           "  verify: sent=N received=N lost=N reordered=N duplicated=N\n"
           "  corrupted=N tx_refused=N bytes=N max_rx_gap_ms=N\n"
           "  link_down_events=N duration_ms=N foreign=N mem_events=N\n"
           "  loss_first_ms=N loss_last_ms=N start_unix_ms=N\n"
           "sent counts the packets accepted by the PMD (refused ones are\n"
           "tx_refused and get sent again), received the unique valid ones\n"
           "(reordered included), lost = sent - received, bytes is the frame\n"
           "bytes received, max_rx_gap_ms the longest time without any\n"
           "received packet while sending (from the first one on) and\n"
           "duration_ms the time spent sending, foreign the frames of\n"
           "other EtherTypes ignored (--ignore-foreign), mem_events the\n"
           "DPDK memory events (hugepages mapped or unmapped) seen while\n"
           "running.  loss_first_ms and loss_last_ms give, to within 10 ms\n"
           "after the start, when the first and the last of the lost\n"
           "packets were sent (-1 when none was lost), start_unix_ms the\n"
           "wall-clock time of the start (ms since the Epoch).\n"
           "Exit status: 0 if lost, reordered, duplicated and corrupted are\n"
           "all 0, 1 otherwise, 2 on usage or setup errors (e.g. no link).\n",
           VGV_MAX_SIZES, VGV_MIN_FRAME, VGV_MAX_FRAME, VGV_MAX_BURST);
}

static void
signal_handler(int signum __rte_unused)
{
    n_signals++;
}

static uint64_t
ms_to_tsc(uint64_t ms)
{
    return ms * hz / 1000;
}

static uint64_t
tsc_to_ms(uint64_t tsc)
{
    return tsc * 1000 / hz;
}

/* Parses 's' as an unsigned integer in [min, max] into '*out'. */
static bool
parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    unsigned long long v;
    char *end;

    errno = 0;
    v = strtoull(s, &end, 0);
    if (errno || end == s || *end || *s == '-' || v < min || v > max) {
        return false;
    }
    *out = v;
    return true;
}

/* Parses 's' as a non-negative floating point number into '*out'. */
static bool
parse_double(const char *s, double *out)
{
    char *end;
    double v;

    errno = 0;
    v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= 0) || v > 1e12) {
        return false;
    }
    *out = v;
    return true;
}

/* Parses a comma-separated list of frame sizes into 'opt.sizes'. */
static bool
parse_sizes(const char *s)
{
    opt.n_sizes = 0;
    for (;;) {
        unsigned long long v;
        char *end;

        errno = 0;
        v = strtoull(s, &end, 0);
        if (errno || end == s || *s == '-' || (*end && *end != ',')
            || v < VGV_MIN_FRAME || v > VGV_MAX_FRAME
            || opt.n_sizes >= VGV_MAX_SIZES) {
            return false;
        }
        opt.sizes[opt.n_sizes++] = v;
        if (!*end) {
            return true;
        }
        s = end + 1;
    }
}

/* Parses 's' as an unsigned integer in [min, max] into '*out'. */
static bool
parse_u32(const char *s, uint32_t min, uint32_t max, uint32_t *out)
{
    uint64_t v;

    if (!parse_uint(s, min, max, &v)) {
        return false;
    }
    *out = v;
    return true;
}

/* Parses 's' as a DPDK port number into '*port'. */
static bool
parse_port(const char *s, uint16_t *port)
{
    uint64_t v;

    if (!parse_uint(s, 0, RTE_MAX_ETHPORTS - 1, &v)) {
        return false;
    }
    *port = v;
    return true;
}

/* Parses 's' as a frame size into '*size'. */
static bool
parse_frame_size(const char *s, uint32_t *size)
{
    return parse_u32(s, VGV_MIN_FRAME, VGV_MAX_FRAME, size);
}

/* Parses 's' as a number of milliseconds into '*ms'. */
static bool
parse_ms(const char *s, uint64_t *ms)
{
    return parse_uint(s, 0, UINT32_MAX, ms);
}

/* The handlers of the options that take an argument.  Each one parses the
 * argument 'arg' of its option into 'opt' and returns false if 'arg' is
 * invalid. */

static bool
parse_opt_tx_port(const char *arg)
{
    return parse_port(arg, &opt.tx_port);
}

static bool
parse_opt_rx_port(const char *arg)
{
    return parse_port(arg, &opt.rx_port);
}

static bool
parse_opt_size(const char *arg)
{
    opt.size_given = true;
    opt.n_sizes = 1;
    return parse_frame_size(arg, &opt.sizes[0]);
}

static bool
parse_opt_sizes(const char *arg)
{
    opt.sizes_given = true;
    return parse_sizes(arg);
}

static bool
parse_opt_size_min(const char *arg)
{
    return parse_frame_size(arg, &opt.size_min);
}

static bool
parse_opt_size_max(const char *arg)
{
    return parse_frame_size(arg, &opt.size_max);
}

static bool
parse_opt_mtu(const char *arg)
{
    return parse_u32(arg, 68, 65535, &opt.mtu);
}

static bool
parse_opt_flows(const char *arg)
{
    return parse_u32(arg, 1, VGV_MAX_FLOWS, &opt.flows);
}

static bool
parse_opt_count(const char *arg)
{
    return parse_uint(arg, 1, UINT64_MAX, &opt.count);
}

static bool
parse_opt_duration(const char *arg)
{
    return parse_double(arg, &opt.duration) && opt.duration > 0;
}

static bool
parse_opt_rate(const char *arg)
{
    return parse_double(arg, &opt.rate);
}

static bool
parse_opt_burst(const char *arg)
{
    return parse_u32(arg, 1, VGV_MAX_BURST, &opt.burst);
}

static bool
parse_opt_drain_ms(const char *arg)
{
    return parse_ms(arg, &opt.drain_ms);
}

static bool
parse_opt_interval_ms(const char *arg)
{
    return parse_ms(arg, &opt.interval_ms);
}

static bool
parse_opt_stats_file(const char *arg)
{
    opt.stats_file = arg;
    return true;
}

static bool
parse_opt_wait_link(const char *arg)
{
    return parse_double(arg, &opt.wait_link);
}

static bool
parse_opt_src_mac(const char *arg)
{
    return !rte_ether_unformat_addr(arg, &opt.src_mac);
}

static bool
parse_opt_dst_mac(const char *arg)
{
    return !rte_ether_unformat_addr(arg, &opt.dst_mac);
}

static bool
parse_opt_grow_mem(const char *arg)
{
    return parse_uint(arg, 1, 65536, &opt.grow_mb);
}

static bool
parse_opt_grow_at_ms(const char *arg)
{
    return parse_ms(arg, &opt.grow_at_ms);
}

static bool
parse_opt_grow_hold_ms(const char *arg)
{
    return parse_ms(arg, &opt.grow_hold_ms);
}

/* An application option: either a flag that it sets to true, or a handler
 * for its required argument. */
struct app_option {
    const char *name;               /* Without the leading "--". */
    bool *flag;                     /* Flag option, or NULL. */
    bool (*parse)(const char *arg); /* Handler, if 'flag' is NULL. */
};

/* getopt_long() returns OPT_FIRST plus the index of an application option
 * in 'app_options', above any short option character. */
#define OPT_FIRST 256

/* The application options besides --help, in the order that getopt_long()
 * lists them when an abbreviation is ambiguous. */
static const struct app_option app_options[] = {
    {"tx-port", NULL, parse_opt_tx_port},
    {"rx-port", NULL, parse_opt_rx_port},
    {"bidir", &opt.bidir, NULL},
    {"size", NULL, parse_opt_size},
    {"sizes", NULL, parse_opt_sizes},
    {"size-min", NULL, parse_opt_size_min},
    {"size-max", NULL, parse_opt_size_max},
    {"mtu", NULL, parse_opt_mtu},
    {"flows", NULL, parse_opt_flows},
    {"count", NULL, parse_opt_count},
    {"duration", NULL, parse_opt_duration},
    {"rate", NULL, parse_opt_rate},
    {"burst", NULL, parse_opt_burst},
    {"drain-ms", NULL, parse_opt_drain_ms},
    {"interval-ms", NULL, parse_opt_interval_ms},
    {"stats-file", NULL, parse_opt_stats_file},
    {"wait-link", NULL, parse_opt_wait_link},
    {"src-mac", NULL, parse_opt_src_mac},
    {"dst-mac", NULL, parse_opt_dst_mac},
    {"ignore-foreign", &opt.ignore_foreign, NULL},
    {"no-warmup", &opt.no_warmup, NULL},
    {"grow-mem", NULL, parse_opt_grow_mem},
    {"grow-at-ms", NULL, parse_opt_grow_at_ms},
    {"grow-hold-ms", NULL, parse_opt_grow_hold_ms},
    {"linger", &opt.linger, NULL},
};
#define N_APP_OPTIONS RTE_DIM(app_options)

/* Fills the N_APP_OPTIONS + 2 entries of 'long_options' for getopt_long():
 * the application options, --help and the terminating entry. */
static void
build_long_options(struct option *long_options)
{
    for (size_t i = 0; i < N_APP_OPTIONS; i++) {
        const struct app_option *o = &app_options[i];

        long_options[i] = (struct option) {
            .name = o->name,
            .has_arg = o->flag ? no_argument : required_argument,
            .flag = NULL,
            .val = OPT_FIRST + i,
        };
    }
    long_options[N_APP_OPTIONS] = (struct option) {"help", no_argument,
                                                   NULL, 'h'};
    long_options[N_APP_OPTIONS + 1] = (struct option) {NULL, 0, NULL, 0};
}

/* Sets every option to its default value. */
static void
set_default_options(void)
{
    opt.tx_port = 0;
    opt.rx_port = 1;
    opt.sizes[0] = VGV_MIN_FRAME;
    opt.n_sizes = 1;
    opt.mtu = RTE_ETHER_MTU;
    opt.flows = 4;
    opt.burst = 32;
    opt.drain_ms = 1000;
    opt.wait_link = 10;
    opt.grow_at_ms = 1000;
    opt.grow_hold_ms = 1000;
    rte_ether_unformat_addr("02:00:00:00:00:01", &opt.src_mac);
    rte_ether_unformat_addr("02:00:00:00:00:02", &opt.dst_mac);
}

/* Applies option 'o' with its argument 'arg' (NULL for a flag).  Returns
 * false, after saying why on stderr, if 'arg' is invalid. */
static bool
apply_option(const struct app_option *o, const char *arg)
{
    if (o->flag) {
        *o->flag = true;
    } else if (!o->parse(arg)) {
        fprintf(stderr, "vhost-guest-verify: invalid argument '%s' for "
                "--%s\n", arg, o->name);
        return false;
    }
    return true;
}

/* Checks that at most one way of choosing frame sizes was used, and that
 * --size-min and --size-max come together.  Returns false, after saying why
 * on stderr, if not. */
static bool
check_size_options(void)
{
    bool random_sizes = opt.size_min || opt.size_max;

    if (opt.size_given + opt.sizes_given + random_sizes > 1) {
        fprintf(stderr, "vhost-guest-verify: --size, --sizes and "
                "--size-min/--size-max are mutually exclusive\n");
        return false;
    }
    if (random_sizes
        && (!opt.size_min || !opt.size_max || opt.size_min > opt.size_max)) {
        fprintf(stderr, "vhost-guest-verify: --size-min and --size-max "
                "must be given together, with min <= max\n");
        return false;
    }
    return true;
}

/* Checks that the run has an end and that --bidir has two ports.  Returns
 * false, after saying why on stderr, if not. */
static bool
check_traffic_options(void)
{
    if (!opt.count && !opt.duration) {
        fprintf(stderr, "vhost-guest-verify: --count or --duration is "
                "required\n");
        return false;
    }
    if (opt.bidir && opt.tx_port == opt.rx_port) {
        fprintf(stderr, "vhost-guest-verify: --bidir needs two different "
                "ports\n");
        return false;
    }
    return true;
}

/* Returns the largest frame size that the options allow. */
static uint32_t
largest_frame_size(void)
{
    uint32_t largest = opt.size_max;

    for (uint32_t i = 0; i < opt.n_sizes && !opt.size_max; i++) {
        largest = RTE_MAX(largest, opt.sizes[i]);
    }
    return largest;
}

/* Checks that every frame fits the MTU.  Returns false, after saying why on
 * stderr, if not. */
static bool
check_mtu(void)
{
    uint32_t largest = largest_frame_size();

    if (largest > opt.mtu + RTE_ETHER_HDR_LEN + RTE_ETHER_CRC_LEN) {
        fprintf(stderr, "vhost-guest-verify: frame size %"PRIu32" exceeds "
                "MTU %"PRIu32" + %d, use --mtu\n", largest, opt.mtu,
                RTE_ETHER_HDR_LEN + RTE_ETHER_CRC_LEN);
        return false;
    }
    return true;
}

/* Parses the application options (the arguments after "--").  Returns 0 on
 * success, 1 if help was printed, -1 on a usage error. */
static int
parse_options(int argc, char *argv[])
{
    struct option long_options[N_APP_OPTIONS + 2];
    int c;

    set_default_options();
    build_long_options(long_options);
    optind = 0;
    opterr = 1;
    while ((c = getopt_long(argc, argv, "h", long_options, NULL)) != -1) {
        if (c == 'h') {
            usage();
            return 1;
        }
        if (c < OPT_FIRST || c >= OPT_FIRST + (int) N_APP_OPTIONS) {
            fprintf(stderr, "Try --help for more information.\n");
            return -1;
        }
        if (!apply_option(&app_options[c - OPT_FIRST], optarg)) {
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "vhost-guest-verify: unexpected argument '%s'\n",
                argv[optind]);
        return -1;
    }
    if (!check_size_options() || !check_traffic_options() || !check_mtu()) {
        return -1;
    }
    return 0;
}

/* SplitMix64 step, a small and good 64-bit generator. */
static inline uint64_t
splitmix64(uint64_t *state)
{
    uint64_t z = (*state += UINT64_C(0x9e3779b97f4a7c15));

    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

/* Returns the frame size of packet number 'g' of direction 'dir'. */
static uint32_t
frame_size(unsigned int dir, uint64_t g)
{
    if (opt.size_max) {
        uint64_t state = g ^ ((uint64_t) dir << 63) ^ UINT64_C(0x5157e5);

        return opt.size_min
               + splitmix64(&state) % (opt.size_max - opt.size_min + 1);
    }
    return opt.sizes[g % opt.n_sizes];
}

/* Fills 'len' bytes at 'dst' with the payload of (dir, flow, seq). */
static void
fill_payload(uint8_t *dst, size_t len, unsigned int dir, uint16_t flow,
             uint64_t seq)
{
    uint64_t state = (seq * UINT64_C(0xd1342543de82ef95))
                     ^ ((uint64_t) flow << 40) ^ ((uint64_t) dir << 63)
                     ^ UINT64_C(0x6a09e667f3bcc909);

    while (len >= 8) {
        uint64_t r = splitmix64(&state);

        memcpy(dst, &r, 8);
        dst += 8;
        len -= 8;
    }
    if (len) {
        uint64_t r = splitmix64(&state);

        memcpy(dst, &r, len);
    }
}

static void
put_be16(uint8_t *p, uint16_t v)
{
    rte_be16_t x = rte_cpu_to_be_16(v);

    memcpy(p, &x, sizeof x);
}

static void
put_be32(uint8_t *p, uint32_t v)
{
    rte_be32_t x = rte_cpu_to_be_32(v);

    memcpy(p, &x, sizeof x);
}

static void
put_be64(uint8_t *p, uint64_t v)
{
    rte_be64_t x = rte_cpu_to_be_64(v);

    memcpy(p, &x, sizeof x);
}

static uint16_t
get_be16(const uint8_t *p)
{
    rte_be16_t x;

    memcpy(&x, p, sizeof x);
    return rte_be_to_cpu_16(x);
}

static uint32_t
get_be32(const uint8_t *p)
{
    rte_be32_t x;

    memcpy(&x, p, sizeof x);
    return rte_be_to_cpu_32(x);
}

static uint64_t
get_be64(const uint8_t *p)
{
    rte_be64_t x;

    memcpy(&x, p, sizeof x);
    return rte_be_to_cpu_64(x);
}

/* Returns the CRC32C of the 'len' bytes at 'payload'.  This loads through
 * memcpy() because the payload is not aligned. */
static uint32_t
payload_csum(const uint8_t *payload, uint32_t len)
{
    uint32_t crc = 0xffffffff;

    for (; len >= 8; payload += 8, len -= 8) {
        uint64_t word;

        memcpy(&word, payload, sizeof word);
        crc = rte_hash_crc_8byte(word, crc);
    }
    for (; len; payload++, len--) {
        crc = rte_hash_crc_1byte(*payload, crc);
    }
    return crc;
}

/* Writes the complete frame of packet number 'g' of 'd' into 'buf' and
 * returns its length. */
static uint32_t
build_frame(const struct direction *d, uint64_t g, uint8_t *buf)
{
    uint32_t len = frame_size(d->id, g);
    uint16_t flow = g % opt.flows;
    uint64_t seq = g / opt.flows;
    uint8_t *payload = buf + VGV_PAYLOAD_OFS;
    uint32_t payload_len = len - VGV_PAYLOAD_OFS;

    memcpy(buf, &d->dst_mac, RTE_ETHER_ADDR_LEN);
    memcpy(buf + RTE_ETHER_ADDR_LEN, &d->src_mac, RTE_ETHER_ADDR_LEN);
    put_be16(buf + 12, VGV_ETHERTYPE);
    put_be32(buf + VGV_HDR_OFS, VGV_MAGIC | d->id);
    put_be16(buf + VGV_HDR_OFS + 4, flow);
    put_be16(buf + VGV_HDR_OFS + 6, len);
    put_be64(buf + VGV_HDR_OFS + 8, seq);
    fill_payload(payload, payload_len, d->id, flow, seq);
    put_be32(buf + VGV_HDR_OFS + 16, payload_csum(payload, payload_len));
    return len;
}

/* Copies the 'len'-byte frame at 'buf' into a new mbuf, or a chain of mbufs
 * of VGV_SEG_SIZE bytes each if it does not fit in one.  Returns NULL if
 * the pool is exhausted. */
static struct rte_mbuf *
frame_to_mbuf(const uint8_t *buf, uint32_t len)
{
    struct rte_mbuf *segs[VGV_MAX_FRAME / VGV_SEG_SIZE + 1];
    uint32_t n_segs = 1;

    if (len + RTE_PKTMBUF_HEADROOM > rte_pktmbuf_data_room_size(pool)) {
        n_segs = (len + VGV_SEG_SIZE - 1) / VGV_SEG_SIZE;
    }
    if (rte_pktmbuf_alloc_bulk(pool, segs, n_segs)) {
        return NULL;
    }

    uint32_t ofs = 0;
    for (uint32_t i = 0; i < n_segs; i++) {
        uint32_t chunk = n_segs == 1 ? len : RTE_MIN(len - ofs, VGV_SEG_SIZE);

        memcpy(rte_pktmbuf_mtod(segs[i], uint8_t *), buf + ofs, chunk);
        segs[i]->data_len = chunk;
        segs[i]->next = i + 1 < n_segs ? segs[i + 1] : NULL;
        ofs += chunk;
    }
    segs[0]->nb_segs = n_segs;
    segs[0]->pkt_len = len;
    return segs[0];
}

/* Returns the number of packets sent so far in flow 'flow' of 'd'. */
static uint64_t
flow_sent(const struct direction *d, uint16_t flow)
{
    return d->sent / opt.flows + (flow < d->sent % opt.flows ? 1 : 0);
}

/* Records how many packets direction 'd' has sent at the start of every
 * VGV_MARK_MS slot up to 'now', for send_time_ms(). */
static void
mark_send_time(struct direction *d, uint64_t now)
{
    size_t slot = (now - start_tsc) / ms_to_tsc(VGV_MARK_MS);

    /* After a day, the last slot takes all later packets. */
    slot = RTE_MIN(slot, (size_t) VGV_MAX_MARKS - 1);
    while (d->n_marks <= slot) {
        d->marks[d->n_marks++] = d->sent;
    }
}

/* Returns when direction 'd' sent its packet number 'g', in ms after the
 * start, rounded down to VGV_MARK_MS. */
static uint64_t
send_time_ms(const struct direction *d, uint64_t g)
{
    size_t lo = 0, hi = d->n_marks;

    /* The last slot i with marks[i] <= g. */
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;

        if (d->marks[mid] <= g) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    return lo * VGV_MARK_MS;
}

/* Sends one burst in direction 'd', if due. */
static void
send_burst(struct direction *d, uint64_t now)
{
    struct rte_mbuf *pkts[VGV_MAX_BURST];
    uint32_t n = opt.burst;
    uint16_t n_built, n_sent;

    if (d->done || now < d->backoff_until) {
        return;
    }
    if (opt.count) {
        n = RTE_MIN(n, opt.count - d->sent);
    }
    if (opt.rate) {
        double cap = RTE_MAX((double) opt.burst, opt.rate / 100);

        d->tokens += (double) (now - d->last_token_tsc) * opt.rate / hz;
        d->tokens = RTE_MIN(d->tokens, cap);
        d->last_token_tsc = now;
        n = RTE_MIN(n, (uint32_t) d->tokens);
    }

    for (n_built = 0; n_built < n; n_built++) {
        uint64_t g = d->sent + n_built;

        if (g / opt.flows >= max_seq) {
            fprintf(stderr, "vhost-guest-verify: direction %u reached the "
                    "sequence number limit, it stops sending\n", d->id);
            d->done = true;
            break;
        }
        pkts[n_built] = frame_to_mbuf(tx_buf, build_frame(d, g, tx_buf));
        if (!pkts[n_built]) {
            break;
        }
    }
    if (!n_built) {
        return;
    }

    n_sent = rte_eth_tx_burst(d->tx_port, 0, pkts, n_built);
    d->sent += n_sent;
    for (uint16_t i = n_sent; i < n_built; i++) {
        rte_pktmbuf_free(pkts[i]);
    }
    d->tx_refused += n_built - n_sent;
    if (opt.rate) {
        d->tokens -= n_sent;
    }
    if (!n_sent) {
        /* The port is probably down; do not spin on allocating mbufs. */
        d->backoff_until = now + hz / 10000;
    }
    if (opt.count && d->sent >= opt.count) {
        d->done = true;
    }
}

/* Counts a corrupted frame received on 'port' and describes it on stderr,
 * for the first few. */
static void
corrupt(uint16_t port, uint32_t len, const char *why)
{
    corrupted++;
    if (corrupted <= VGV_MAX_LOGGED) {
        fprintf(stderr, "vhost-guest-verify: corrupted frame on port "
                "%"PRIu16" (length %"PRIu32"): %s\n", port, len, why);
    }
}

/* Checks the frame 'm' received on 'port' and updates the counters. */
static void
check_frame(uint16_t port, const struct rte_mbuf *m)
{
    uint32_t len = rte_pktmbuf_pkt_len(m);
    const uint8_t *p;

    if (!counting && (len < VGV_PAYLOAD_OFS || len > VGV_BUF_SIZE)) {
        discarded++;
        return;
    }
    if (len < VGV_PAYLOAD_OFS || len > VGV_BUF_SIZE) {
        if (len >= RTE_ETHER_HDR_LEN && len <= VGV_BUF_SIZE
            && opt.ignore_foreign) {
            p = rte_pktmbuf_read(m, 0, RTE_ETHER_HDR_LEN, rx_buf);
            if (p && get_be16(p + 12) != VGV_ETHERTYPE) {
                foreign++;
                return;
            }
        }
        corrupt(port, len, "bad length");
        return;
    }
    p = rte_pktmbuf_read(m, 0, len, rx_buf);
    if (!p) {
        corrupt(port, len, "unreadable mbuf chain");
        return;
    }
    if (get_be16(p + 12) != VGV_ETHERTYPE) {
        if (!counting) {
            discarded++;
        } else if (opt.ignore_foreign) {
            foreign++;
        } else {
            corrupt(port, len, "foreign EtherType");
        }
        return;
    }

    uint32_t magic = get_be32(p + VGV_HDR_OFS);
    uint16_t flow = get_be16(p + VGV_HDR_OFS + 4);
    uint16_t hdr_len = get_be16(p + VGV_HDR_OFS + 6);
    uint64_t seq = get_be64(p + VGV_HDR_OFS + 8);
    uint32_t csum = get_be32(p + VGV_HDR_OFS + 16);
    const uint8_t *payload = p + VGV_PAYLOAD_OFS;
    uint32_t payload_len = len - VGV_PAYLOAD_OFS;

    if ((magic & ~1u) == VGV_PROBE_MAGIC && (magic & 1) < n_dirs) {
        /* A warm-up probe, possibly a late one. */
        dirs[magic & 1].probes_rx++;
        return;
    }
    if (!counting) {
        discarded++;
        return;
    }
    if ((magic & ~1u) != VGV_MAGIC || (magic & 1) >= n_dirs) {
        corrupt(port, len, "bad magic");
        return;
    }

    struct direction *d = &dirs[magic & 1];
    if (port != d->rx_port) {
        corrupt(port, len, "frame received on the wrong port");
        return;
    }
    if (hdr_len != len) {
        corrupt(port, len, "length mismatch");
        return;
    }
    if (flow >= opt.flows || seq >= flow_sent(d, flow)) {
        corrupt(port, len, "flow or sequence number out of range");
        return;
    }
    if (frame_size(d->id, seq * opt.flows + flow) != len) {
        corrupt(port, len, "unexpected size for this sequence number");
        return;
    }
    if (payload_csum(payload, payload_len) != csum) {
        corrupt(port, len, "checksum mismatch");
        return;
    }
    fill_payload(ref_buf, payload_len, d->id, flow, seq);
    if (memcmp(payload, ref_buf, payload_len)) {
        corrupt(port, len, "payload mismatch");
        return;
    }

    struct flow_state *fs = &d->flows[flow];
    uint64_t bit = UINT64_C(1) << (seq % 64);
    uint64_t *word = &fs->seen[seq / 64];

    if (*word & bit) {
        d->duplicated++;
        return;
    }
    *word |= bit;
    if (fs->any_rx && seq < fs->max_seq) {
        d->reordered++;
    } else {
        fs->max_seq = seq;
        fs->any_rx = true;
    }
    d->received++;
    d->rx_bytes += len;
}

/* Returns the bits of word 'w' of bitmap 'seen' for sequence numbers below
 * 'n' that are not set. */
static uint64_t
missing_bits(const uint64_t *seen, uint64_t w, uint64_t n)
{
    uint64_t valid = w < n / 64 ? UINT64_MAX : (UINT64_C(1) << (n % 64)) - 1;

    return ~seen[w] & valid;
}

/* Finds the lowest and the highest number of a packet that direction 'd'
 * sent and did not receive, in '*first' and '*last'.  Returns false if it
 * received them all. */
static bool
find_lost(const struct direction *d, uint64_t *first, uint64_t *last)
{
    bool found = false;

    *first = *last = 0;
    for (uint32_t f = 0; f < opt.flows; f++) {
        const uint64_t *seen = d->flows[f].seen;
        uint64_t n = flow_sent(d, f);
        uint64_t n_words = (n + 63) / 64;
        uint64_t w;

        for (w = 0; w < n_words && !missing_bits(seen, w, n); w++) {
            continue;
        }
        if (w == n_words) {
            continue;
        }
        uint64_t g = (w * 64 + __builtin_ctzll(missing_bits(seen, w, n)))
                     * opt.flows + f;
        if (!found || g < *first) {
            *first = g;
        }
        for (w = n_words - 1; !missing_bits(seen, w, n); w--) {
            continue;
        }
        g = (w * 64 + 63 - __builtin_clzll(missing_bits(seen, w, n)))
            * opt.flows + f;
        if (!found || g > *last) {
            *last = g;
        }
        found = true;
    }
    return found;
}

/* Receives and checks one burst on every port in use. */
static void
receive_all(uint64_t now)
{
    struct rte_mbuf *pkts[VGV_RX_BURST];

    for (unsigned int i = 0; i < n_ports; i++) {
        uint16_t n = rte_eth_rx_burst(ports[i], 0, pkts, VGV_RX_BURST);

        if (n) {
            if (any_rx && sending) {
                max_rx_gap_tsc = RTE_MAX(max_rx_gap_tsc, now - last_rx_tsc);
            }
            any_rx = true;
            last_rx_tsc = now;
        }
        for (uint16_t j = 0; j < n; j++) {
            check_frame(ports[i], pkts[j]);
            rte_pktmbuf_free(pkts[j]);
        }
    }
}

/* Link state change callback, called from the EAL interrupt thread.  It
 * counts the transitions to down, even those too short for poll_links() to
 * notice. */
static int
lsc_callback(uint16_t port, enum rte_eth_event_type type __rte_unused,
             void *aux __rte_unused, void *ret_param __rte_unused)
{
    struct rte_eth_link link;

    /* With LSC interrupts enabled this only reads the stored status. */
    memset(&link, 0, sizeof link);
    if (!rte_eth_link_get_nowait(port, &link)
        && link.link_status == RTE_ETH_LINK_DOWN) {
        __atomic_fetch_add(&lsc_downs[port], 1, __ATOMIC_RELAXED);
    }
    return 0;
}

/* Polls the link state of every port in use, reports changes on stderr and
 * counts the transitions to down: from the LSC callback where the port has
 * LSC interrupts, else from what this poll sees. */
static void
poll_links(void)
{
    for (unsigned int i = 0; i < n_ports; i++) {
        uint16_t port = ports[i];
        struct rte_eth_link link;
        bool up;

        memset(&link, 0, sizeof link);
        up = !rte_eth_link_get_nowait(port, &link)
             && link.link_status == RTE_ETH_LINK_UP;
        if (lsc_intr[port]) {
            uint64_t downs = __atomic_load_n(&lsc_downs[port],
                                             __ATOMIC_RELAXED);

            link_down_events += downs - lsc_downs_seen[port];
            lsc_downs_seen[port] = downs;
        } else if (!up && link_up[port]) {
            link_down_events++;
        }
        if (up != link_up[port]) {
            fprintf(stderr, "vhost-guest-verify: port %"PRIu16" link %s\n",
                    port, up ? "up" : "down");
            link_up[port] = up;
        }
    }
}

/* Formats the statistics line, with 'prefix' ("verify:" or "interim:
 * verify:"), into 'buf'. */
static void
format_stats(char *buf, size_t size, const char *prefix, uint64_t now)
{
    uint64_t sent = 0, received = 0, reordered = 0, duplicated = 0;
    uint64_t tx_refused = 0, bytes = 0;
    uint64_t end = sending ? now : stop_tsc;

    for (unsigned int i = 0; i < n_dirs; i++) {
        sent += dirs[i].sent;
        received += dirs[i].received;
        reordered += dirs[i].reordered;
        duplicated += dirs[i].duplicated;
        tx_refused += dirs[i].tx_refused;
        bytes += dirs[i].rx_bytes;
    }
    snprintf(buf, size, "%s sent=%"PRIu64" received=%"PRIu64" lost=%"PRIu64
             " reordered=%"PRIu64" duplicated=%"PRIu64" corrupted=%"PRIu64
             " tx_refused=%"PRIu64" bytes=%"PRIu64" max_rx_gap_ms=%"PRIu64
             " link_down_events=%"PRIu64" duration_ms=%"PRIu64
             " foreign=%"PRIu64" mem_events=%"PRIu64,
             prefix, sent, received, sent - received, reordered, duplicated,
             corrupted, tx_refused, bytes, tsc_to_ms(max_rx_gap_tsc),
             link_down_events, start_tsc ? tsc_to_ms(end - start_tsc) : 0,
             foreign, __atomic_load_n(&mem_events, __ATOMIC_RELAXED));
}

/* Formats the final result line into 'buf': the statistics and when the
 * lost packets were sent. */
static void
format_result(char *buf, size_t size, uint64_t now)
{
    int64_t first_ms = -1, last_ms = -1;
    size_t len;

    for (unsigned int i = 0; i < n_dirs; i++) {
        const struct direction *d = &dirs[i];
        uint64_t first, last;

        if (find_lost(d, &first, &last)) {
            int64_t a = send_time_ms(d, first);
            int64_t b = send_time_ms(d, last);

            first_ms = first_ms < 0 ? a : RTE_MIN(first_ms, a);
            last_ms = RTE_MAX(last_ms, b);
        }
    }
    format_stats(buf, size, "verify:", now);
    len = strlen(buf);
    snprintf(buf + len, size - len, " loss_first_ms=%"PRId64
             " loss_last_ms=%"PRId64" start_unix_ms=%"PRIu64,
             first_ms, last_ms, start_unix_ms);
}

/* Counts DPDK memory events (hugepages mapped into or unmapped from this
 * process), each of which makes net_virtio_user send the switch a new
 * memory table.  Called by EAL in the thread that allocates or frees. */
static void
mem_event_callback(enum rte_mem_event type __rte_unused, const void *addr,
                   size_t len __rte_unused, void *arg __rte_unused)
{
    const struct rte_memseg_list *msl = rte_mem_virt2memseg_list(addr);

    if (msl && !msl->external) {
        __atomic_fetch_add(&mem_events, 1, __ATOMIC_RELAXED);
    }
}

/* Waits until 'ms' ms after the start, or until told to finish.  Returns
 * false in the latter case. */
static bool
grow_wait(uint64_t ms)
{
    uint64_t until = start_tsc + ms_to_tsc(ms);

    for (;;) {
        uint64_t now = rte_get_tsc_cycles();

        if (__atomic_load_n(&grow_stop, __ATOMIC_ACQUIRE)) {
            return false;
        } else if (now >= until) {
            return true;
        }
        usleep(RTE_MIN(tsc_to_ms(until - now) * 1000 + 100, 10000));
    }
}

/* Carries out --grow-mem in a thread of its own, so that the main loop
 * keeps sending and receiving while net_virtio_user, called back in this
 * thread, pauses the vrings and sends the new memory table: a guest whose
 * other threads allocate memory while its data path runs. */
static void *
grow_main(void *arg __rte_unused)
{
    void *block;

    if (!grow_wait(opt.grow_at_ms)) {
        return NULL;
    }
    block = rte_malloc("vgv_grow", opt.grow_mb << 20, 0);
    if (!block) {
        fprintf(stderr, "vhost-guest-verify: cannot allocate %"PRIu64" MiB "
                "for --grow-mem: %s\n", opt.grow_mb,
                rte_strerror(rte_errno));
        __atomic_store_n(&grow_failed, true, __ATOMIC_RELAXED);
        return NULL;
    }
    fprintf(stderr, "vhost-guest-verify: allocated %"PRIu64" MiB (%"PRIu64
            " memory events so far)\n", opt.grow_mb,
            __atomic_load_n(&mem_events, __ATOMIC_RELAXED));
    grow_wait(opt.grow_at_ms + opt.grow_hold_ms);
    rte_free(block);
    fprintf(stderr, "vhost-guest-verify: freed the --grow-mem block (%"PRIu64
            " memory events so far)\n",
            __atomic_load_n(&mem_events, __ATOMIC_RELAXED));
    return NULL;
}

/* Atomically replaces the contents of the stats file with 'line'. */
static void
write_stats_file(const char *line)
{
    char tmp[4096];
    FILE *f;

    if (!opt.stats_file) {
        return;
    }
    snprintf(tmp, sizeof tmp, "%s.tmp", opt.stats_file);
    f = fopen(tmp, "w");
    if (!f) {
        fprintf(stderr, "vhost-guest-verify: %s: %s\n", tmp,
                rte_strerror(errno));
        return;
    }
    fprintf(f, "%s\n", line);
    if (fclose(f) || rename(tmp, opt.stats_file)) {
        fprintf(stderr, "vhost-guest-verify: %s: %s\n", opt.stats_file,
                rte_strerror(errno));
    }
}

/* Configures and starts 'port' with one rx and one tx queue. */
static int
port_setup(uint16_t port)
{
    struct rte_eth_conf conf;
    struct rte_eth_dev_info info;
    uint16_t nb_rxd = VGV_RX_DESC, nb_txd = VGV_TX_DESC;
    uint32_t max_frame = opt.mtu + RTE_ETHER_HDR_LEN + RTE_ETHER_CRC_LEN;
    uint32_t data_room = rte_pktmbuf_data_room_size(pool)
                         - RTE_PKTMBUF_HEADROOM;
    int err;

    if (!rte_eth_dev_is_valid_port(port)) {
        fprintf(stderr, "vhost-guest-verify: port %"PRIu16" does not exist "
                "(%"PRIu16" ports)\n", port, rte_eth_dev_count_avail());
        return -1;
    }
    err = rte_eth_dev_info_get(port, &info);
    if (err) {
        fprintf(stderr, "vhost-guest-verify: port %"PRIu16": cannot get "
                "device info: %s\n", port, rte_strerror(-err));
        return -1;
    }
    if (opt.mtu > info.max_mtu || opt.mtu < info.min_mtu) {
        fprintf(stderr, "vhost-guest-verify: port %"PRIu16": MTU %"PRIu32
                " not in [%"PRIu16", %"PRIu16"]\n", port, opt.mtu,
                info.min_mtu, info.max_mtu);
        return -1;
    }

    memset(&conf, 0, sizeof conf);
    conf.rxmode.mtu = opt.mtu;
    if (max_frame > data_room) {
        if (!(info.rx_offload_capa & RTE_ETH_RX_OFFLOAD_SCATTER)) {
            fprintf(stderr, "vhost-guest-verify: port %"PRIu16": MTU "
                    "%"PRIu32" needs rx scatter, which is not supported\n",
                    port, opt.mtu);
            return -1;
        }
        conf.rxmode.offloads |= RTE_ETH_RX_OFFLOAD_SCATTER;
    }
    if (info.tx_offload_capa & RTE_ETH_TX_OFFLOAD_MULTI_SEGS) {
        conf.txmode.offloads |= RTE_ETH_TX_OFFLOAD_MULTI_SEGS;
    }

    /* Use LSC interrupts where the port has them.  For virtio-user this
     * lets the EAL interrupt thread handle the backend going away and
     * coming back.  Without them, virtio-user reconnects from within
     * rte_eth_link_get_nowait(), but it still registers interrupt
     * callbacks on reconnection that rte_eth_dev_close() then does not
     * remove, and the EAL interrupt thread panics on the closed fd. */
    if (*info.dev_flags & RTE_ETH_DEV_INTR_LSC) {
        conf.intr_conf.lsc = 1;
        err = rte_eth_dev_callback_register(port, RTE_ETH_EVENT_INTR_LSC,
                                            lsc_callback, NULL);
        if (err) {
            fprintf(stderr, "vhost-guest-verify: port %"PRIu16": cannot "
                    "register the LSC callback: %s\n", port,
                    rte_strerror(-err));
            return -1;
        }
        lsc_intr[port] = true;
    }

    err = rte_eth_dev_configure(port, 1, 1, &conf);
    if (!err) {
        err = rte_eth_dev_adjust_nb_rx_tx_desc(port, &nb_rxd, &nb_txd);
    }
    if (!err) {
        struct rte_eth_rxconf rxconf = info.default_rxconf;

        rxconf.offloads = conf.rxmode.offloads;
        err = rte_eth_rx_queue_setup(port, 0, nb_rxd,
                                     rte_eth_dev_socket_id(port), &rxconf,
                                     pool);
    }
    if (!err) {
        struct rte_eth_txconf txconf = info.default_txconf;

        txconf.offloads = conf.txmode.offloads;
        err = rte_eth_tx_queue_setup(port, 0, nb_txd,
                                     rte_eth_dev_socket_id(port), &txconf);
    }
    if (!err) {
        err = rte_eth_dev_set_mtu(port, opt.mtu);
    }
    if (!err) {
        err = rte_eth_dev_start(port);
    }
    if (err) {
        fprintf(stderr, "vhost-guest-verify: port %"PRIu16": setup failed: "
                "%s\n", port, rte_strerror(-err));
        return -1;
    }
    return 0;
}

/* Waits up to --wait-link seconds for all ports to be up.  Returns true if
 * they are. */
static bool
wait_links(uint64_t deadline)
{
    bool reported = false;

    for (;;) {
        bool all_up = true;

        poll_links();
        for (unsigned int i = 0; i < n_ports; i++) {
            all_up = all_up && link_up[ports[i]];
        }
        if (all_up) {
            return true;
        }
        if (n_signals || rte_get_tsc_cycles() >= deadline) {
            return false;
        }
        if (!reported) {
            fprintf(stderr, "vhost-guest-verify: waiting for link up\n");
            reported = true;
        }
        rte_delay_us_sleep(VGV_LINK_POLL_MS * 1000);
    }
}

/* Sends one minimum-size warm-up probe frame in direction 'd'.  Probes
 * carry VGV_PROBE_MAGIC and are not counted in any statistics. */
static void
send_probe(struct direction *d)
{
    uint8_t frame[VGV_MIN_FRAME];
    struct rte_mbuf *m;

    memset(frame, 0, sizeof frame);
    memcpy(frame, &d->dst_mac, RTE_ETHER_ADDR_LEN);
    memcpy(frame + RTE_ETHER_ADDR_LEN, &d->src_mac, RTE_ETHER_ADDR_LEN);
    put_be16(frame + 12, VGV_ETHERTYPE);
    put_be32(frame + VGV_HDR_OFS, VGV_PROBE_MAGIC | d->id);
    put_be16(frame + VGV_HDR_OFS + 6, sizeof frame);
    put_be64(frame + VGV_HDR_OFS + 8, d->probes_tx);
    m = frame_to_mbuf(frame, sizeof frame);
    if (m) {
        if (rte_eth_tx_burst(d->tx_port, 0, &m, 1)) {
            d->probes_tx++;
        } else {
            rte_pktmbuf_free(m);
        }
    }
}

/* Sends warm-up probes every VGV_LINK_POLL_MS ms until one came back in
 * every direction, which shows that the switch forwards end to end, or
 * until 'deadline'.  Returns true on success. */
static bool
warmup(uint64_t deadline)
{
    uint64_t next_probe = 0;

    for (;;) {
        uint64_t now = rte_get_tsc_cycles();
        bool all_back = true;

        for (unsigned int i = 0; i < n_dirs; i++) {
            all_back = all_back && dirs[i].probes_rx;
        }
        if (all_back) {
            return true;
        }
        if (n_signals || now >= deadline) {
            return false;
        }
        if (now >= next_probe) {
            for (unsigned int i = 0; i < n_dirs; i++) {
                if (!dirs[i].probes_rx) {
                    send_probe(&dirs[i]);
                }
            }
            poll_links();
            next_probe = now + ms_to_tsc(VGV_LINK_POLL_MS);
        }
        receive_all(now);
    }
}

static bool
all_received(void)
{
    for (unsigned int i = 0; i < n_dirs; i++) {
        if (dirs[i].received < dirs[i].sent) {
            return false;
        }
    }
    return true;
}

static bool
all_done(void)
{
    for (unsigned int i = 0; i < n_dirs; i++) {
        if (!dirs[i].done) {
            return false;
        }
    }
    return true;
}

/* Sends, receives and checks until the run ends. */
static void
run(void)
{
    uint64_t duration_tsc = opt.duration * hz;
    uint64_t next_link_poll, next_interval, drain_end = 0;
    int signals_seen = 0;
    struct timespec ts;
    char line[512];

    poll_links();
    link_down_events = 0;
    any_rx = false;
    counting = true;
    start_tsc = rte_get_tsc_cycles();
    clock_gettime(CLOCK_REALTIME, &ts);
    start_unix_ms = (uint64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    next_link_poll = start_tsc + ms_to_tsc(VGV_LINK_POLL_MS);
    next_interval = start_tsc + ms_to_tsc(opt.interval_ms);
    for (unsigned int i = 0; i < n_dirs; i++) {
        dirs[i].last_token_tsc = start_tsc;
        dirs[i].tokens = RTE_MIN((double) opt.burst, opt.rate);
    }
    sending = true;
    if (opt.grow_mb) {
        int err = pthread_create(&grow_thread, NULL, grow_main, NULL);

        if (err) {
            fprintf(stderr, "vhost-guest-verify: cannot start the "
                    "--grow-mem thread: %s\n", rte_strerror(err));
            grow_failed = true;
        } else {
            grow_started = true;
        }
    }

    for (;;) {
        uint64_t now = rte_get_tsc_cycles();

        if (sending) {
            for (unsigned int i = 0; i < n_dirs; i++) {
                mark_send_time(&dirs[i], now);
                send_burst(&dirs[i], now);
            }
        }

        receive_all(now);

        if (now >= next_link_poll) {
            poll_links();
            next_link_poll = now + ms_to_tsc(VGV_LINK_POLL_MS);
        }

        if (opt.interval_ms && now >= next_interval) {
            format_stats(line, sizeof line, "interim: verify:", now);
            printf("%s\n", line);
            fflush(stdout);
            write_stats_file(line);
            next_interval += ms_to_tsc(opt.interval_ms);
            if (next_interval <= now) {
                next_interval = now + ms_to_tsc(opt.interval_ms);
            }
        }

        if (sending) {
            if (any_rx) {
                max_rx_gap_tsc = RTE_MAX(max_rx_gap_tsc, now - last_rx_tsc);
            }
            if (n_signals || all_done()
                || (duration_tsc && now - start_tsc >= duration_tsc)) {
                uint64_t drain_ms = opt.drain_ms;

                if (n_signals) {
                    fprintf(stderr, "vhost-guest-verify: interrupted, "
                            "draining\n");
                    drain_ms = RTE_MIN(drain_ms, VGV_SIGNAL_DRAIN_MS);
                    signals_seen = n_signals;
                }
                sending = false;
                stop_tsc = now;
                drain_end = now + ms_to_tsc(drain_ms);
            }
        } else if (all_received() || now >= drain_end
                   || n_signals > signals_seen) {
            break;
        }
    }
}

/* Splits the command line at "--": stores argv[0] and the arguments after
 * "--" into 'app_argv', which must have room for 'argc' + 1 entries and is
 * NULL-terminated, and their number into '*app_argc'.  Returns the number of
 * EAL arguments, those before "--" (argv[0] included). */
static int
split_command_line(int argc, char *argv[], char *app_argv[], int *app_argc)
{
    int eal_argc = argc;
    int n = 0;

    app_argv[n++] = argv[0];
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--")) {
            eal_argc = i;
            for (i++; i < argc; i++) {
                app_argv[n++] = argv[i];
            }
            break;
        }
    }
    app_argv[n] = NULL;
    *app_argc = n;
    return eal_argc;
}

/* Returns true if the EAL arguments are just -h or --help. */
static bool
eal_help_requested(int eal_argc, char *argv[])
{
    return eal_argc == 2 && (!strcmp(argv[1], "-h")
                             || !strcmp(argv[1], "--help"));
}

/* Counts DPDK memory events in 'mem_events', and warns if that is not
 * possible while --grow-mem needs it. */
static void
register_mem_events(void)
{
    if (rte_mem_event_callback_register("vgv_mem_event", mem_event_callback,
                                        NULL)) {
        /* ENOTSUP with --legacy-mem or --no-huge: memory never changes. */
        if (opt.grow_mb) {
            fprintf(stderr, "vhost-guest-verify: memory events are not "
                    "available (%s): --grow-mem cannot change the memory "
                    "table\n", rte_strerror(rte_errno));
        }
    }
}

/* Initializes the EAL with the 'argc' arguments in 'argv', then the signal
 * handlers, 'hz' and the memory event counting.  Returns false, after
 * saying why on stderr, if the EAL fails to initialize. */
static bool
init_eal(int argc, char *argv[])
{
    /* DPDK logs to stdout by default; stdout is reserved for results.  A
     * vhost-user backend that goes away must not kill us with SIGPIPE. */
    rte_openlog_stream(stderr);
    signal(SIGPIPE, SIG_IGN);

    if (rte_eal_init(argc, argv) < 0) {
        fprintf(stderr, "vhost-guest-verify: EAL initialization failed: "
                "%s\n", rte_strerror(rte_errno));
        return false;
    }
    signal(SIGINT, signal_handler);
    signal(SIGTERM, signal_handler);
    hz = rte_get_tsc_hz();
    register_mem_events();
    return true;
}

/* Fills 'ports' with the distinct ports in use. */
static void
choose_ports(void)
{
    ports[n_ports++] = opt.tx_port;
    if (opt.rx_port != opt.tx_port) {
        ports[n_ports++] = opt.rx_port;
    }
}

/* Returns the number of sequence numbers per flow, a multiple of 64: enough
 * for --count, within VGV_MAX_SEQ per flow and VGV_MAX_SEQ_TOTAL in all. */
static uint64_t
flow_seq_space(void)
{
    uint64_t n = RTE_MIN(VGV_MAX_SEQ, VGV_MAX_SEQ_TOTAL / opt.flows);

    if (opt.count) {
        n = RTE_MIN(n, (opt.count + opt.flows - 1) / opt.flows);
    }
    return RTE_ALIGN_CEIL(n, 64);
}

/* Initializes direction number 'id' in 'd' and maps its sequence bitmaps
 * and send time marks.  Returns false, after saying why on stderr, if a
 * mapping fails. */
static bool
init_direction(struct direction *d, unsigned int id)
{
    d->id = id;
    d->tx_port = id ? opt.rx_port : opt.tx_port;
    d->rx_port = id ? opt.tx_port : opt.rx_port;
    d->src_mac = id ? opt.dst_mac : opt.src_mac;
    d->dst_mac = id ? opt.src_mac : opt.dst_mac;
    d->flows = flow_states[id];
    d->bitmap_size = max_seq / 64 * sizeof(uint64_t) * opt.flows;
    d->bitmap = mmap(NULL, d->bitmap_size, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (d->bitmap == MAP_FAILED) {
        fprintf(stderr, "vhost-guest-verify: cannot map %zu bytes for "
                "the sequence bitmaps: %s\n", d->bitmap_size,
                rte_strerror(errno));
        d->bitmap = NULL;
        return false;
    }
    for (uint32_t j = 0; j < opt.flows; j++) {
        d->flows[j].seen = d->bitmap + j * (max_seq / 64);
    }
    d->marks = mmap(NULL, VGV_MAX_MARKS * sizeof *d->marks,
                    PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (d->marks == MAP_FAILED) {
        fprintf(stderr, "vhost-guest-verify: cannot map the send time "
                "marks: %s\n", rte_strerror(errno));
        d->marks = NULL;
        return false;
    }
    return true;
}

/* Sets up the directions of traffic.  Returns false, after saying why on
 * stderr, on failure. */
static bool
setup_directions(void)
{
    n_dirs = opt.bidir ? 2 : 1;
    max_seq = flow_seq_space();
    for (unsigned int i = 0; i < n_dirs; i++) {
        if (!init_direction(&dirs[i], i)) {
            return false;
        }
    }
    return true;
}

/* Creates the mbuf pool 'pool'.  Returns false, after saying why on stderr,
 * on failure. */
static bool
create_pool(void)
{
    pool = rte_pktmbuf_pool_create("vgv_pool", VGV_NB_MBUFS, VGV_MBUF_CACHE,
                                   0, RTE_MBUF_DEFAULT_BUF_SIZE,
                                   rte_socket_id());
    if (!pool) {
        fprintf(stderr, "vhost-guest-verify: cannot create mbuf pool: %s\n",
                rte_strerror(rte_errno));
        return false;
    }
    return true;
}

/* Sets up and starts the ports in order, stopping at the first failure.
 * Stores the number of ports started into '*n_started'.  Returns true if
 * all of them started. */
static bool
start_ports(unsigned int *n_started)
{
    unsigned int n;

    for (n = 0; n < n_ports; n++) {
        if (port_setup(ports[n])) {
            break;
        }
    }
    *n_started = n;
    return n == n_ports;
}

/* Reports on stderr the ports whose link is not up. */
static void
report_links_down(void)
{
    for (unsigned int i = 0; i < n_ports; i++) {
        if (!link_up[ports[i]]) {
            fprintf(stderr, "vhost-guest-verify: error: port %"PRIu16
                    " link not up after %.1f s%s\n", ports[i],
                    opt.wait_link, n_signals ? " (interrupted)" : "");
        }
    }
}

/* Reports on stderr the directions in which no warm-up probe came back. */
static void
report_probes_lost(void)
{
    for (unsigned int i = 0; i < n_dirs; i++) {
        if (!dirs[i].probes_rx) {
            fprintf(stderr, "vhost-guest-verify: error: no probe "
                    "sent on port %"PRIu16" came back on port "
                    "%"PRIu16" within %.1f s%s\n", dirs[i].tx_port,
                    dirs[i].rx_port, opt.wait_link,
                    n_signals ? " (interrupted)" : "");
        }
    }
}

/* Waits, for --wait-link seconds at most, until every link is up and,
 * unless --no-warmup, until the switch forwards in every direction.
 * Returns false, after saying why on stderr, if that does not happen. */
static bool
wait_ready(void)
{
    uint64_t deadline = rte_get_tsc_cycles() + opt.wait_link * hz;

    if (!wait_links(deadline)) {
        report_links_down();
        return false;
    }
    if (!opt.no_warmup) {
        fprintf(stderr, "vhost-guest-verify: warming up\n");
        if (!warmup(deadline)) {
            report_probes_lost();
            return false;
        }
    }
    return true;
}

/* Stops the --grow-mem thread, if it was started, and waits for it. */
static void
stop_grow_thread(void)
{
    if (grow_started) {
        __atomic_store_n(&grow_stop, true, __ATOMIC_RELEASE);
        pthread_join(grow_thread, NULL);
    }
}

/* Prints the statistics of each port on stderr. */
static void
print_port_stats(void)
{
    for (unsigned int i = 0; i < n_ports; i++) {
        struct rte_eth_stats st;

        if (!rte_eth_stats_get(ports[i], &st)) {
            fprintf(stderr, "vhost-guest-verify: port %"PRIu16": ipackets="
                    "%"PRIu64" opackets=%"PRIu64" imissed=%"PRIu64" ierrors="
                    "%"PRIu64" oerrors=%"PRIu64" rx_nombuf=%"PRIu64"\n",
                    ports[i], st.ipackets, st.opackets, st.imissed,
                    st.ierrors, st.oerrors, st.rx_nombuf);
        }
    }
}

/* Prints the result line on stdout and into --stats-file, then the port
 * statistics and the number of discarded frames on stderr. */
static void
report_result(void)
{
    char line[512];

    format_result(line, sizeof line, rte_get_tsc_cycles());
    printf("%s\n", line);
    fflush(stdout);
    write_stats_file(line);
    print_port_stats();
    if (discarded) {
        fprintf(stderr, "vhost-guest-verify: discarded %"PRIu64" frames "
                "received before the traffic started\n", discarded);
    }
}

/* Returns the exit status of a completed run: 1 if a frame was lost,
 * reordered, duplicated or corrupted or if --grow-mem failed, else 0. */
static int
exit_status(void)
{
    int ret = corrupted || grow_failed ? 1 : 0;

    for (unsigned int i = 0; i < n_dirs; i++) {
        const struct direction *d = &dirs[i];

        if (d->sent != d->received || d->reordered || d->duplicated) {
            ret = 1;
        }
    }
    return ret;
}

/* Keeps receiving and dropping on every port until a signal comes, for
 * --linger. */
static void
linger(void)
{
    struct rte_mbuf *pkts[VGV_RX_BURST];

    fprintf(stderr, "vhost-guest-verify: lingering until signalled\n");
    while (!n_signals) {
        for (unsigned int i = 0; i < n_ports; i++) {
            uint16_t n = rte_eth_rx_burst(ports[i], 0, pkts, VGV_RX_BURST);

            rte_pktmbuf_free_bulk(pkts, n);
        }
        usleep(1000);
    }
}

/* Stops the first 'n_started' ports, then closes all of them. */
static void
close_ports(unsigned int n_started)
{
    for (unsigned int i = 0; i < n_started; i++) {
        int err = rte_eth_dev_stop(ports[i]);

        if (err) {
            fprintf(stderr, "vhost-guest-verify: port %"PRIu16": stop "
                    "failed: %s\n", ports[i], rte_strerror(-err));
        }
    }
    for (unsigned int i = 0; i < n_ports; i++) {
        if (lsc_intr[ports[i]]) {
            rte_eth_dev_callback_unregister(ports[i],
                                            RTE_ETH_EVENT_INTR_LSC,
                                            lsc_callback, NULL);
        }
        rte_eth_dev_close(ports[i]);
    }
}

/* Frees 'pool', if it exists, warning about mbufs still in use. */
static void
free_pool(void)
{
    if (pool) {
        unsigned int in_use = rte_mempool_in_use_count(pool);

        if (in_use) {
            fprintf(stderr, "vhost-guest-verify: warning: %u mbufs still "
                    "in use at exit\n", in_use);
        }
        rte_mempool_free(pool);
    }
}

/* Unmaps the sequence bitmaps and send time marks of the directions. */
static void
unmap_directions(void)
{
    for (unsigned int i = 0; i < n_dirs; i++) {
        if (dirs[i].bitmap) {
            munmap(dirs[i].bitmap, dirs[i].bitmap_size);
        }
        if (dirs[i].marks) {
            munmap(dirs[i].marks, VGV_MAX_MARKS * sizeof *dirs[i].marks);
        }
    }
}

int
main(int argc, char *argv[])
{
    char *app_argv[argc + 1];
    unsigned int n_started = 0;
    int app_argc, eal_argc;
    int err, ret = 2;

    eal_argc = split_command_line(argc, argv, app_argv, &app_argc);
    if (eal_help_requested(eal_argc, argv)) {
        usage();
        return 0;
    }
    err = parse_options(app_argc, app_argv);
    if (err) {
        return err > 0 ? 0 : 2;
    }
    if (!init_eal(eal_argc, argv)) {
        return 2;
    }

    choose_ports();
    if (!setup_directions() || !create_pool()) {
        goto out_eal;
    }
    if (!start_ports(&n_started) || !wait_ready()) {
        goto out_ports;
    }

    fprintf(stderr, "vhost-guest-verify: sending\n");
    run();
    stop_grow_thread();
    report_result();
    ret = exit_status();
    if (opt.linger) {
        linger();
    }

out_ports:
    close_ports(n_started);
    free_pool();
out_eal:
    unmap_directions();
    rte_eal_cleanup();
    return ret;
}
