#!/usr/bin/env bash
# A real one-node SLURM cluster on this machine (CPU only), for tests/test_slurm.py and for trying
# the SLURM profile (workflow/profiles/slurm) by hand:
#   sudo tests/slurm/start_cluster.sh /tmp/ugpnet-slurm   # then: sinfo; sbatch --wrap hostname
#   sudo tests/slurm/stop_cluster.sh /tmp/ugpnet-slurm
# Installs Debian's slurm-wlm and munge (apt-get, --no-install-recommends) when absent, writes
# /etc/slurm/slurm.conf for one node (this host, its CPUs and memory as `slurmd -C` reports them),
# starts munged (its own key, socket and logs under STATE_DIR), slurmctld and slurmd, and waits
# until `sinfo` shows the node idle. The configuration is at SLURM's default path, as on a real
# node: Snakemake's SLURM jobstep runs each job's command with srun in a clean SLURM_* environment,
# so SLURM_CONF would not reach it. An /etc/slurm/slurm.conf this script did not write is left
# alone (exit 5). Accounting: the job-completion log (JobCompType=jobcomp/filetxt), which
# `sacct -c` reads (no slurmdbd: plain sacct has no data, so Snakemake's executor is told to
# follow jobs with squeue: --slurm-status-command squeue; MinJobAge keeps finished jobs in
# squeue for 10 minutes).
# Exit status: 0 the node is idle; 2 not root; 3 the packages cannot be installed; 4 a daemon
# did not come up (its log tail is printed); 5 a foreign /etc/slurm/slurm.conf.
set -euo pipefail

STATE=${1:-/tmp/ugpnet-slurm}
PARTITION=${UGPNET_SLURM_PARTITION:-debug}
TIMEOUT=${UGPNET_SLURM_TIMEOUT:-60}   # seconds to wait for the node to be idle
CONF=/etc/slurm/slurm.conf
MARK="# written by ugpnet-bench tests/slurm/start_cluster.sh"

say() { echo "start_cluster: $*" >&2; }

if [ "$(id -u)" != 0 ]; then
    say "needs root (it installs packages, writes $CONF and starts daemons)"; exit 2
fi

mkdir -p "$STATE"
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null \
        || ! command -v munged >/dev/null || ! command -v sbatch >/dev/null; then
    say "installing slurm-wlm and munge (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    if ! { apt-get install -y -q --no-install-recommends slurm-wlm munge >"$STATE/apt.log" 2>&1 \
            || { apt-get update -q >>"$STATE/apt.log" 2>&1 \
                 && apt-get install -y -q --no-install-recommends slurm-wlm munge \
                    >>"$STATE/apt.log" 2>&1; }; }; then
        tail -20 "$STATE/apt.log" >&2
        say "apt-get could not install slurm-wlm and munge"; exit 3
    fi
fi

if [ -e "$CONF" ] && ! grep -qF "$MARK" "$CONF"; then
    say "$CONF exists and was not written by this script: not touching a real cluster's setup"
    exit 5
fi

mkdir -p "$STATE"/{spool/ctld,spool/d,log,run,munge,munge-key} /etc/slurm
chmod 755 "$STATE"
# munge: its own key (munge-key/, 0700) and socket, pid file and log (munge/, 0755) under STATE;
# the system's /etc/munge key is never used or changed
chown munge:munge "$STATE/munge" "$STATE/munge-key"
chmod 755 "$STATE/munge"
chmod 700 "$STATE/munge-key"
if [ ! -s "$STATE/munge-key/munge.key" ]; then
    dd if=/dev/urandom of="$STATE/munge-key/munge.key" bs=1 count=128 status=none
    chown munge:munge "$STATE/munge-key/munge.key"
    chmod 400 "$STATE/munge-key/munge.key"
fi
SOCKET="$STATE/munge/munge.socket"

HOST=$(hostname -s)
# the node as slurmd sees it (CPUs, boards, sockets, cores, threads, memory in MB), keeping
# 512 MB of the memory for the system
NODE_LINE=""
for kv in $(slurmd -C | head -1); do
    case $kv in
        NodeName=*) ;;
        RealMemory=*) mem=${kv#RealMemory=}; NODE_LINE+=" RealMemory=$(( mem > 1024 ? mem - 512 : mem ))" ;;
        *) NODE_LINE+=" $kv" ;;
    esac
done

cat >"$CONF" <<CONF
$MARK ($STATE): one node, this host, CPU only
ClusterName=ugpnet-test
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$SOCKET
CredType=cred/munge
StateSaveLocation=$STATE/spool/ctld
SlurmdSpoolDir=$STATE/spool/d
SlurmctldPidFile=$STATE/run/slurmctld.pid
SlurmdPidFile=$STATE/run/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
SlurmctldPort=${UGPNET_SLURMCTLD_PORT:-16817}
SlurmdPort=${UGPNET_SLURMD_PORT:-16818}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
MinJobAge=600
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$STATE/log/jobcomp.txt
NodeName=$HOST NodeAddr=127.0.0.1$NODE_LINE State=UNKNOWN
PartitionName=$PARTITION Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
CONF

fail() {
    say "$1"
    for f in "$STATE"/log/*.log "$STATE"/munge/*.log; do
        [ -f "$f" ] && { echo "== $f" >&2; tail -20 "$f" >&2; }
    done
    exit 4
}

runuser -u munge -- munged --socket="$SOCKET" --key-file="$STATE/munge-key/munge.key" \
    --pid-file="$STATE/munge/munged.pid" --log-file="$STATE/munge/munged.log" \
    --seed-file="$STATE/munge/munged.seed" || fail "munged did not start"
for _ in $(seq 50); do [ -S "$SOCKET" ] && break; sleep 0.1; done
munge -S "$SOCKET" -n | unmunge -S "$SOCKET" >/dev/null || fail "munge does not round-trip"

slurmctld || fail "slurmctld did not start"
slurmd || fail "slurmd did not start"

state=""
for _ in $(seq $(( TIMEOUT * 2 ))); do
    state=$(sinfo -h -N -n "$HOST" -o %T 2>/dev/null || true)
    if [ "$state" = idle ]; then
        say "node $HOST idle in partition $PARTITION"
        sinfo >&2
        exit 0
    fi
    sleep 0.5
done
fail "node $HOST not idle after ${TIMEOUT} s (sinfo: ${state:-no answer})"
