#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Stop the Stackrun lab: every daemon by its PID file, then unmount the Swift devices.
#   lab/down.sh           stop; keep the state (the next up.sh is fast)
#   lab/down.sh --purge   stop and delete $STACKRUN_LAB_DIR
# Idempotent: running it on a stopped lab does nothing.
set -euo pipefail
# shellcheck source=lib/common.sh
source "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/lib/common.sh"
# shellcheck source=lib/services.sh
source "$LAB_SRC/lib/services.sh"
# shellcheck source=lib/disks.sh
source "$LAB_SRC/lib/disks.sh"

purge=0
case ${1:-} in
  --purge) purge=1 ;;
  "") ;;
  *) die "usage: $0 [--purge]" ;;
esac
[[ $EUID -eq 0 ]] || die "run as root"
LABCTL=$LAB_SRC/bin/labctl
if [[ ! -d $LAB ]]; then
  say "no lab at $LAB"
  [[ $purge -eq 1 && -n $LAB_LINK ]] && rm -f "$LAB_LINK" && say "removed the dangling link $LAB_LINK"
  exit 0
fi
say "stopping the lab at $LAB"

# computes and the nova control plane first, then the other APIs, storage, infrastructure
for h in "${COMPUTES[@]}"; do "$LABCTL" stop "$h" nova-compute & done
wait
for s in nova-scheduler nova-conductor nova-api neutron-server glance-api placement-api keystone swift-proxy alertmanager; do
  "$LABCTL" stop controller "$s" &
done
for h in "${STORAGES[@]}"; do "$LABCTL" stop "$h" all & done
wait
for s in rabbitmq-server memcached mariadb; do "$LABCTL" stop controller "$s" & done
wait
for h in "${LAB_HOSTS[@]}"; do "$LABCTL" stop "$h" sshd & done
wait

# stragglers started by this lab (epmd from RabbitMQ, children that left their group)
for pid in $(lab_pids "$LAB"); do
  [[ $pid == "$$" ]] && continue
  pid_alive "$pid" || continue
  grep -qa "LAB_HOST=" "/proc/$pid/environ" 2>/dev/null || continue
  say "killing straggler $pid: $(tr '\0' ' ' <"/proc/$pid/cmdline" | cut -c1-80)"
  kill -KILL "$pid" 2>/dev/null || true
done

# Swift devices: unmount (lazily if busy) and detach the loop devices of our images
for h in "${STORAGES[@]}"; do
  d=$(hostdir "$h")
  mapfile -t mps < <(awk -v p="$d/srv/node/" 'index($2, p) == 1 {print $2}' /proc/self/mounts)
  for mp in "${mps[@]}"; do
    umount "$mp" 2>/dev/null || umount -l "$mp" || warn "cannot unmount $mp"
    say "unmounted $mp"
  done
  for img in "$d"/disks/*.img*; do
    [[ -e $img ]] || continue
    for loop in $(loop_of_image "$img"); do losetup -d "$loop" 2>/dev/null || true; done
  done
  for dev in $(devs_of "$h"); do
    # only our own links: another lab's loop device may hold the name now
    [[ -L /dev/$dev ]] || continue
    back=$(losetup -n -O BACK-FILE "$(readlink "/dev/$dev")" 2>/dev/null || true)
    [[ -z $back || $back == "$LAB"/* ]] && rm -f "/dev/$dev"
  done
done

if [[ $purge -eq 1 ]]; then
  grep -q " $LAB/" /proc/self/mounts && die "something is still mounted under $LAB; not purging"
  rm -rf "$LAB"
  [[ -n $LAB_LINK && -L $LAB_LINK ]] && rm -f "$LAB_LINK"
  say "purged $LAB${LAB_LINK:+ (and the link $LAB_LINK)}"
fi
say "lab stopped"
