# Shared by setup.sh, teardown.sh and pool.sh: where things are, and small helpers.
# Every setting can be overridden from the environment.
REPO="${SWIFT_HTCONDOR_REPO:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
CACHE="${SWIFT_HTCONDOR_CACHE:-/var/cache/swift-rules}"
ROOT="${SWIFT_HTCONDOR_ROOT:-$CACHE/htcondor-root}"
# Job folders that the host and the pool see at the same path (tests make theirs here).
SCRATCH="${SWIFT_HTCONDOR_SCRATCH:-$CACHE/scratch}"
STATE="${SWIFT_HTCONDOR_STATE:-$CACHE/pool.env}"
JOB_USER="${SWIFT_HTCONDOR_USER:-swiftjob}"
SUITE="${SWIFT_HTCONDOR_SUITE:-trixie}"
# The mirror of the host's own apt sources (Debian's), unless given.
MIRROR="${SWIFT_HTCONDOR_MIRROR:-$(grep -rhoE '^(URIs:|deb)\s+https?://[^ ]+/debian/?( |$)' \
  /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null | head -n 1 | awk '{print $2}' || true)}"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
# minicondor, and the shared libraries that a Python built on the host (pyenv, or
# Debian's) links against, in their trixie names.
PACKAGES="minicondor ca-certificates libssl3t64 libffi8 libsqlite3-0 libbz2-1.0 liblzma5 libreadline8t64 libncursesw6 libuuid1 zlib1g libgdbm6t64 libexpat1 procps"
# The Python installation the repository's .venv is made from (as `make test` makes it).
PYHOME="${SWIFT_HTCONDOR_PYHOME:-$(${PYTHON:-python3} -c 'import sys; print(sys.base_prefix)')}"
SLOT_TIMEOUT="${SWIFT_HTCONDOR_SLOT_TIMEOUT:-90}"

step() { echo "[htcondor] $*" >&2; }
die() { echo "[htcondor] ERROR: $*" >&2; exit 1; }

# wait_for WHAT SECONDS CMD...: run CMD every second until it succeeds; fail after SECONDS.
wait_for() {
  local what="$1" limit="$2"; shift 2
  local deadline=$((SECONDS + limit))
  until "$@"; do
    ((SECONDS < deadline)) || die "timed out after ${limit} s waiting for $what"
    sleep 1
  done
}

is_mounted() { mountpoint -q "$1" 2>/dev/null; }

mount_kernel_fs() {
  local r="$1"
  is_mounted "$r/proc" || mount -t proc proc "$r/proc"
  is_mounted "$r/dev" || mount --rbind /dev "$r/dev"
  mkdir -p "$r/dev/shm"
  is_mounted "$r/dev/shm" || mount -t tmpfs -o mode=1777 shm "$r/dev/shm"
}

umount_kernel_fs() {
  local r="$1" m
  for m in "$r/dev/shm" "$r/dev" "$r/proc"; do
    is_mounted "$m" && { umount -R "$m" 2>/dev/null || umount -R -l "$m"; }
  done
  return 0
}

# bind_same_path DIR ro|rw: DIR of the host at the same path inside the root.
bind_same_path() {
  local src="$1" mode="$2" dst="$ROOT$1"
  is_mounted "$dst" && return 0
  mkdir -p "$dst"
  mount --bind "$src" "$dst"
  [[ $mode == ro ]] && mount -o remount,bind,ro "$dst"
  return 0
}

# Processes whose root directory is the pool's root (the pool and its jobs).
root_pids() {
  local p target
  target="$(readlink -f "$ROOT")"
  for p in /proc/[0-9]*; do
    [[ "$(readlink "$p/root" 2>/dev/null)" == "$target" ]] && echo "${p#/proc/}"
  done
  return 0
}

pool_running() {
  [[ -f "$ROOT/.swift-rules-root" ]] && is_mounted "$ROOT/proc" \
    && chroot "$ROOT" condor_status -af Name >/dev/null 2>&1
}

write_state() {
  local uid gid
  uid="$(chroot "$ROOT" id -u "$JOB_USER")"
  gid="$(chroot "$ROOT" id -g "$JOB_USER")"
  cat >"$STATE.tmp" <<STATE_EOF
# Written by .ci/htcondor/setup.sh: a personal HTCondor pool is up.
SWIFT_HTCONDOR_ROOT=$ROOT
SWIFT_HTCONDOR_SCRATCH=$SCRATCH
SWIFT_HTCONDOR_USER=$JOB_USER
SWIFT_HTCONDOR_UID=$uid
SWIFT_HTCONDOR_GID=$gid
SWIFT_HTCONDOR_REPO=$REPO
SWIFT_HTCONDOR_PYHOME=$PYHOME
STATE_EOF
  mv "$STATE.tmp" "$STATE"
}
