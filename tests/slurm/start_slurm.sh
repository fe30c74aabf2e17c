#!/usr/bin/env bash
# Start a one-node SLURM cluster on this machine, for testing the profiles/slurm profile.
#
# Installs Debian's slurm-wlm and munge if missing, writes a single-node slurm.conf sized from this
# machine (CPUs and RealMemory as `slurmd -C` reports them), then starts munged, slurmctld and slurmd
# on localhost as root. Idempotent: if `sinfo` already answers, it does nothing.
# There is no accounting database (AccountingStorageType=none), so `sacct` does not work: Snakemake's
# slurm executor must be told to poll with squeue (`--slurm-status-command squeue`, set in the test).
#
# Needs root. Environment knobs (all optional):
#   SLURM_PARTITION   name of the single partition (default: debug)
#   SLURM_FAKE_GPUS=1 advertise one "gpu" GRES backed by /dev/null on a GPU-less machine (default: 0).
#                     Only for checking that a GPU request is *scheduled* (sbatch --gpus=1); nothing
#                     runs on a GPU. Machines with /dev/nvidia* get their real GPUs as GRES instead.
#   SLURM_CONF_DIR    where slurm.conf goes (default: /etc/slurm)
set -euo pipefail

PARTITION="${SLURM_PARTITION:-debug}"
FAKE_GPUS="${SLURM_FAKE_GPUS:-0}"
CONF_DIR="${SLURM_CONF_DIR:-/etc/slurm}"
LOG_DIR=/var/log/slurm
RUN_DIR=/run/slurm

log() { echo "[start_slurm] $*" >&2; }

if command -v sinfo >/dev/null 2>&1 && timeout 10 sinfo -h >/dev/null 2>&1; then
    log "SLURM already answers sinfo; nothing to do."
    sinfo
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    log "must run as root (it installs packages and starts daemons)"; exit 1
fi

# --- 1. packages ---------------------------------------------------------------------------------
if ! command -v slurmctld >/dev/null 2>&1 || ! command -v slurmd >/dev/null 2>&1 \
        || ! command -v munged >/dev/null 2>&1 || ! command -v sinfo >/dev/null 2>&1; then
    log "installing slurm-wlm and munge with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # policy-rc.d 101: keep the packages' init scripts from starting daemons we configure ourselves.
    policy=/usr/sbin/policy-rc.d
    created_policy=0
    if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod +x "$policy"; created_policy=1; fi
    apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
    if [ "$created_policy" = 1 ]; then rm -f "$policy"; fi
fi

# --- 2. munge --------------------------------------------------------------------------------------
if [ ! -s /etc/munge/munge.key ]; then
    log "creating /etc/munge/munge.key"
    if command -v mungekey >/dev/null 2>&1; then
        mungekey --create --force --keyfile=/etc/munge/munge.key
    else
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    fi
fi
chown munge:munge /etc/munge/munge.key
chmod 400 /etc/munge/munge.key
mkdir -p /run/munge /var/log/munge /var/lib/munge
chown munge:munge /run/munge /var/log/munge /var/lib/munge
chmod 755 /run/munge
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    log "starting munged"
    runuser -u munge -- /usr/sbin/munged
    for _ in $(seq 20); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.5; done
fi
munge -n | unmunge >/dev/null || { log "munge does not work"; exit 1; }

# --- 3. slurm.conf ---------------------------------------------------------------------------------
HOST="$(hostname -s)"
# `slurmd -C` prints this node's hardware as slurm.conf wants it: CPUs Boards Sockets Cores Threads RealMemory.
HW="$(slurmd -C | head -n 1)"
CPUS="$(sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' <<<"$HW")"
SOCKETS="$(sed -n 's/.*SocketsPerBoard=\([0-9]*\).*/\1/p' <<<"$HW")"
CORES="$(sed -n 's/.*CoresPerSocket=\([0-9]*\).*/\1/p' <<<"$HW")"
THREADS="$(sed -n 's/.*ThreadsPerCore=\([0-9]*\).*/\1/p' <<<"$HW")"
MEM="$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$HW")"
CPUS="${CPUS:-$(nproc)}"
MEM="${MEM:-$(awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo)}"
# Leave 5 % (at least 256 MB) for the OS and the daemons so the node never drains for "low RealMemory".
RESERVE=$(( MEM / 20 > 256 ? MEM / 20 : 256 ))
MEM=$(( MEM - RESERVE ))
TOPO=""
if [ -n "$SOCKETS" ] && [ -n "$CORES" ] && [ -n "$THREADS" ]; then
    TOPO="Sockets=$SOCKETS CoresPerSocket=$CORES ThreadsPerCore=$THREADS"
fi

GRES_LINE=""
NODE_GRES=""
GPU_DEVS=$(ls /dev/nvidia[0-9]* 2>/dev/null | wc -l || true)
mkdir -p "$CONF_DIR"
rm -f "$CONF_DIR/gres.conf"
if [ "$GPU_DEVS" -gt 0 ]; then
    GRES_LINE="GresTypes=gpu"
    NODE_GRES="Gres=gpu:$GPU_DEVS"
    last=$(( GPU_DEVS - 1 ))
    echo "Name=gpu File=/dev/nvidia[0-$last]" > "$CONF_DIR/gres.conf"
elif [ "$FAKE_GPUS" -gt 0 ]; then
    FAKE_GPUS=1   # one device file per GPU; /dev/null can back only one
    GRES_LINE="GresTypes=gpu"
    NODE_GRES="Gres=gpu:$FAKE_GPUS"
    # slurmd counts a gpu GRES only when it has a device file, so the fake one points at /dev/null.
    echo "Name=gpu File=/dev/null" > "$CONF_DIR/gres.conf"
fi

mkdir -p "$LOG_DIR" "$RUN_DIR" /var/spool/slurmctld /var/spool/slurmd
cat > "$CONF_DIR/slurm.conf" <<EOF
# Single-node test cluster written by tests/slurm/start_slurm.sh; overwritten on every start.
ClusterName=ganmatch-test
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
SlurmctldPidFile=$RUN_DIR/slurmctld.pid
SlurmdPidFile=$RUN_DIR/slurmd.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPort=6817
SlurmdPort=6818
# Fast turnaround for tests: jobs are forgotten quickly, the node is polled often.
MinJobAge=300
KillWait=5
SchedulerParameters=sched_interval=2
$GRES_LINE
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS $TOPO RealMemory=$MEM $NODE_GRES State=UNKNOWN
PartitionName=$PARTITION Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
log "wrote $CONF_DIR/slurm.conf (CPUs=$CPUS RealMemory=$MEM ${NODE_GRES:-no GRES})"

# --- 4. daemons ------------------------------------------------------------------------------------
running() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
if ! running "$RUN_DIR/slurmctld.pid"; then
    log "starting slurmctld"
    slurmctld -i   # -i: ignore state files from an earlier cluster with another configuration
fi
for _ in $(seq 30); do timeout 5 scontrol ping 2>/dev/null | grep -q UP && break; sleep 1; done
if ! running "$RUN_DIR/slurmd.pid"; then
    log "starting slurmd"
    slurmd
fi

# --- 5. wait until the node takes jobs ------------------------------------------------------------
for _ in $(seq 60); do
    state="$(timeout 5 sinfo -h -n "$HOST" -o %T 2>/dev/null || true)"
    case "$state" in
        idle*|mixed*|allocated*) break ;;
        drain*|down*) scontrol update NodeName="$HOST" State=RESUME 2>/dev/null || true ;;
    esac
    sleep 1
done
state="$(timeout 5 sinfo -h -n "$HOST" -o %T 2>/dev/null || true)"
case "$state" in
    idle*|mixed*|allocated*) log "SLURM is up: node $HOST is $state" ; sinfo ;;
    *) log "node $HOST is '$state' (see $LOG_DIR/slurmd.log, $LOG_DIR/slurmctld.log)"; exit 1 ;;
esac
