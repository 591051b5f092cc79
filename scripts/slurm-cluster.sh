#!/usr/bin/env bash
# slurm-cluster.sh: a real one-node Slurm cluster on this machine, for tests and benchmarks.
#
# Usage: scripts/slurm-cluster.sh {install|start|stop|status|env|stop-ctld|start-ctld}
#
#   install  apt-get install munge, slurmctld, slurmd and slurm-client (Debian's slurm-wlm
#            22.05), quietly; does nothing when the binaries are already there. Needs root.
#   start    start munged, slurmctld and slurmd as root without systemd, with every file
#            (slurm.conf, munge key and socket, spool, state, logs, PID files) under the state
#            directory, and wait until `sinfo` shows the node idle (error after
#            $COVMOCKS_SLURM_TIMEOUT seconds, default 60). Safe to call again: daemons already
#            running are left alone, missing ones are started.
#   stop     scancel every job still in the queue, kill the daemons by their PID files (TERM,
#            then KILL) and remove the PID files; the state directory stays for the logs.
#   status   say which daemons run and show `sinfo`; exit 0 only when the node is usable.
#   env      print `export SLURM_CONF=...` for `eval "$(scripts/slurm-cluster.sh env)"`.
#   stop-ctld   stop slurmctld only (TERM: it saves its state first), leaving munged, slurmd
#               and the running jobs alone: a controller outage, for fault tests.
#   start-ctld  start slurmctld again WITHOUT -c/-i, so it recovers the saved job state and
#               running jobs carry on; wait until it answers `sinfo` (same timeout as start).
#
# State directory: $COVMOCKS_SLURM_DIR, default /tmp/covmocks-slurm. Layout:
#   slurm.conf                  written by a cold `start` (not while slurmctld runs)
#   munge/                      munge.key (0600, made once), munge.socket.2, munged.{pid,log,seed}
#   spool/ctld, spool/d         StateSaveLocation and SlurmdSpoolDir
#   log/                        slurmctld.log, slurmd.log
#   run/                        slurmctld.pid, slurmd.pid
# Ports: $COVMOCKS_SLURMCTLD_PORT (6817) and $COVMOCKS_SLURMD_PORT (6818); MpiDefault:
# $COVMOCKS_SLURM_MPI_DEFAULT (pmi2); MessageTimeout: $COVMOCKS_SLURM_MESSAGE_TIMEOUT (5).
#
# The cluster: ClusterName=covmocks, one node `localhost` (NodeAddr=127.0.0.1, slurmd started
# with -N localhost, so the machine's own hostname does not matter) with the CPUs of `nproc`
# and RealMemory 90 % of MemTotal, one partition `debug` (Default, MaxTime=INFINITE),
# select/cons_tres with CR_Core_Memory and DefMemPerCPU = RealMemory / CPUs (Slurm's default
# gives a job that asks for no memory the whole node's memory, so one-CPU jobs could not share
# the node), accounting off, proctrack/linuxproc, task/none, MpiDefault=pmi2, SlurmUser=root,
# and a munged of its own on its own socket (AuthInfo=socket=...), so no system munged is
# needed. slurmctld starts with -c (no job state from an earlier cluster).
#
# What broke on the way (Debian 12, slurm-wlm 22.05.8, munge 0.5.15, a VM without systemd):
#   - Any Slurm command without SLURM_CONF reads /etc/slurm/slurm.conf, then tries DNS SRV
#     records ("fetch_config: DNS SRV lookup failed"): export SLURM_CONF (`env` prints it).
#   - munged refuses a socket directory that is not executable by all ("Socket is
#     inaccessible: execute permissions for all required"): munge/ is 0755, the key 0600.
#   - proctrack/cgroup: the node comes up idle, but every job step fails ("cgroup namespace
#     'freezer' not mounted", srun: "task 0 launch failed: Plugin initialization failed"):
#     hence proctrack/linuxproc and task/none, and no cgroup.conf.
#   - PID 1 here reaps orphans slowly: a killed daemon stays a zombie for seconds, so
#     `kill -0` calls it alive. Liveness reads /proc/PID/stat (name and state, not Z).
#   - `sinfo` against a dead slurmctld waits MessageTimeout before failing.
#   - With MpiDefault=none, `srun -n2 python -c 'from mpi4py import MPI'` starts two
#     singleton ranks (size 1 each, no error): MPICH (the PyPI wheel, 5.0.2) finds its ranks only
#     through PMI2. So MpiDefault=pmi2 (as on Perlmutter, srun needs no --mpi option);
#     $COVMOCKS_SLURM_MPI_DEFAULT=none restores Slurm's default.
#   - Harmless log noise: "mpi/pmix_v4: can not load PMIx library" (no libpmix; pmix unused).
#   - With slurmctld down (stop-ctld), client commands wait for it before failing: with
#     MessageTimeout=10, sbatch, scancel and plain squeue 9 s, `squeue --job ID` (what Parsl
#     polls with) 18 s. Hence MessageTimeout=$COVMOCKS_SLURM_MESSAGE_TIMEOUT, default 5: then
#     4 s and 8 s (sinfo 4 s). Running jobs and their steps carry on under slurmd. After
#     start-ctld the node reads "unknown" until its slurmd registers again (about a second);
#     the recovered jobs keep running.
set -euo pipefail

STATE_DIR="${COVMOCKS_SLURM_DIR:-/tmp/covmocks-slurm}"
CONF="$STATE_DIR/slurm.conf"
MUNGE_DIR="$STATE_DIR/munge"
MUNGE_SOCKET="$MUNGE_DIR/munge.socket.2"
RUN_DIR="$STATE_DIR/run"
LOG_DIR="$STATE_DIR/log"
SPOOL_DIR="$STATE_DIR/spool"
TIMEOUT="${COVMOCKS_SLURM_TIMEOUT:-60}"
# Slurm's MessageTimeout: a client retries connecting to slurmctld once a second for this
# many seconds before it fails, so it is also how long a controller outage goes unnoticed.
# Slurm's default, 10, made every command against a stopped slurmctld wait 9 to 18 s; on
# localhost an answer takes milliseconds.
MESSAGE_TIMEOUT="${COVMOCKS_SLURM_MESSAGE_TIMEOUT:-5}"
NODE=localhost

log() { echo "slurm-cluster: $*" >&2; }
die() {
    log "error: $*"
    exit 1
}

proc_running() { # pid name: true if pid is a live (not zombie) process called name
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    # "PID (COMM) STATE ...": a stale PID file may name a PID reused by another program, and
    # a killed daemon can stay a zombie for seconds when PID 1 is slow to reap (it was here).
    [[ "$stat" == "$1 ($2) "* && "${stat#* ("$2") }" != Z* ]]
}

pid_alive() { # pidfile name: true if the PID in pidfile is a live process called name
    [[ -s "$1" ]] && proc_running "$(cat "$1")" "$2"
}

need_root() {
    [[ $(id -u) -eq 0 ]] || die "must run as root (the daemons run as SlurmUser=root)"
}

cmd_install() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null &&
        command -v sbatch >/dev/null && command -v munged >/dev/null; then
        log "slurm and munge already installed ($(sinfo -V 2>/dev/null || echo unknown version))"
        return 0
    fi
    need_root
    command -v apt-get >/dev/null || die "apt-get not found: install slurm-wlm and munge by hand"
    export DEBIAN_FRONTEND=noninteractive
    log "installing munge slurmctld slurmd slurm-client with apt-get"
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends munge slurmctld slurmd slurm-client >/dev/null
    # The package scripts may start a system munged through invoke-rc.d; ours is separate.
    log "installed $(sinfo -V)"
}

write_conf() {
    local cpus mem_kb real_mem def_mem
    cpus=$(nproc)
    mem_kb=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)
    real_mem=$((mem_kb * 90 / 100 / 1024))
    def_mem=$((real_mem / cpus))
    cat >"$CONF" <<EOF
# Written by scripts/slurm-cluster.sh start; regenerated on each cold start.
ClusterName=covmocks
SlurmctldHost=localhost(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MUNGE_SOCKET
SlurmctldPort=${COVMOCKS_SLURMCTLD_PORT:-6817}
SlurmdPort=${COVMOCKS_SLURMD_PORT:-6818}
StateSaveLocation=$SPOOL_DIR/ctld
SlurmdSpoolDir=$SPOOL_DIR/d
SlurmctldPidFile=$RUN_DIR/slurmctld.pid
SlurmdPidFile=$RUN_DIR/slurmd.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=${COVMOCKS_SLURM_MPI_DEFAULT:-pmi2}
SwitchType=switch/none
LaunchParameters=use_interactive_step
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=$def_mem
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MailProg=/bin/true
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
MessageTimeout=$MESSAGE_TIMEOUT
InactiveLimit=0
KillWait=5
MinJobAge=300
Waittime=0
NodeName=$NODE NodeAddr=127.0.0.1 NodeHostname=$NODE CPUs=$cpus RealMemory=$real_mem State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
}

start_munged() {
    if pid_alive "$MUNGE_DIR/munged.pid" munged; then
        return 0
    fi
    mkdir -p "$MUNGE_DIR"
    chmod 0755 "$MUNGE_DIR"
    if [[ ! -s "$MUNGE_DIR/munge.key" ]]; then
        mungekey --create --keyfile="$MUNGE_DIR/munge.key" --bits=1024
    fi
    chmod 0600 "$MUNGE_DIR/munge.key"
    rm -f "$MUNGE_SOCKET" "$MUNGE_SOCKET.lock"
    munged --socket="$MUNGE_SOCKET" --key-file="$MUNGE_DIR/munge.key" \
        --log-file="$MUNGE_DIR/munged.log" --pid-file="$MUNGE_DIR/munged.pid" \
        --seed-file="$MUNGE_DIR/munged.seed" ||
        die "munged did not start; see $MUNGE_DIR/munged.log"
    munge --socket="$MUNGE_SOCKET" -n | unmunge --socket="$MUNGE_SOCKET" >/dev/null ||
        die "munge credential round trip failed; see $MUNGE_DIR/munged.log"
}

node_state() {
    SLURM_CONF="$CONF" timeout 10 sinfo --noheader --nodes="$NODE" --format=%T 2>/dev/null |
        head -n 1
}

wait_node_usable() { # resume: "true" also resumes a drained or down node
    # Polls the node's state into NODE_STATE each second for up to TIMEOUT seconds; returns 0
    # once it is usable, 1 after TIMEOUT.
    local resume=$1 waited=0
    NODE_STATE=""
    while ((waited < TIMEOUT)); do
        NODE_STATE=$(node_state)
        case "$NODE_STATE" in
        idle | mixed | allocated | completing) return 0 ;;
        drain* | down* | fail*)
            # ReturnToService=2 revives a DOWN node when slurmd registers; a node left drained
            # by an earlier run needs telling.
            if [[ "$resume" == true ]]; then
                scontrol update nodename="$NODE" state=resume >/dev/null 2>&1 || true
            fi
            ;;
        esac
        sleep 1
        waited=$((waited + 1))
    done
    return 1
}

cmd_start() {
    need_root
    command -v slurmctld >/dev/null || die "slurm-wlm not installed: run $0 install"
    mkdir -p "$STATE_DIR" "$RUN_DIR" "$LOG_DIR" "$SPOOL_DIR/ctld" "$SPOOL_DIR/d"
    chmod 0755 "$STATE_DIR"
    start_munged
    export SLURM_CONF="$CONF"
    if ! pid_alive "$RUN_DIR/slurmctld.pid" slurmctld; then
        if pid_alive "$RUN_DIR/slurmd.pid" slurmd; then
            # A slurmd without its controller: restart it against the fresh configuration.
            stop_daemon slurmd "$RUN_DIR/slurmd.pid"
        fi
        write_conf
        # -i: ignore saved state (a previous cluster's jobs); -c would clear it too.
        slurmctld -f "$CONF" -i -c ||
            die "slurmctld did not start; see $LOG_DIR/slurmctld.log"
    fi
    if ! pid_alive "$RUN_DIR/slurmd.pid" slurmd; then
        slurmd -f "$CONF" -N "$NODE" || die "slurmd did not start; see $LOG_DIR/slurmd.log"
    fi
    if ! wait_node_usable true; then
        log "node $NODE not idle after ${TIMEOUT}s (state: '${NODE_STATE:-no answer}')"
        tail -n 20 "$LOG_DIR/slurmctld.log" "$LOG_DIR/slurmd.log" >&2 || true
        die "cluster did not come up"
    fi
    log "cluster up: node $NODE $NODE_STATE; export SLURM_CONF=$CONF"
}

stop_daemon() { # name pidfile
    local name=$1 pidfile=$2 pid i
    if ! [[ -s "$pidfile" ]]; then
        return 0
    fi
    pid=$(cat "$pidfile")
    if pid_alive "$pidfile" "$name"; then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 100; i++)); do
            proc_running "$pid" "$name" || break
            sleep 0.1
        done
        if proc_running "$pid" "$name"; then
            log "$name (pid $pid) ignored TERM; killing"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$pidfile"
}

cmd_stop() {
    local jobs i
    if pid_alive "$RUN_DIR/slurmctld.pid" slurmctld; then
        # Cancel what still runs, or its slurmstepd and processes (a Parsl pilot's worker
        # pool, say) outlive slurmd.
        jobs=$(SLURM_CONF="$CONF" timeout 15 squeue --noheader --format=%i 2>/dev/null || true)
        if [[ -n "$jobs" ]]; then
            log "cancelling jobs: $(echo "$jobs" | tr '\n' ' ')"
            # shellcheck disable=SC2086
            SLURM_CONF="$CONF" scancel $jobs 2>/dev/null || true
            for ((i = 0; i < 150; i++)); do
                [[ -z "$(SLURM_CONF="$CONF" squeue --noheader --format=%i 2>/dev/null)" ]] &&
                    break
                sleep 0.1
            done
        fi
    fi
    stop_daemon slurmd "$RUN_DIR/slurmd.pid" &
    stop_daemon slurmctld "$RUN_DIR/slurmctld.pid" &
    stop_daemon munged "$MUNGE_DIR/munged.pid" &
    wait
    rm -f "$MUNGE_SOCKET" "$MUNGE_SOCKET.lock"
    log "stopped (logs kept in $LOG_DIR)"
}

cmd_stop_ctld() {
    need_root
    pid_alive "$RUN_DIR/slurmctld.pid" slurmctld || die "slurmctld is not running"
    stop_daemon slurmctld "$RUN_DIR/slurmctld.pid"
    log "slurmctld stopped (slurmd, munged and jobs left running)"
}

cmd_start_ctld() {
    need_root
    [[ -s "$CONF" ]] || die "no $CONF: use start for a cold start"
    pid_alive "$RUN_DIR/slurmd.pid" slurmd || die "slurmd is not running: use start"
    if ! pid_alive "$RUN_DIR/slurmctld.pid" slurmctld; then
        # No -c (clear job state) and no -i: recover the jobs saved by the stopped controller.
        slurmctld -f "$CONF" || die "slurmctld did not start; see $LOG_DIR/slurmctld.log"
    fi
    # The recovered node stays "unknown" until its slurmd registers again (seconds).
    wait_node_usable false ||
        die "node $NODE not usable ${TIMEOUT}s after slurmctld restarted (state: '${NODE_STATE:-no answer}')"
    log "slurmctld up again: node $NODE $NODE_STATE"
}

cmd_status() {
    local ok=0 name pidfile
    for name in munged slurmctld slurmd; do
        case $name in
        munged) pidfile="$MUNGE_DIR/munged.pid" ;;
        *) pidfile="$RUN_DIR/$name.pid" ;;
        esac
        if pid_alive "$pidfile" "$name"; then
            echo "$name: running (pid $(cat "$pidfile"))"
        else
            echo "$name: not running"
            ok=1
        fi
    done
    if ((ok == 0)); then
        SLURM_CONF="$CONF" sinfo || ok=1
        case "$(node_state)" in
        idle | mixed | allocated | completing) ;;
        *) ok=1 ;;
        esac
    fi
    return $ok
}

case "${1:-}" in
install) cmd_install ;;
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
env) echo "export SLURM_CONF=$CONF" ;;
stop-ctld) cmd_stop_ctld ;;
start-ctld) cmd_start_ctld ;;
*)
    echo "usage: $0 {install|start|stop|status|env|stop-ctld|start-ctld}" >&2
    exit 2
    ;;
esac
