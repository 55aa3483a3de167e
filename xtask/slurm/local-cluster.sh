#!/usr/bin/env bash
# A one-node Slurm cluster on 127.0.0.1 for the tests and for trying `--executor slurm` locally.
#
#   eval "$(xtask/slurm/local-cluster.sh start [SLOTS])"   # installs nothing; prints `export SLURM_CONF=...`
#   xtask/slurm/local-cluster.sh stop
#
# Needs Debian's `slurmctld slurmd slurm-client munge` (`install` installs them with apt) and root:
# slurmd runs jobs as their user and slurmctld runs as root (SlurmUser=root). Everything it writes
# (configuration, state, logs) lives in $LT_SLURM_DIR (default /tmp/lt-slurm); /etc is not touched
# apart from the munge key the munge package creates. SLOTS (default 2) is the node's CPU count: a job
# asks for one CPU, so SLOTS jobs run at once.
set -euo pipefail
dir="${LT_SLURM_DIR:-/tmp/lt-slurm}"
conf="$dir/slurm.conf"

stop() {
  for pidfile in "$dir/slurmd.pid" "$dir/slurmctld.pid" "$dir/munged.pid"; do
    if [ -f "$pidfile" ]; then
      kill "$(cat "$pidfile")" 2>/dev/null || true
    fi
  done
  # slurmd/slurmctld remove their pid files; wait for the daemons to be gone so a restart can bind.
  for _ in $(seq 50); do
    pgrep -f "$conf" >/dev/null 2>&1 || break
    sleep 0.1
  done
  rm -f "$dir"/*.pid
}

case "${1:-}" in
install)
  export DEBIAN_FRONTEND=noninteractive
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get install -y -q slurmctld slurmd slurm-client munge >&2
  ;;
start)
  slots="${2:-2}"
  if [ "$(id -u)" -ne 0 ]; then
    echo "local-cluster.sh: run as root (slurmctld and slurmd need it)" >&2
    exit 1
  fi
  for tool in munged slurmctld slurmd sbatch; do
    command -v "$tool" >/dev/null || { echo "local-cluster.sh: $tool is missing; \`$0 install\` installs Debian's slurmctld slurmd slurm-client munge" >&2; exit 1; }
  done
  stop
  mkdir -p "$dir/state" "$dir/spool" "$dir/munge"
  cat >"$conf" <<CONF
ClusterName=lt
SlurmctldHost=localhost(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$dir/munge/munge.socket
CryptoType=crypto/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
SlurmctldPort=16817
SlurmdPort=16818
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MinJobAge=600
KillWait=10
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$slots State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
  munged --force --socket="$dir/munge/munge.socket" --pid-file="$dir/munged.pid" \
    --log-file="$dir/munged.log" --seed-file="$dir/munge/seed"
  slurmctld -f "$conf"
  slurmd -f "$conf"
  export SLURM_CONF="$conf"
  for _ in $(seq 100); do
    if sinfo -h -o %T 2>/dev/null | grep -q idle; then
      echo "export SLURM_CONF=$conf"
      exit 0
    fi
    sleep 0.2
  done
  echo "local-cluster.sh: the node did not come up; logs in $dir" >&2
  sinfo >&2 || true
  tail -5 "$dir/slurmctld.log" "$dir/slurmd.log" >&2 || true
  exit 1
  ;;
stop)
  stop
  ;;
*)
  echo "usage: $0 install | start [SLOTS] | stop" >&2
  exit 2
  ;;
esac
