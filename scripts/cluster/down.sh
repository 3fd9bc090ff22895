#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Stop the local cluster, each process by its recorded PID, clients first and PostgreSQL last.
#   down.sh           stop; keep the state (the next up.sh reuses the database)
#   down.sh --purge   stop and delete $STACKRUN_CLUSTER_DIR
# Idempotent: on a stopped cluster it does nothing.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/lib.sh"

purge=0
case ${1:-} in
  --purge) purge=1 ;;
  "") ;;
  *) die "usage: $0 [--purge]" ;;
esac
if [[ ! -d $CLUSTER/run ]]; then
  say "no cluster at $CLUSTER"
  exit 0
fi
say "stopping the cluster at $CLUSTER"
for name in prometheus alertmanager chat stackrun-worker-1 stackrun-worker-2 ui; do stop_proc "$name" & done
wait
for name in internal-worker frontend matching history-1 history-2; do stop_proc "$name" & done
wait
stop_proc postgresql 30 INT
if [[ $purge -eq 1 ]]; then
  rm -rf "$CLUSTER"
  say "removed $CLUSTER"
fi
say "stopped"
