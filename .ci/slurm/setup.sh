#!/usr/bin/env bash
# A one-node Slurm cluster on loopback, for the Slurm tests and for trying the Slurm
# profile and Dask backend by hand: slurmctld, slurmd, slurmdbd with MariaDB (so that
# `sacct`, which snakemake-executor-plugin-slurm asks for job states, works) and munge.
# Idempotent: run it again and it reuses a running cluster.
#
#     sudo .ci/slurm/setup.sh            # then: sinfo, sbatch, squeue, sacct as usual
#     sudo .ci/slurm/teardown.sh         # cancel every job, stop the daemons
#
# Debian 12's packages (Slurm 22.05, munge 0.5, MariaDB 10.11) are installed with apt
# when absent. The daemons run as plain background processes (no systemd, no cgroups),
# as root, with their configuration, state, database and logs under $SWIFT_SLURM_DIR
# (default /var/cache/swift-rules/slurm). Each start begins from an empty state and
# database, so job ids and `sacct` hold this cluster's jobs only. About 3 s (plus
# about 6 s for apt the first time on a machine). Only /etc/slurm/slurm.conf (a
# symlink to our file) and /run/munge are written outside that folder.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=.ci/slurm/common.sh
source "$HERE/common.sh"

[[ $(id -u) == 0 ]] || die "run as root (it installs packages and runs the daemons as root)"

mkdir -p "$DIR"
exec 9>"$DIR/.setup.lock"
flock -w 120 9 || die "another setup.sh has held $DIR/.setup.lock for 2 minutes"

if cluster_running; then
  step "cluster already up: $(sinfo -h -o '%P %D %T %c' | tr '\n' ' ')"
  exit 0
fi

# 1. Packages (when absent).
missing=""
for tool in slurmctld slurmd slurmdbd sbatch sacct munged mariadbd mariadb-install-db; do
  command -v "$tool" >/dev/null || missing="$missing $tool"
done
if [[ -n $missing ]]; then
  step "installing $PACKAGES (missing:$missing)"
  dpkg-query -W -f='${Package}\n' | sort >"$DIR/packages-before.txt"
  # shellcheck disable=SC2086
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $PACKAGES \
      >"$DIR/apt.log" 2>&1; then
    step "apt-get update, then install again"
    # shellcheck disable=SC2086
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends $PACKAGES; } >"$DIR/apt.log" 2>&1 \
      || die "apt-get install failed; see $DIR/apt.log"
  fi
  dpkg-query -W -f='${Package}\n' | sort | comm -13 "$DIR/packages-before.txt" - \
    >"$DIR/packages-installed.txt"
fi
[[ -e $SYSTEM_CONF && ! -L $SYSTEM_CONF ]] \
  && die "$SYSTEM_CONF exists and is not ours: this machine has its own Slurm; not touching it"
if [[ -L $SYSTEM_CONF ]] && ! ours_is_linked; then
  die "$SYSTEM_CONF links to $(readlink "$SYSTEM_CONF"), not to $CONF; not touching it"
fi

# 2. Whatever is left of an earlier start goes; then a fresh state and database.
"$HERE/teardown.sh" >/dev/null 2>&1 9>&- || true
rm -rf "${DIR:?}"/{etc,state,spool,run,mysql,log}
mkdir -p "$DIR"/{etc,state,spool,run,mysql,log}

memory="$(slurmd -C | grep -oE 'RealMemory=[0-9]+' | cut -d= -f2)"
memory=$((memory - 1024))   # leave the machine some memory of its own
cat >"$CONF" <<EOF
# Written by .ci/slurm/setup.sh: a one-node cluster on loopback for swift-rules' tests.
ClusterName=ci
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
# No cgroups here: track job processes through /proc, bind nothing.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# Without it every job gets the node's whole memory, and jobs run one at a time.
DefMemPerCPU=1000
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStorageTRES=gres/gpu
# Keep each job's comment (the Slurm plugin writes the rule there) for sacct.
AccountingStoreFlags=job_comment
# A job past its time limit gets SIGTERM, then SIGKILL 5 s later (default 30 s).
KillWait=5
# The node may offer more CPUs than the machine has (NODE_CPUS, see common.sh).
SlurmdParameters=config_overrides
# One simulated GPU (its "device" is /dev/null): a job that asks for one is given it.
GresTypes=gpu
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$NODE_CPUS Boards=1 SocketsPerBoard=1 CoresPerSocket=$NODE_CPUS ThreadsPerCore=1 RealMemory=$memory Gres=gpu:1 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
# A partition whose time limit (1 minute) no Dask worker's walltime fits: such jobs are
# accepted and pend for ever with the reason PartitionTimeLimit.
PartitionName=short Nodes=localhost MaxTime=1 State=UP
EOF
cat >"$DIR/etc/gres.conf" <<EOF
NodeName=localhost Name=gpu File=/dev/null
EOF
cat >"$DIR/etc/slurmdbd.conf" <<EOF
AuthType=auth/munge
DbdHost=localhost
DbdPort=6819
SlurmUser=root
LogFile=$DIR/log/slurmdbd.log
PidFile=$DIR/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=root
StorageLoc=slurm_acct_db
EOF
chmod 600 "$DIR/etc/slurmdbd.conf"
mkdir -p "$(dirname "$SYSTEM_CONF")"
ln -sfn "$CONF" "$SYSTEM_CONF"
export SLURM_CONF="$CONF"   # the daemons find slurmdbd.conf and gres.conf beside it

# start NAME CMD...: CMD in the background, in its own session (a Ctrl-C sent to the
# caller's process group does not reach it), output to $DIR/log/NAME.out; its pid in
# $DIR/run/NAME.bgpid. CMD must exec the daemon itself, so that the pid is the daemon's.
start() {
  local name="$1"; shift
  setsid "$@" </dev/null >"$DIR/log/$name.out" 2>&1 9>&- &
  echo $! >"$DIR/run/$name.bgpid"
}

# 3. munge (unless one already runs here: then use it, and leave it alone).
if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  step "munged already runs here: using it"
  touch "$DIR/run/munged.external"
else
  if [[ ! -s /etc/munge/munge.key ]]; then
    mungekey --create --keyfile=/etc/munge/munge.key
    chown munge:munge /etc/munge/munge.key && chmod 600 /etc/munge/munge.key
  fi
  install -d -o munge -g munge -m 755 /run/munge
  start munged setpriv --reuid=munge --regid=munge --init-groups /usr/sbin/munged -F
  wait_for munged 20 sh -c 'munge -n | unmunge'
fi

# 4. MariaDB (private data folder, no network: a unix socket only), then slurmdbd.
mariadb-install-db --no-defaults --datadir="$DIR/mysql" --user=root \
  --auth-root-authentication-method=socket --skip-test-db >"$DIR/log/mariadb-install-db.out" 2>&1 \
  || die "mariadb-install-db failed; see $DIR/log/mariadb-install-db.out"
start mariadbd /usr/sbin/mariadbd --no-defaults --datadir="$DIR/mysql" \
  --socket="$DIR/run/mysqld.sock" --skip-networking --user=root \
  --pid-file="$DIR/run/mariadbd.pid" --log-error="$DIR/log/mariadbd.err" \
  --innodb-buffer-pool-size=1G --innodb-lock-wait-timeout=900
wait_for "mariadbd" "$READY_TIMEOUT" mariadb --no-defaults --socket="$DIR/run/mysqld.sock" -e 'select 1'
MYSQL_UNIX_PORT="$DIR/run/mysqld.sock" start slurmdbd /usr/sbin/slurmdbd -D
wait_for "slurmdbd" "$READY_TIMEOUT" sacctmgr -n list cluster

# 5. slurmctld and slurmd; the node becomes idle. (slurmctld registers the cluster `ci`,
# account `root` and user `root` in the database on its own.)
start slurmctld /usr/sbin/slurmctld -D
wait_for "slurmctld" "$READY_TIMEOUT" scontrol ping
start slurmd /usr/sbin/slurmd -D -N localhost
( wait_for "the node to be idle" "$READY_TIMEOUT" \
  sh -c "sinfo -h -n localhost -o %T | grep -qx idle" ) \
  || die "node localhost is $(sinfo -h -n localhost -o '%T: %E')"
wait_for "the account root in the database" "$READY_TIMEOUT" \
  sh -c "sacctmgr -n -P list assoc cluster=ci user=root format=account | grep -qx root"

# 6. A job goes through end to end: a batch job whose step is an srun without any
# SLURM_* variable (as the jobstep plugin runs it), then it is in the accounting.
probe="$(sbatch --parsable --job-name=swift-rules-probe -t 1 -o /dev/null \
  --wrap 'env -u SLURM_CONF srun /bin/true')" || die "sbatch of a test job failed"
wait_for "test job $probe to complete" "$READY_TIMEOUT" \
  sh -c "sacct -n -X -P -j '$probe' -o State | grep -qx COMPLETED"

cat >"$STATE.tmp" <<EOF
# Written by .ci/slurm/setup.sh: a one-node Slurm cluster is up.
SWIFT_SLURM_DIR=$DIR
SLURM_CONF=$CONF
SWIFT_SLURM_PARTITION=debug
SWIFT_SLURM_SHORT_PARTITION=short
SWIFT_SLURM_ACCOUNT=root
SWIFT_SLURM_CPUS=$NODE_CPUS
SWIFT_SLURM_MEMORY_MB=$memory
EOF
mv "$STATE.tmp" "$STATE"
step "cluster ready: $(sinfo -h -o '%P %D %T %c' | tr '\n' ' ')"
step "state: $STATE"
