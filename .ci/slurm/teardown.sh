#!/usr/bin/env bash
# Stop the cluster that setup.sh started: cancel every job (and wait until the queue is
# empty), stop the daemons it started (by their recorded pids, never by name), remove
# /etc/slurm/slurm.conf (our symlink) and the state file. Keeps the packages, and the
# logs under $SWIFT_SLURM_DIR/log. With --purge, also apt-get purge the packages that
# setup.sh installed.
set -uo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=.ci/slurm/common.sh
source "$HERE/common.sh"

[[ $(id -u) == 0 ]] || die "run as root"
[[ -d "$DIR/run" ]] || { [[ ${1:-} == --purge ]] || exit 0; }
export SLURM_CONF="$CONF"

# 1. No job left behind: cancel them all, wait (bounded) for the queue to empty.
if pid_of slurmctld >/dev/null && scontrol ping >/dev/null 2>&1; then
  jobs="$(squeue -h -o %i 2>/dev/null | tr '\n' ' ')"
  if [[ -n ${jobs// /} ]]; then
    step "cancelling jobs $jobs"
    # shellcheck disable=SC2086
    scancel $jobs 2>/dev/null || true
    for _ in $(seq 60); do
      [[ -z "$(squeue -h -o %i 2>/dev/null)" ]] && break
      sleep 0.5
    done
    [[ -z "$(squeue -h -o %i 2>/dev/null)" ]] || step "jobs still queued: $(squeue -h -o '%i %T' | tr '\n' ' ')"
  fi
fi

# 2. The daemons, in reverse order of their start: TERM, then KILL after 10 s.
stopped=""
for name in $(echo "$DAEMONS" | tr ' ' '\n' | tac); do
  pid="$(pid_of "$name")" || continue
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 50); do
    [[ -d /proc/$pid ]] || break
    sleep 0.2
  done
  if [[ -d /proc/$pid ]]; then
    step "$name ($pid) did not stop within 10 s: KILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  stopped="$stopped $name"
done
rm -f "$DIR"/run/*.bgpid "$DIR/run/munged.external" "$STATE"
ours_is_linked && rm -f "$SYSTEM_CONF"
[[ -n $stopped ]] && step "stopped:$stopped"

# 3. --purge: the packages that setup.sh installed.
if [[ ${1:-} == --purge && -s "$DIR/packages-installed.txt" ]]; then
  step "apt-get purge $(tr '\n' ' ' <"$DIR/packages-installed.txt")"
  # shellcheck disable=SC2046
  DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq $(cat "$DIR/packages-installed.txt") \
    >/dev/null 2>&1 || step "apt-get purge failed"
  rm -f "$DIR/packages-installed.txt"
fi
exit 0
