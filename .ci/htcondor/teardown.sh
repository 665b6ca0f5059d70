#!/usr/bin/env bash
# Stop the personal pool and unmount what setup.sh mounted. Keeps the cached root
# filesystem (rm -rf it by hand, after this, to rebuild it from scratch).
set -uo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=.ci/htcondor/common.sh
source "$HERE/common.sh"

[[ $(id -u) == 0 ]] || die "run as root"
[[ -d "$ROOT" ]] || exit 0
if is_mounted "$ROOT/proc"; then
  chroot "$ROOT" condor_off -master >/dev/null 2>&1 || true
  # Up to 20 s for a clean shutdown, then whatever is left inside the root is killed
  # (by process id: only processes whose root is this root).
  for _ in $(seq 20); do
    [[ -z "$(root_pids)" ]] && break
    sleep 1
  done
  for pid in $(root_pids); do kill -KILL "$pid" 2>/dev/null || true; done
fi
rm -f "$STATE"
for src in "$SCRATCH" "$PYHOME" "$REPO"; do
  is_mounted "$ROOT$src" && { umount "$ROOT$src" 2>/dev/null || umount -l "$ROOT$src"; }
done
umount_kernel_fs "$ROOT"
step "pool stopped"
