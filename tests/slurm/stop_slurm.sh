#!/usr/bin/env bash
# Stop the one-node SLURM cluster that tests/slurm/start_slurm.sh started.
#
# Cancels every job left in the queue, then stops slurmd, slurmctld and munged by the pids in their pid
# files (never by process name). Packages and configuration stay, so start_slurm.sh restarts quickly.
set -uo pipefail

RUN_DIR=/run/slurm
log() { echo "[stop_slurm] $*" >&2; }

stop_pidfile() {  # name pidfile
    local name="$1" pidfile="$2" pid
    if [ -s "$pidfile" ] && pid="$(cat "$pidfile")" && kill -0 "$pid" 2>/dev/null; then
        log "stopping $name (pid $pid)"
        kill -TERM "$pid"
        for _ in $(seq 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
        if kill -0 "$pid" 2>/dev/null; then log "$name did not stop; sending KILL"; kill -KILL "$pid"; fi
    else
        log "$name is not running"
    fi
    rm -f "$pidfile"
}

if command -v scancel >/dev/null 2>&1 && timeout 5 sinfo -h >/dev/null 2>&1; then
    log "cancelling all jobs"
    scancel --full --user=root 2>/dev/null || true
    [ "$(id -u)" -eq 0 ] && timeout 10 squeue -h -o %i | xargs -r scancel 2>/dev/null || true
fi
stop_pidfile slurmd "$RUN_DIR/slurmd.pid"
stop_pidfile slurmctld "$RUN_DIR/slurmctld.pid"
if [ "${STOP_MUNGE:-1}" = 1 ]; then
    stop_pidfile munged /run/munge/munged.pid
fi
