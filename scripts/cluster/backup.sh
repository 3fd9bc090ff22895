#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Back up or restore the local cluster's Temporal databases (docs/production.md, "Backup").
#   backup.sh                 pg_dump -Fc of temporal and temporal_visibility into
#                             $CLUSTER/backup/<UTC time>/ (the cluster may run)
#   backup.sh --restore DIR   stop the Temporal services and the Stackrun processes, replace both
#                             databases with the dumps in DIR, start everything again
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/lib.sh"

DBS=(temporal temporal_visibility)
[[ -n $(pid_of postgresql) ]] || die "PostgreSQL of $CLUSTER is not running (make cluster)"
case ${1:-} in
  "")
    dir=$CLUSTER/backup/$(date -u +%Y%m%dT%H%M%SZ)
    mkdir -p "$dir"
    for db in "${DBS[@]}"; do
      "$PG_BIN/pg_dump" -h "$CLUSTER/pg/run" -p "$P_PG" -U postgres -Fc -f "$dir/$db.dump" "$db"
    done
    say "backup in $dir ($(du -sh "$dir" | cut -f1))"
    ;;
  --restore)
    dir=${2:?usage: $0 --restore DIR}
    for db in "${DBS[@]}"; do [[ -s $dir/$db.dump ]] || die "$dir/$db.dump missing"; done
    # Never under running services: stop every client of the database first.
    for name in chat stackrun-worker-1 stackrun-worker-2 ui internal-worker frontend matching history-1 history-2; do
      stop_proc "$name"
    done
    for db in "${DBS[@]}"; do
      psql_admin -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)"
      psql_admin -d postgres -c "CREATE DATABASE $db OWNER temporal"
      "$PG_BIN/pg_restore" -h "$CLUSTER/pg/run" -p "$P_PG" -U postgres --role=temporal --no-owner -d "$db" "$dir/$db.dump"
    done
    say "restored from $dir; starting the cluster"
    exec "$CLUSTER_SRC/up.sh"
    ;;
  *) die "usage: $0 [--restore DIR]" ;;
esac
