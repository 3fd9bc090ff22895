#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Show the state of the Stackrun lab: services per host, Swift devices, APIs, SSH, memory.
# Exit status 0 when everything is up and healthy, 1 otherwise.
set -euo pipefail
# shellcheck source=lib/common.sh
source "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/lib/common.sh"
# shellcheck source=lib/disks.sh
source "$LAB_SRC/lib/disks.sh"
# shellcheck source=lib/check.sh
source "$LAB_SRC/lib/check.sh"
# shellcheck source=lib/alertmanager.sh
source "$LAB_SRC/lib/alertmanager.sh"

[[ -d $LAB ]] || { echo "no lab at $LAB (run lab/up.sh)"; exit 1; }
rc=0
echo "lab: $LAB"
echo "services:"
"$LAB_SRC/bin/labctl" list | sed 's/^/  /' | tee /tmp/.labstatus.$$ | grep -v ': running' || true
running=$(grep -c ': running' /tmp/.labstatus.$$ || true)
total=$(wc -l </tmp/.labstatus.$$)
rm -f /tmp/.labstatus.$$
echo "  $running of $total running"
[[ $running -eq $total ]] || rc=1

echo "swift devices:"
for h in "${STORAGES[@]}"; do
  for dev in $(devs_of "$h"); do
    mp=$(hostdir "$h")/srv/node/$dev
    src=$(mounted_dev "$mp")
    if [[ -z $src ]]; then
      echo "  $h/$dev  NOT MOUNTED  $mp"; rc=1
    elif ! disk_healthy "$mp"; then
      echo "  $h/$dev  FAILED (I/O errors)  $src on $mp"; rc=1
    else
      echo "  $h/$dev  ok  $src on $mp"
    fi
  done
done

echo "apis:"
check_apis || rc=1
check_alertmanager || rc=1
echo "ssh:"
check_ssh || rc=1

kib=0 n=0
for pid in $(lab_pids "$LAB"); do
  r=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
  [[ -n $r ]] || continue
  kib=$((kib + r)) n=$((n + 1))
done
echo "memory: $n processes, $((kib / 1024)) MiB RSS"
exit "$rc"
