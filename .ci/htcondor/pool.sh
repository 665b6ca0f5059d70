#!/usr/bin/env bash
# Use the personal pool that setup.sh started.
#     .ci/htcondor/pool.sh status          # is it up? (exit 0: yes)
#     .ci/htcondor/pool.sh run CMD...      # CMD in the pool's root, as the job user,
#                                          # in the current folder, with the repo's .venv
#                                          # first on PATH (condor_q, snakemake, ...)
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=.ci/htcondor/common.sh
source "$HERE/common.sh"

case "${1:-}" in
  status)
    pool_running || die "no pool is running in $ROOT (start it with .ci/htcondor/setup.sh)"
    chroot "$ROOT" condor_status -af Name Cpus Memory State
    ;;
  run)
    shift
    [[ $# -gt 0 ]] || die "usage: pool.sh run CMD..."
    uid="$(chroot "$ROOT" id -u "$JOB_USER")"
    gid="$(chroot "$ROOT" id -g "$JOB_USER")"
    # The caller's environment, less what belongs to root's session.
    exec chroot --userspec="$uid:$gid" --groups="$gid" "$ROOT" /usr/bin/env \
      -u TMPDIR -u XDG_RUNTIME_DIR -u XDG_CONFIG_HOME -u XDG_CACHE_HOME -u PYTHONUSERBASE \
      -u VIRTUAL_ENV -u PYENV_VERSION -u MAKEFLAGS -u MFLAGS -u MAKELEVEL \
      HOME="/home/$JOB_USER" USER="$JOB_USER" LOGNAME="$JOB_USER" \
      PATH="${SWIFT_HTCONDOR_PATH:-$REPO/.venv/bin}:/usr/bin:/bin:/usr/sbin:/sbin" \
      sh -c 'cd "$1" || exit 1; shift; exec "$@"' sh "$PWD" "$@"
    ;;
  *)
    die "usage: pool.sh status | pool.sh run CMD..."
    ;;
esac
