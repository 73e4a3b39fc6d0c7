#!/usr/bin/env bash
# A single-host Slurm cluster for fabrik's tests, from Debian's packages, as root, no systemd:
# munge, MariaDB + slurmdbd (so sacct works), slurmctld, and NODES slurmd on localhost (one
# per virtual node, on its own port) with GPUS fake GPUs each (character devices, so jobs get
# CUDA_VISIBLE_DEVICES), two leaf switches in topology.conf.
#
#   .ci/slurm.sh start|stop|status        env: FABRIK_SLURM_NODES (3), FABRIK_SLURM_GPUS (4),
#     FABRIK_SLURM_BF_INTERVAL (2), FABRIK_SLURM_PRIORITY (basic | multifactor: age, Fair Tree
#     fair-share and job size, with GPUs billed, for tools/twin-vs-slurm.py)
#
# Everything lives under /var/lib/fabrik-ci-slurm and /run/fabrik-ci-slurm; pids are kept there
# and `stop` ends only what `start` began. The tests find the cluster through `scontrol ping`.
set -euo pipefail

NODES=${FABRIK_SLURM_NODES:-3}
GPUS=${FABRIK_SLURM_GPUS:-4}
CPUS=$(( GPUS > 4 ? GPUS : 4 ))
PRIORITY=${FABRIK_SLURM_PRIORITY:-basic}
ROOT=/var/lib/fabrik-ci-slurm
RUN=/run/fabrik-ci-slurm
LOGS=$ROOT/log
T0=$(date +%s)

say() { echo "[slurm $(( $(date +%s) - T0 ))s] $*"; }

# A process that ended may linger as a zombie here (pid 1 does not always reap): gone is gone.
running() { [ -r "/proc/$1/stat" ] && ! awk '{exit $3 != "Z"}' "/proc/$1/stat"; }

stop_pidfile() {
  local f=$1 pid
  [ -s "$f" ] || return 0
  pid=$(cat "$f"); rm -f "$f"
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 50); do running "$pid" || return 0; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
}

retry() { # retry SECONDS WHAT COMMAND...
  local secs=$1 what=$2; shift 2
  local end=$(( $(date +%s) + secs ))
  until "$@" >/dev/null 2>&1; do
    if [ "$(date +%s)" -ge "$end" ]; then echo "slurm: $what did not come up in ${secs}s" >&2; tail -20 "$LOGS"/*.log >&2 || true; return 1; fi
    sleep 0.2
  done
}

stop() {
  for f in "$RUN"/slurmd-*.pid; do [ -e "$f" ] && stop_pidfile "$f"; done
  stop_pidfile "$RUN/slurmctld.pid"
  stop_pidfile "$RUN/slurmdbd.pid"
  stop_pidfile "$RUN/mariadbd.pid"
  stop_pidfile "$RUN/munged.pid"
}

install_packages() {
  local want="munge slurmctld slurmd slurm-client slurmdbd mariadb-server" missing=""
  for p in $want; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing="$missing $p"; done
  [ -z "$missing" ] && return 0
  say "installing$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends $missing >/dev/null 2>&1 \
    || { apt-get update -qq && apt-get install -y -qq --no-install-recommends $missing >/dev/null; }
}

write_config() {
  local host; host=$(hostname -s)
  local leaf1 leaf2 half=$(( (NODES + 1) / 2 ))
  cat > /etc/slurm/slurm.conf <<EOF
# fabrik CI cluster (written by .ci/slurm.sh)
ClusterName=fabrikci
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
GresTypes=gpu
SchedulerType=sched/backfill
# backfill every 2 s (Slurm's default is 30 s), so that runs compare with the twin, which
# backfills at every event; tools/twin-vs-slurm.py reports both
SchedulerParameters=bf_interval=${FABRIK_SLURM_BF_INTERVAL:-2}
TopologyPlugin=topology/tree
ReturnToService=2
SlurmctldPort=6817
SlurmdParameters=config_overrides
StateSaveLocation=$ROOT/state
SlurmdSpoolDir=$ROOT/spool/%n
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd-%n.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd-%n.log
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=6819
AccountingStorageTRES=gres/gpu
JobAcctGatherType=jobacct_gather/none
KillWait=5
MinJobAge=600
InactiveLimit=0
Waittime=0
EOF
  if [ "$PRIORITY" = multifactor ]; then
    cat >> /etc/slurm/slurm.conf <<EOF
PriorityType=priority/multifactor
PriorityWeightAge=1000
PriorityWeightFairshare=10000
PriorityWeightJobSize=1000
PriorityMaxAge=0-00:10:00
PriorityDecayHalfLife=0-00:30:00
PriorityCalcPeriod=1
EOF
  fi
  echo "AutoDetect=off" > /etc/slurm/gres.conf
  for n in $(seq 1 "$NODES"); do
    echo "NodeName=node$n NodeHostname=$host NodeAddr=127.0.0.1 Port=$((17100 + n)) CPUs=$CPUS Boards=1 SocketsPerBoard=1 CoresPerSocket=$CPUS ThreadsPerCore=1 RealMemory=2000 Gres=gpu:h100:$GPUS State=UNKNOWN" >> /etc/slurm/slurm.conf
    echo "NodeName=node$n Name=gpu Type=h100 File=$ROOT/dev/gpu[0-$((GPUS - 1))]" >> /etc/slurm/gres.conf
    mkdir -p "$ROOT/spool/node$n"
  done
  # usage (fair-share) billed in GPUs, as fabrik counts it
  echo "PartitionName=gpu Nodes=ALL Default=YES MaxTime=INFINITE State=UP TRESBillingWeights=GRES/gpu=1.0" >> /etc/slurm/slurm.conf
  leaf1="node[1-$half]"; leaf2="node[$((half + 1))-$NODES]"
  { echo "SwitchName=leaf1 Nodes=$leaf1"
    [ "$NODES" -gt "$half" ] && echo "SwitchName=leaf2 Nodes=$leaf2"
    echo "SwitchName=spine Switches=leaf[1-2]"; } > /etc/slurm/topology.conf
  cat > /etc/slurm/slurmdbd.conf <<EOF
AuthType=auth/munge
DbdHost=localhost
DbdPort=6819
SlurmUser=root
LogFile=$LOGS/slurmdbd.log
PidFile=$RUN/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=3306
StorageUser=slurm
StoragePass=fabrik-ci
StorageLoc=fabrik_ci_acct
EOF
  chmod 600 /etc/slurm/slurmdbd.conf
}

start() {
  install_packages
  stop
  mkdir -p "$ROOT/dev" "$RUN" "$LOGS" /etc/slurm
  rm -rf "$ROOT/state" "$ROOT/spool"; mkdir -p "$ROOT/state" "$ROOT/spool"
  rm -f "$LOGS"/*.log
  for i in $(seq 0 $((GPUS - 1))); do [ -c "$ROOT/dev/gpu$i" ] || { rm -f "$ROOT/dev/gpu$i"; mknod "$ROOT/dev/gpu$i" c 1 3; }; done
  write_config

  [ -s /etc/munge/munge.key ] || { mungekey -c -f -k /etc/munge/munge.key; chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key; }
  install -d -o munge -g munge -m 755 /run/munge
  runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid --force
  retry 10 munged sh -c 'munge -n | unmunge'
  cp /run/munge/munged.pid "$RUN/munged.pid"

  install -d -o mysql -g mysql /run/mysqld
  setsid /usr/sbin/mariadbd --user=mysql --bind-address=127.0.0.1 --skip-name-resolve > "$LOGS/mariadb.log" 2>&1 < /dev/null &
  echo $! > "$RUN/mariadbd.pid"
  retry 30 mariadb mariadb -uroot -e 'select 1'
  mariadb -uroot -e "CREATE DATABASE IF NOT EXISTS fabrik_ci_acct;
    CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'fabrik-ci';
    CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'fabrik-ci';
    GRANT ALL ON fabrik_ci_acct.* TO 'slurm'@'localhost'; GRANT ALL ON fabrik_ci_acct.* TO 'slurm'@'127.0.0.1';
    FLUSH PRIVILEGES;"
  slurmdbd
  retry 60 slurmdbd sacctmgr -n list cluster
  sacctmgr -i -Q add cluster fabrikci >/dev/null 2>&1 || true
  for a in research sme industry public; do sacctmgr -i -Q add account "$a" Cluster=fabrikci >/dev/null 2>&1 || true; done
  sacctmgr -i -Q add user root Account=research,sme,industry,public >/dev/null 2>&1 || true
  say "accounting up"

  slurmctld -c -i
  retry 20 slurmctld scontrol ping
  for n in $(seq 1 "$NODES"); do slurmd -N "node$n"; done
  retry 60 "$NODES idle nodes" sh -c "[ \"\$(sinfo -h -t idle -o %D)\" = $NODES ]"
  say "up: $(sinfo -h -o '%P %D %T %G')"
}

case "${1:-start}" in
  start) start ;;
  stop) stop; say "stopped" ;;
  status) scontrol ping && sinfo ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
