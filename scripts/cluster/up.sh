#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Start the local Temporal cluster (make cluster): PostgreSQL from Debian's packages, the temporal
# and temporal_visibility schemas, the Temporal services as separate processes (frontend,
# history x2, matching, internal worker) with membership between them, the web UI, the namespace
# and Stackrun's search attributes, two Stackrun workers and the chat gateway. Everything on
# loopback (addresses in lib.sh), state in $STACKRUN_CLUSTER_DIR (default .state/cluster).
# Idempotent: what already runs is left alone; a second run while up only checks.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/lib.sh"
# shellcheck source=configs.sh
source "$CLUSTER_SRC/configs.sh"
# shellcheck source=certs.sh
source "$CLUSTER_SRC/certs.sh"

T0=$(date +%s.%N)
elapsed() { printf '%.1f s' "$(echo "$(date +%s.%N) - $T0" | bc)"; }
[[ $EUID -eq 0 ]] || die "run as root (PostgreSQL runs as the postgres user)"
for b in temporal temporal-server temporal-sql-tool temporal-ui-server stackrun stackrun-worker; do
  [[ -x $BIN/$b ]] || die "$BIN/$b is missing: make cluster builds it"
done
"$BIN/temporal-server" --version 2>/dev/null | grep -q tls-roles ||
  die "$BIN/temporal-server is not tools/temporal's build (no --tls-roles): make cluster-bins"
if [[ -z $PG_BIN ]]; then
  say "installing PostgreSQL (Debian's postgresql package)"
  [[ -e /usr/sbin/policy-rc.d ]] || { printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d; }
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends postgresql >/dev/null
  PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
fi
mkdir -p "$CLUSTER"/{log,run,etc,secrets,pg}
chmod 700 "$CLUSTER/secrets"
exec > >(tee -a "$CLUSTER/log/up.log") 2>&1
say "cluster state: $CLUSTER (net $NET.0/24) — up.sh $(date -Is)"
STARTED=()

# --- PostgreSQL ---------------------------------------------------------------------------
PGDATA=$CLUSTER/pg/data
if [[ ! -s $PGDATA/PG_VERSION ]]; then
  say "initialising PostgreSQL $($PG_BIN/postgres --version | awk '{print $3}') in $PGDATA"
  rm -rf "$PGDATA"
  install -d -o postgres -g postgres -m 700 "$PGDATA" "$CLUSTER/pg/run"
  setpriv --reuid=postgres --regid=postgres --init-groups -- "$PG_BIN/initdb" -D "$PGDATA" -U postgres \
    --auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 >"$CLUSTER/log/initdb.log" 2>&1 \
    || { tail "$CLUSTER/log/initdb.log"; die "initdb failed"; }
fi
install -d -o postgres -g postgres -m 700 "$CLUSTER/pg/run"
# Only TCP from loopback, with a password; the socket (mode 0700 directory) for this script.
put "$PGDATA/pg_hba.conf" 600 <<EOF
local all postgres trust
host  all temporal $IP_PG/8 scram-sha-256
EOF
chown postgres:postgres "$PGDATA/pg_hba.conf"
start_proc postgresql setpriv --reuid=postgres --regid=postgres --init-groups -- "$PG_BIN/postgres" -D "$PGDATA" \
  -c listen_addresses="$IP_PG" -p "$P_PG" -c unix_socket_directories="$CLUSTER/pg/run" \
  -c max_connections=300 -c logging_collector=off -c log_min_messages=warning
WAIT_LOG=$CLUSTER/log/postgresql.log wait_for 60 PostgreSQL "$PG_BIN/pg_isready" -q -h "$IP_PG" -p "$P_PG"
psql_admin -d postgres -c "SELECT 1" >/dev/null
if [[ -z $(psql_admin -d postgres -At -c "SELECT 1 FROM pg_roles WHERE rolname = 'temporal'") ]]; then
  psql_admin -d postgres -c "CREATE ROLE temporal LOGIN CREATEDB PASSWORD '$(secret pg-temporal)'"
fi
say "PostgreSQL ready on $IP_PG:$P_PG after $(elapsed)"

# --- schemas ------------------------------------------------------------------------------
SCHEMA=$(cd "$REPO/tools/temporal" && go list -m -f '{{.Dir}}' go.temporal.io/server)/schema/postgresql/v12
sqltool() {
  SQL_PASSWORD=$(secret pg-temporal) "$BIN/temporal-sql-tool" --plugin postgres12 --ep "$IP_PG" -p "$P_PG" \
    -u temporal --db "$1" "${@:2}" >>"$CLUSTER/log/schema.log" 2>&1 \
    || { tail -5 "$CLUSTER/log/schema.log"; die "temporal-sql-tool --db $1 ${*:2} failed"; }
}
for pair in temporal:temporal temporal_visibility:visibility; do
  db=${pair%%:*} dir=$SCHEMA/${pair#*:}/versioned
  [[ -n $(psql_admin -d postgres -At -c "SELECT 1 FROM pg_database WHERE datname = '$db'") ]] || sqltool "$db" create-database
  if [[ $(psql_admin -d "$db" -At -c "SELECT to_regclass('schema_version') IS NOT NULL") != t ]]; then
    sqltool "$db" setup-schema -v 0.0
  fi
  sqltool "$db" update-schema -d "$dir"
  say "schema $db at version $(psql_admin -d "$db" -At -c "SELECT curr_version FROM schema_version")"
done

# --- Temporal services --------------------------------------------------------------------
ensure_certs
write_dynamic_config
write_tls_roles
UI_VERSION=$("$BIN/temporal-ui-server" --version | awk '{print $NF}')
write_ui_config
declare -A SVC_OF=([frontend]=frontend [history-1]=history [history-2]=history [matching]=matching [internal-worker]=worker)
declare -A SVC_PORT=([frontend]=$P_FRONTEND [history-1]=$P_HISTORY [history-2]=$P_HISTORY [matching]=$P_MATCHING [internal-worker]=$M_IWORKER) # the worker service serves no gRPC API: its membership port
start_service() {
  write_temporal_config "$1"
  start_proc "$1" "$BIN/temporal-server" --root / --config "$CLUSTER/etc/$1" --env temporal \
    --tls-roles "$CLUSTER/etc/tls-roles" start --service "${SVC_OF[$1]}"
}
# The first process writes the cluster metadata record; the others, started together with it,
# would race it for that row and exit. So history-1 first, on its own.
start_service history-1
WAIT_LOG=$CLUSTER/log/history-1.log wait_for 60 history-1 port_open "$IP_HISTORY1" "$P_HISTORY"
for name in "${SVC_ORDER[@]:1}"; do start_service "$name"; done
for name in "${SVC_ORDER[@]}"; do
  WAIT_LOG=$CLUSTER/log/$name.log wait_for 60 "$name" port_open "${SVC_IP[$name]}" "${SVC_PORT[$name]}"
done
serving() { temporal_cli operator cluster health | grep -q SERVING; }
WAIT_LOG=$CLUSTER/log/frontend.log wait_for 60 "the frontend's health" serving
has_members() { [[ $(members history) -ge 2 && $(members matching) -ge 1 && $(members frontend) -ge 1 && $(members worker) -ge 1 ]]; }
wait_for 60 "membership (2 history, 1 matching, 1 frontend, 1 worker)" has_members
say "Temporal services up after $(elapsed): $(for r in frontend history matching worker; do printf '%s=%s ' "$r" "$(members $r)"; done)"

# --- namespace and search attributes --------------------------------------------------------
if ! temporal_cli operator namespace describe --namespace "$NAMESPACE" >/dev/null 2>&1; then
  temporal_cli operator namespace create --namespace "$NAMESPACE" --retention 72h >/dev/null
  say "namespace $NAMESPACE created (retention 72h)"
fi
# Search attributes need the namespace in every frontend's namespace cache (refreshed every 10 s).
wait_for 30 "namespace $NAMESPACE" temporal_cli operator search-attribute list --namespace "$NAMESPACE"
existing=$(temporal_cli operator search-attribute list --namespace "$NAMESPACE" -o json)
for sa in "${SEARCH_ATTRIBUTES[@]}"; do
  grep -q "\"$sa\"" <<<"$existing" && continue
  temporal_cli operator search-attribute create --namespace "$NAMESPACE" --name "$sa" --type Keyword >/dev/null
  say "search attribute $sa created"
done

# --- web UI, Stackrun workers, chat gateway --------------------------------------------------
start_proc ui "$BIN/temporal-ui-server" --root / --config "$CLUSTER/etc/ui" --env temporal start
write_stackrun_config
for i in 1 2; do
  ip_var=IP_WORKER$i
  start_proc "stackrun-worker-$i" env STACKRUN_CONFIG="$CLUSTER/stackrun.yaml" \
    STACKRUN_TEMPORAL_TLS_CERT_FILE="$TLS_DIR/stackrun-worker.pem" STACKRUN_TEMPORAL_TLS_KEY_FILE="$TLS_DIR/stackrun-worker.key" \
    STACKRUN_WORKER_METRICS_ADDRESS="${!ip_var}:$P_METRICS" STACKRUN_WORKER_AUDIT_LOG="$CLUSTER/log/audit-stackrun-worker-$i.log" \
    "$BIN/stackrun-worker" --log-level info
done
start_proc chat env STACKRUN_CONFIG="$CLUSTER/stackrun.yaml" STACKRUN_CHAT_LISTEN_ADDRESS="$IP_CHAT:$P_CHAT" \
  STACKRUN_TEMPORAL_TLS_CERT_FILE="$TLS_DIR/stackrun-chat.pem" STACKRUN_TEMPORAL_TLS_KEY_FILE="$TLS_DIR/stackrun-chat.key" \
  "$BIN/stackrun" chat serve
WAIT_LOG=$CLUSTER/log/ui.log wait_for 30 "the web UI" curl -sf -o /dev/null "http://$IP_UI:$P_UI/api/v1/settings"
for i in 1 2; do
  ip_var=IP_WORKER$i
  WAIT_LOG=$CLUSTER/log/stackrun-worker-$i.log wait_for 30 "stackrun-worker-$i" curl -sf -o /dev/null "http://${!ip_var}:$P_METRICS/metrics"
done
WAIT_LOG=$CLUSTER/log/chat.log wait_for 30 "the chat gateway" curl -sf -o /dev/null "http://$IP_CHAT:$P_CHAT/healthz"

# --- monitoring: Debian's Prometheus and Alertmanager -----------------------------------------
if ! command -v prometheus >/dev/null || ! command -v prometheus-alertmanager >/dev/null; then
  say "installing Prometheus and Alertmanager (Debian's packages)"
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends \
    prometheus prometheus-alertmanager >/dev/null
fi
write_monitoring_config
mkdir -p "$CLUSTER/data/prometheus" "$CLUSTER/data/alertmanager"
start_proc alertmanager prometheus-alertmanager --config.file="$CLUSTER/etc/alertmanager/alertmanager.yml" \
  --storage.path="$CLUSTER/data/alertmanager" --web.listen-address="$IP_AM:$P_AM" --cluster.listen-address=
start_proc prometheus prometheus --config.file="$CLUSTER/etc/prometheus/prometheus.yml" \
  --storage.tsdb.path="$CLUSTER/data/prometheus" --storage.tsdb.retention.time=2d --web.listen-address="$IP_PROM:$P_PROM"
WAIT_LOG=$CLUSTER/log/alertmanager.log wait_for 30 Alertmanager curl -sf -o /dev/null "http://$IP_AM:$P_AM/-/ready"
WAIT_LOG=$CLUSTER/log/prometheus.log wait_for 30 Prometheus curl -sf -o /dev/null "http://$IP_PROM:$P_PROM/-/ready"
two_pollers() { [[ $(pollers) -ge 2 ]]; }
wait_for 30 "two Stackrun workers polling" two_pollers

# --- summary ------------------------------------------------------------------------------
if [[ ${#STARTED[@]} -gt 0 ]]; then
  say "started ${STARTED[*]}"
  say "cold start: $(elapsed)"
else
  say "already up (checked in $(elapsed))"
fi
"$CLUSTER_SRC/status.sh" --brief
SIGN_HINT="with your key in trust: of ${STACKRUN_CONFIG:-the base configuration} (--key or ssh-agent)"
[[ -f $CLUSTER/operators/keys ]] && SIGN_HINT="--as alice --key $CLUSTER/operators/alice_ed25519 (alice, bob, carol)"
cat <<MSG

  Temporal frontend  $IP_FRONTEND:$P_FRONTEND       web UI  http://$IP_UI:$P_UI
  Stackrun           STACKRUN_CONFIG=$CLUSTER/stackrun.yaml bin/stackrun list
  Sign               $SIGN_HINT
  Chat gateway       http://$IP_CHAT:$P_CHAT          (Mattermost token in $CLUSTER/secrets/mattermost-token)
  Prometheus         http://$IP_PROM:$P_PROM          Alertmanager  http://$IP_AM:$P_AM
  Stop               make cluster-down

MSG
