#!/usr/bin/env bash
# Stops what tests/slurm/start_cluster.sh STATE_DIR started (slurmd, slurmctld, munged), each by
# the process id in its pid file (SIGTERM to all three, then SIGKILL to any still there after 10
# s), and removes the /etc/slurm/slurm.conf that script wrote for STATE_DIR. Leaves STATE_DIR
# (the daemons' logs, the job-completion log).
set -uo pipefail
STATE=${1:-/tmp/ugpnet-slurm}
CONF=/etc/slurm/slurm.conf
MARK="# written by ugpnet-bench tests/slurm/start_cluster.sh"
pids=()
for pidfile in "$STATE/run/slurmd.pid" "$STATE/run/slurmctld.pid" "$STATE/munge/munged.pid"; do
    [ -s "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null && pids+=("$pid")
    rm -f "$pidfile"
done
for pid in "${pids[@]}"; do
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null
done
if [ -f "$CONF" ] && grep -qF "$MARK ($STATE)" "$CONF"; then
    rm -f "$CONF"
fi
echo "stop_cluster: stopped the daemons of $STATE" >&2
