#!/usr/bin/env bash
# A personal HTCondor pool on loopback, for the HTCondor tests and for trying the
# HTCondor profile and Dask backend by hand. Idempotent: run it again and it reuses
# what is there (the root filesystem, the mounts, a running pool).
#
#     sudo .ci/htcondor/setup.sh            # then: .ci/htcondor/pool.sh status
#     sudo .ci/htcondor/teardown.sh         # stop the pool, unmount
#
# Debian 12 has no HTCondor package, so the pool runs in a Debian 13 (trixie) root
# filesystem made with debootstrap, with minicondor (every role on 127.0.0.1) installed
# in it. The root is cached ($SWIFT_HTCONDOR_ROOT, default
# /var/cache/swift-rules/htcondor-root): about a minute the first time, seconds after.
# This repository, the Python installation its .venv is made from, and a scratch
# folder are bind-mounted into the root at their own paths, so the jobs (run as the
# ordinary user $SWIFT_HTCONDOR_USER: HTCondor refuses jobs from root) see the same
# files and run the same interpreter as the host. Everything that submits (Snakemake
# with the HTCondor executor plugin, dask-jobqueue) runs inside the root as that user:
# .ci/htcondor/pool.sh run CMD... does that.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=.ci/htcondor/common.sh
source "$HERE/common.sh"

[[ $(id -u) == 0 ]] || die "run as root (it makes a root filesystem, mounts and a user)"
for tool in mount chroot; do
  command -v "$tool" >/dev/null || die "'$tool' is missing"
done

mkdir -p "$CACHE"
exec 9>"$CACHE/.setup.lock"
flock -w 300 9 || die "another setup.sh has held $CACHE/.setup.lock for 5 minutes"

# 1. The root filesystem (cached).
build_root() {
  local tmp="$ROOT.partial"
  rm -rf "$tmp"
  local deboot
  if command -v debootstrap >/dev/null; then
    deboot=(debootstrap)
  else
    # debootstrap is a shell script in a Debian package: unpack it, no install needed.
    local dir="$CACHE/debootstrap"
    if [[ ! -x "$dir/usr/sbin/debootstrap" ]]; then
      local dl; dl="$(mktemp -d)"
      if ! (cd "$dl" && apt-get download debootstrap >/dev/null 2>&1); then
        step "apt-get update (to download debootstrap)"
        apt-get update -qq >/dev/null
        (cd "$dl" && apt-get download debootstrap >/dev/null)
      fi
      rm -rf "$dir" && mkdir -p "$dir"
      dpkg-deb -x "$dl"/debootstrap_*.deb "$dir"
      rm -rf "$dl"
    fi
    export DEBOOTSTRAP_DIR="$dir/usr/share/debootstrap"
    deboot=("$dir/usr/sbin/debootstrap")
  fi
  step "debootstrap $SUITE into $tmp (from $MIRROR)"
  "${deboot[@]}" --variant=minbase "$SUITE" "$tmp" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 \
    || die "debootstrap failed; see $CACHE/debootstrap.log (tail: $(tail -n 3 "$CACHE/debootstrap.log"))"
  mount_kernel_fs "$tmp"
  step "apt-get install minicondor (and the libraries of the host's Python) in the root"
  cp /etc/resolv.conf "$tmp/etc/resolv.conf" 2>/dev/null || true
  if ! chroot "$tmp" /usr/bin/env DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 sh -c \
      "apt-get update -qq && apt-get install -y -qq --no-install-recommends $PACKAGES" \
      >"$CACHE/apt.log" 2>&1; then
    umount_kernel_fs "$tmp"
    die "installing minicondor in the root failed; see $CACHE/apt.log"
  fi
  chroot "$tmp" apt-get clean
  umount_kernel_fs "$tmp"
  echo "$SUITE $PACKAGES" >"$tmp/.swift-rules-root"
  mv "$tmp" "$ROOT"
}

if [[ ! -f "$ROOT/.swift-rules-root" ]] || [[ "$(cat "$ROOT/.swift-rules-root")" != "$SUITE $PACKAGES" ]]; then
  if [[ -e "$ROOT" ]]; then
    "$HERE/teardown.sh" >/dev/null 2>&1 || true
    rm -rf --one-file-system "$ROOT"
  fi
  build_root
fi

# 2. Mounts: kernel file systems, then this repository, the Python installation and the
# scratch folder at their own paths.
mount_kernel_fs "$ROOT"
mkdir -p "$SCRATCH"
chmod 1777 "$SCRATCH"
bind_same_path "$REPO" ro
bind_same_path "$PYHOME" ro
bind_same_path "$SCRATCH" rw
chmod 755 "$ROOT/root"   # the Python installation may live under /root (pyenv)

# 3. The job user, /etc/hosts, the pool's settings.
if ! chroot "$ROOT" id -u "$JOB_USER" >/dev/null 2>&1; then
  chroot "$ROOT" useradd --create-home --shell /bin/bash "$JOB_USER"
fi
host="$(hostname)"
grep -qE "^127\.0\.0\.1[[:space:]].*\b$host\b" "$ROOT/etc/hosts" 2>/dev/null \
  || echo "127.0.0.1 $host" >>"$ROOT/etc/hosts"
conf="$ROOT/etc/condor/config.d/99-swift-rules.conf"
changed=0
cmp -s "$HERE/condor_config.local" "$conf" || changed=1
install -m 644 "$HERE/condor_config.local" "$conf"

# 4. Start the pool (unless it runs), wait for its slot.
if ! pool_running; then
  step "starting condor_master"
  chroot "$ROOT" /usr/sbin/condor_master 9>&-   # (not inheriting the lock)
elif ((changed)); then
  step "settings changed: condor_restart"
  chroot "$ROOT" condor_restart -master >/dev/null 9>&-
  sleep 3
fi
wait_for "the pool's slot" "$SLOT_TIMEOUT" \
  sh -c "chroot '$ROOT' condor_status -af Name 2>/dev/null | grep -q slot"

# 5. An IDTOKEN for the job user (the PyPI bindings of the executor plugin cannot use
# FS authentication with these daemons).
tokdir="$ROOT/home/$JOB_USER/.condor/tokens.d"
if [[ ! -s "$tokdir/swift-rules" ]]; then
  mkdir -p "$tokdir"
  domain="$(chroot "$ROOT" condor_config_val UID_DOMAIN)"
  wait_for "condor_token_create" 30 sh -c \
    "chroot '$ROOT' condor_token_create -identity '$JOB_USER@$domain' >'$tokdir/swift-rules.tmp' 2>/dev/null"
  mv "$tokdir/swift-rules.tmp" "$tokdir/swift-rules"
  chroot "$ROOT" chown -R "$JOB_USER:$JOB_USER" "/home/$JOB_USER/.condor"
  chmod 700 "$tokdir" && chmod 600 "$tokdir/swift-rules"
fi

# 6. A job goes through, end to end, as the job user.
probe="$(mktemp -d -p "$SCRATCH" probe.XXXXXX)"
chmod 777 "$probe"
printf 'executable = /bin/true\nlog = %s/job.log\nqueue\n' "$probe" >"$probe/job.sub"
(cd "$probe" && "$HERE/pool.sh" run sh -c \
  "condor_submit job.sub >/dev/null && condor_wait -wait $SLOT_TIMEOUT job.log >/dev/null") \
  || die "a test job did not run within $SLOT_TIMEOUT s (see $probe/job.log; condor_q -better-analyze)"
rm -rf "$probe"

write_state
step "pool ready: $(chroot "$ROOT" condor_status -af Name Cpus Memory | tr '\n' ' ')"
step "state: $STATE (source it, or use .ci/htcondor/pool.sh)"
