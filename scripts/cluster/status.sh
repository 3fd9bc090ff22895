#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Show the local cluster: each process with its PID, address and memory, the membership that
# PostgreSQL records, and the Stackrun workers polling. Exit 0 when everything runs, 1 otherwise.
#   status.sh [--brief]   (--brief: the process table and the total only)
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/lib.sh"

[[ -d $CLUSTER/run ]] || { echo "no cluster at $CLUSTER (make cluster)"; exit 1; }
declare -A ADDR=([postgresql]=$IP_PG:$P_PG [frontend]=$IP_FRONTEND:$P_FRONTEND [history-1]=$IP_HISTORY1:$P_HISTORY
  [history-2]=$IP_HISTORY2:$P_HISTORY [matching]=$IP_MATCHING:$P_MATCHING [internal-worker]=$IP_IWORKER:$M_IWORKER
  [ui]=$IP_UI:$P_UI [stackrun-worker-1]=$IP_WORKER1:$P_METRICS [stackrun-worker-2]=$IP_WORKER2:$P_METRICS [chat]=$IP_CHAT:$P_CHAT
  [alertmanager]=$IP_AM:$P_AM [prometheus]=$IP_PROM:$P_PROM)
rc=0 total=0
printf '  %-18s %-8s %-20s %s\n' PROCESS PID ADDRESS PSS
for name in "${PROCS[@]}"; do
  pid=$(pid_of "$name")
  if [[ -z $pid ]]; then
    printf '  %-18s %-8s %-20s %s\n' "$name" - "${ADDR[$name]}" STOPPED
    rc=1
    continue
  fi
  rss=$(pss_mib "$pid")
  # PostgreSQL is a family of processes: count the postmaster's children too.
  if [[ $name == postgresql ]]; then
    for c in $(pgrep -P "$pid" || true); do rss=$((rss + $(pss_mib "$c"))); done
  fi
  total=$((total + rss))
  printf '  %-18s %-8s %-20s %s MiB\n' "$name" "$pid" "${ADDR[$name]}" "$rss"
done
printf '  %-18s %-8s %-20s %s MiB\n' total "" "" "$total"
[[ ${1:-} == --brief ]] && exit $rc
echo "membership (cluster_membership, live rows):"
psql_admin -d temporal -At -F ' ' -c "SELECT CASE role WHEN 1 THEN 'frontend' WHEN 2 THEN 'history' WHEN 3 THEN 'matching' WHEN 4 THEN 'worker' ELSE role::text END, rpc_address || ':' || rpc_port, 'since ' || to_char(session_start, 'HH24:MI:SS') FROM cluster_membership WHERE record_expiry > now() AND last_heartbeat > now() - interval '20 seconds' ORDER BY role, rpc_address" 2>/dev/null | sed 's/^/  /' || { echo "  (PostgreSQL unreachable)"; rc=1; }
n=$(pollers)
echo "Stackrun workers polling task queue $TASK_QUEUE: $n"
[[ $n -ge 2 ]] || rc=1
exit $rc
