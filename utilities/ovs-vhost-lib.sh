# Shell functions shared by the vhost harness: the sandbox
# (ovs-vhost-sandbox), the bench (ovs-vhost-bench, through the sandbox),
# ovs-vhost-hugepages and the DPDK system tests
# (tests/system-dpdk-vhost-macros.at, whose macros wrap them).  Source it;
# it runs nothing itself.  POSIX sh, and safe under "set -u".
#
# Every process started here writes its PID to a pidfile and is stopped by
# that PID; nothing is killed by name.

# MiB of free 2 MiB hugepages that a switch and a guest need together.
OVS_VHOST_HUGEPAGES_MIB=1536

# ovs_vhost_wait_for TIMEOUT DESCRIPTION COMMAND...
#
# Runs COMMAND every 0.2 s until it succeeds, for at most TIMEOUT seconds.
# On timeout, says that it timed out waiting for DESCRIPTION and fails.
ovs_vhost_wait_for() {
    local t=$1 what=$2 i
    shift 2
    for i in $(seq $((t * 5))); do
        "$@" && return 0
        sleep 0.2
    done
    echo "$0: timed out waiting for $what" >&2
    return 1
}

# ovs_vhost_pid_gone PIDFILE
#
# Succeeds when PIDFILE does not exist or its process has exited.
ovs_vhost_pid_gone() {
    ! { test -f "$1" && kill -0 "$(cat "$1")" 2>/dev/null; }
}

# ovs_vhost_stop_pid PIDFILE
#
# Stops PIDFILE's process, politely (SIGTERM, 10 s to exit), then by force,
# and removes PIDFILE.
ovs_vhost_stop_pid() {
    local pid
    pid=$(cat "$1" 2>/dev/null) || return 0
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null
        ovs_vhost_wait_for 10 "PID $pid to exit" ovs_vhost_pid_gone "$1" \
            2>/dev/null || kill -9 "$pid" 2>/dev/null
    fi
    rm -f "$1"
}

# ovs_vhost_hugetlbfs_mounted
#
# Succeeds when a hugetlbfs is mounted.
ovs_vhost_hugetlbfs_mounted() {
    grep -q ' hugetlbfs ' /proc/mounts
}

# ovs_vhost_hugepages_free_mib
#
# Prints how many MiB of hugepages are free.
ovs_vhost_hugepages_free_mib() {
    awk '/^HugePages_Free:/ { f = $2 } /^Hugepagesize:/ { s = $2 }
         END { print int(f * s / 1024) }' /proc/meminfo
}

# ovs_vhost_select_memory [no-huge]
#
# Chooses how DPDK gets its memory: 2 MiB hugepages when a hugetlbfs is
# mounted and OVS_VHOST_HUGEPAGES_MIB of them are free, 4 KiB pages
# (--no-huge) otherwise or with "no-huge".  Sets OVS_VHOST_MEM_MODE
# ("hugepages" or "no-huge"), OVS_VHOST_SWITCH_EAL (memory EAL arguments of
# ovs-vswitchd's dpdk-extra), OVS_VHOST_GUEST_MEM (those of a guest) and
# OVS_VHOST_GUEST_EAL (a guest's memory, no PCI probing, IOVA as VA; the
# caller adds its lcores).
ovs_vhost_select_memory() {
    if test "${1:-}" != no-huge && ovs_vhost_hugetlbfs_mounted \
       && test "$(ovs_vhost_hugepages_free_mib)" -ge \
               $OVS_VHOST_HUGEPAGES_MIB; then
        OVS_VHOST_MEM_MODE=hugepages
        OVS_VHOST_SWITCH_EAL="--socket-mem=1024 --iova-mode=va"
        # Without these, a guest has too many memory regions for vhost-user.
        OVS_VHOST_GUEST_MEM="--in-memory --single-file-segments -m 256"
    else
        OVS_VHOST_MEM_MODE=no-huge
        # OVS 3.1's shared mempool does not fit in -m 1024.  OVS would add
        # --in-memory, which --no-huge rejects, without --legacy-mem.
        OVS_VHOST_SWITCH_EAL="--no-huge --legacy-mem -m 2048 --iova-mode=va"
        OVS_VHOST_GUEST_MEM="--no-huge -m 256"
    fi
    OVS_VHOST_GUEST_EAL="$OVS_VHOST_GUEST_MEM --no-pci --iova-mode=va"
}

# ovs_vhost_runtime_dir
#
# Creates a DPDK runtime directory of the caller's own, short enough for
# DPDK's socket paths (at most 108 bytes), and exports it as
# RUNTIME_DIRECTORY.  The caller removes it.
ovs_vhost_runtime_dir() {
    RUNTIME_DIRECTORY=$(mktemp -d /tmp/ovs-dpdk-XXXXXX) || return 1
    export RUNTIME_DIRECTORY
}

# ovs_vhost_bridge BRIDGE SOCKDIR [SETTING...]
#
# Adds netdev bridge BRIDGE with two vhost-user-client ports, vhu0 and vhu1
# (OpenFlow ports 1 and 2, servers SOCKDIR/vhu0.sock and SOCKDIR/vhu1.sock,
# more Interface SETTINGs such as mtu_request=9000), and replaces its flows
# by two that cross-connect them.
ovs_vhost_bridge() {
    local br=$1 sockdir=$2 i
    shift 2
    ovs-vsctl add-br "$br" -- set bridge "$br" datapath_type=netdev \
        || return 1
    for i in 0 1; do
        ovs-vsctl add-port "$br" vhu$i -- set Interface vhu$i \
            type=dpdkvhostuserclient \
            options:vhost-server-path="$sockdir/vhu$i.sock" \
            ofport_request=$((i + 1)) "$@" || return 1
    done
    ovs-ofctl del-flows "$br" \
        && ovs-ofctl add-flow "$br" in_port=1,actions=output:2 \
        && ovs-ofctl add-flow "$br" in_port=2,actions=output:1
}

# ovs_vhost_vrings_enabled LOG N [SOCKET] [LINE]
#
# Succeeds when ovs-vswitchd log LOG, from line LINE on (default 1), shows
# that N vrings were enabled, of the vhost device with socket path SOCKET
# if given.
ovs_vhost_vrings_enabled() {
    test "$(tail -n +"${4:-1}" "$1" \
            | grep -c "of vhost device '${3:-.*}' changed to 'enabled'")" \
         -ge "$2"
}

# ovs_vhost_port_stat PORT STAT
#
# Prints Interface PORT's statistics column entry STAT, or -1000000000 if
# the column lacks it (OVS reports a vhost port's statistics only while its
# device runs), so that comparisons fail rather than shell arithmetic.
ovs_vhost_port_stat() {
    ovs-vsctl get Interface "$1" statistics:"$2" 2>/dev/null | tr -d '"' \
        | grep . || echo -1000000000
}

# ovs_vhost_guest_start PREFIX EAL-ARG... -- APP-ARG...
#
# Starts dpdk-testpmd in the background as an interactive guest that reads
# its commands from the FIFO PREFIX.in, held open by a "sleep" whose PID
# goes to PREFIX-in.pid.  Its output goes to PREFIX.log, its PID to
# PREFIX.pid; its EAL file prefix is PREFIX's last component.  The
# arguments are testpmd's, to which this adds the file prefix and, after
# "--", "-i --total-num-mbufs=16384".  ovs_vhost_guest_ready tells when it
# reads commands.
ovs_vhost_guest_start() {
    local prefix=$1 arg seen=no
    shift
    for arg; do
        shift
        set -- "$@" "$arg"
        if test "$arg" = -- && test $seen = no; then
            set -- "$@" -i --total-num-mbufs=16384
            seen=yes
        fi
    done
    rm -f "$prefix.in" && mkfifo "$prefix.in" || return 1
    stdbuf -o0 dpdk-testpmd --file-prefix="${prefix##*/}" "$@" \
        < "$prefix.in" > "$prefix.log" 2>&1 &
    echo $! > "$prefix.pid"
    sleep 86400 > "$prefix.in" 2>/dev/null < /dev/null &
    echo $! > "$prefix-in.pid"
}

# ovs_vhost_guest_ready PREFIX
#
# Succeeds once guest PREFIX has shown its first prompt.
ovs_vhost_guest_ready() {
    grep -q '^testpmd> ' "$1.log"
}

# ovs_vhost_log_grows FILE REGEX N
#
# Succeeds when more than N lines of FILE match REGEX.
ovs_vhost_log_grows() {
    test "$(grep -c -- "$2" "$1")" -gt "$3"
}

# ovs_vhost_guest_cmd PREFIX COMMAND [REGEX]
#
# Sends COMMAND to guest PREFIX, then waits (OVS_CTL_TIMEOUT seconds at
# most, default 30) until its log shows one more line matching REGEX than
# before (default: one more prompt).
ovs_vhost_guest_cmd() {
    local re=${3:-'^testpmd> '} n
    n=$(grep -c -- "$re" "$1.log")
    echo "$2" > "$1.in"
    ovs_vhost_wait_for "${OVS_CTL_TIMEOUT:-30}" "guest command '$2'" \
        ovs_vhost_log_grows "$1.log" "$re" "$n"
}

# ovs_vhost_guest_stop PREFIX [TIMEOUT]
#
# Stops the FIFO's "sleep" (its pidfile stays): testpmd quits at the end of
# its input.  Waits for guest PREFIX to exit, TIMEOUT seconds at most
# (default OVS_CTL_TIMEOUT or 30), and fails if it does not.
ovs_vhost_guest_stop() {
    local pid
    pid=$(cat "$1-in.pid" 2>/dev/null) && kill "$pid" 2>/dev/null
    ovs_vhost_wait_for "${2:-${OVS_CTL_TIMEOUT:-30}}" "guest $1 to exit" \
        ovs_vhost_pid_gone "$1.pid"
}
