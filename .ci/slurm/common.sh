# Shared by setup.sh and teardown.sh: where things are, and small helpers.
# Every setting can be overridden from the environment.
DIR="${SWIFT_SLURM_DIR:-/var/cache/swift-rules/slurm}"
STATE="${SWIFT_SLURM_STATE:-$DIR/cluster.env}"
CONF="$DIR/etc/slurm.conf"
# Slurm's commands read /etc/slurm/slurm.conf: the jobstep plugin removes SLURM_CONF
# (with every SLURM_* variable) before the srun inside each job, so it must be there.
SYSTEM_CONF="/etc/slurm/slurm.conf"
# CPUs the node offers. Test jobs mostly wait (Python start-up, a Dask worker waiting
# for tasks): offer more than the machine has, as the HTCondor pool does, so that a
# Dask scheduler's workers and Snakemake's jobs do not queue behind each other.
NODE_CPUS="${SWIFT_SLURM_CPUS:-4}"
PACKAGES="slurmctld slurmd slurm-client slurmdbd munge mariadb-server-core mariadb-client-core"
READY_TIMEOUT="${SWIFT_SLURM_READY_TIMEOUT:-60}"
# The daemons, in the order they are started (stopped in reverse): name of the pid file
# under $DIR/run, and the command name that process must have (so that teardown.sh only
# ever signals the processes that setup.sh started).
DAEMONS="munged mariadbd slurmdbd slurmctld slurmd"

step() { echo "[slurm] $*" >&2; }
die() { echo "[slurm] ERROR: $*" >&2; exit 1; }

# wait_for WHAT SECONDS CMD...: run CMD every 0.2 s until it succeeds; fail after SECONDS.
wait_for() {
  local what="$1" limit="$2"; shift 2
  local deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || die "timed out after ${limit} s waiting for $what (logs: $DIR/log)"
    sleep 0.2
  done
}

# pid_of NAME: the recorded pid of daemon NAME, if that process still runs as NAME.
pid_of() {
  local name="$1" pid
  pid="$(cat "$DIR/run/$name.bgpid" 2>/dev/null)" || return 1
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == "$name" ]] || return 1
  echo "$pid"
}

ours_is_linked() { [[ -L "$SYSTEM_CONF" && "$(readlink "$SYSTEM_CONF")" == "$CONF" ]]; }

cluster_running() {
  local name
  [[ -f "$STATE" ]] && ours_is_linked || return 1
  for name in $DAEMONS; do
    pid_of "$name" >/dev/null || [[ $name == munged && -f "$DIR/run/munged.external" ]] || return 1
  done
  [[ -n "$(sinfo -h -n localhost -o %T 2>/dev/null | grep -E '^(idle|mixed|allocated)')" ]]
}
