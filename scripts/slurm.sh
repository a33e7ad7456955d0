#!/usr/bin/env bash
# A real one-node Slurm cluster on this machine, for datmo's tests and demo.
#
#   bash scripts/slurm.sh start    # install (Debian's slurm-wlm, munge) if missing, start
#   bash scripts/slurm.sh stop     # stop the daemons this script started
#   bash scripts/slurm.sh env      # the line that points Slurm's commands at it
#
# Everything lives in $DATMO_SLURM_DIR (default /var/lib/datmo-slurm): slurm.conf,
# gres.conf, state, spool, pid and log files. The system's /etc/slurm is never touched,
# so Slurm's commands find this cluster through SLURM_CONF (see `env`). The daemons bind
# to 127.0.0.1 only (CommunicationParameters=NoInAddrAny). No systemd, no cgroups: the
# script starts munged, slurmctld and slurmd itself. The node has a stand-in GPU
# (File=/dev/null): a --gres=gpu:1 job gets CUDA_VISIBLE_DEVICES=0.
set -euo pipefail

DIR="${DATMO_SLURM_DIR:-/var/lib/datmo-slurm}"
CONF="$DIR/slurm.conf"
HOST="$(hostname -s)"
say() { printf '%s\n' "$*" >&2; }

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

install() {
  local need=()
  command -v slurmctld >/dev/null || need+=(slurmctld)
  command -v slurmd >/dev/null || need+=(slurmd)
  command -v sbatch >/dev/null || need+=(slurm-client)
  command -v munged >/dev/null || need+=(munge)
  [ ${#need[@]} -eq 0 ] && return 0
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    say "please install: ${need[*]} (the Slurm tests need them)"
    return 1
  fi
  say "installing ${need[*]} ..."
  for attempt in 1 2; do
    if apt-get update -qq >/dev/null 2>&1 &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${need[@]}" >/dev/null; then
      return 0
    fi
    [ "$attempt" = 1 ] && sleep 5  # apt's lock may be busy: once more
  done
  say "could not install ${need[*]}"
  return 1
}

configure() {
  mkdir -p "$DIR/state" "$DIR/spool"
  local mem cpus
  cpus="$(nproc)"
  mem="$(awk '/MemTotal/ {print int($2 / 1024 * 0.8)}' /proc/meminfo)"
  cat >"$CONF" <<EOF
# Written by datmo's scripts/slurm.sh: a one-node cluster for tests, on 127.0.0.1 only.
ClusterName=datmo
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
CommunicationParameters=NoInAddrAny
AuthType=auth/munge
# A requeued job waits this long before it starts again (Slurm's default is 120 s).
AuthInfo=cred_expire=10
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
ReturnToService=2
MpiDefault=none
GresTypes=gpu
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem Gres=gpu:1 State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
# For benchmarks: jobs that share the node's CPUs, so twenty can run at once.
PartitionName=shared Nodes=$HOST MaxTime=INFINITE State=UP OverSubscribe=FORCE:16
EOF
  cat >"$DIR/gres.conf" <<EOF
NodeName=$HOST Name=gpu File=/dev/null
EOF
}

start_munge() {
  if pgrep -x munged >/dev/null; then return 0; fi
  [ -f /etc/munge/munge.key ] || {
    mkdir -p /etc/munge
    dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
  }
  chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
  mkdir -p /run/munge /var/lib/munge /var/log/munge
  chown munge:munge /run/munge /var/lib/munge /var/log/munge
  runuser -u munge -- munged --force
}

answers() { SLURM_CONF="$CONF" timeout 5 sinfo -h -o '%T' 2>/dev/null | grep -qE 'idle|mix|alloc'; }

start() {
  install
  local before=""
  [ -f "$CONF" ] && before="$(cat "$CONF")"
  configure
  if [ -n "$before" ] && [ "$before" = "$(cat "$CONF")" ] && answers; then
    say "Slurm answers already ($CONF)"
    return 0
  fi
  if [ -n "$before" ] && [ "$before" != "$(cat "$CONF")" ]; then
    stop  # running with an older configuration of ours: start again with the new one
    sleep 1
  fi
  start_munge
  export SLURM_CONF="$CONF"
  pid_alive "$DIR/slurmctld.pid" || slurmctld -f "$CONF"
  pid_alive "$DIR/slurmd.pid" || slurmd -f "$CONF"
  for _ in $(seq 100); do
    if answers; then
      say "Slurm is up: one node ($HOST), partition debug; export SLURM_CONF=$CONF"
      return 0
    fi
    # A node the controller saw go down (a previous run's) comes back once it answers.
    scontrol update nodename="$HOST" state=resume >/dev/null 2>&1 || true
    sleep 0.2
  done
  say "Slurm did not come up; see $DIR/slurmctld.log and $DIR/slurmd.log"
  return 1
}

stop() {
  for name in slurmd slurmctld; do
    if pid_alive "$DIR/$name.pid"; then
      kill "$(cat "$DIR/$name.pid")" || true
    fi
  done
  say "Slurm stopped (munged left running: other tools may use it)"
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  env) echo "export SLURM_CONF=$CONF" ;;
  *) say "usage: $0 start|stop|env"; exit 2 ;;
esac
