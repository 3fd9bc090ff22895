# shellcheck shell=bash
# Configuration files of the local cluster, written on every up.sh (so a changed script takes
# effect on the next start). Sourced by up.sh after lib.sh.

# put FILE [MODE]: write stdin to FILE only if it changed (keeps mtimes stable), mode 0600 default.
put() {
  local tmp
  tmp=$(mktemp "$1.XXXX")
  cat >"$tmp"
  chmod "${2:-600}" "$tmp"
  if [[ -f $1 ]] && cmp -s "$tmp" "$1"; then rm -f "$tmp"; else mv "$tmp" "$1"; fi
}

# secret NAME: a random secret kept in $CLUSTER/secrets/NAME (created once).
secret() {
  local f=$CLUSTER/secrets/$1
  [[ -s $f ]] || (umask 077 && head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$f")
  cat "$f"
}

# sql_store DB MAXCONNS: one persistence datastore on the cluster's PostgreSQL.
sql_store() {
  cat <<EOF
      sql:
        pluginName: postgres12
        databaseName: $1
        connectAddr: "$IP_PG:$P_PG"
        connectProtocol: tcp
        user: temporal
        password: "$(secret pg-temporal)"
        maxConns: $2
        maxIdleConns: $2
        maxConnLifetime: 1h
EOF
}

# rpc_section SERVICE IP GRPC MEMBERSHIP: the services.<SERVICE>.rpc block.
rpc_section() {
  cat <<EOF
  $1:
    rpc:
      grpcPort: $3
      membershipPort: $4
      bindOnIP: "$2"
EOF
}

# tls_section: global.tls, mutual TLS everywhere (certs.sh). The internal worker reaches the
# frontend with the internode certificate (Temporal's frontend.client settings); certificates
# are re-read every minute, so a renewal needs no restart.
tls_section() {
  cat <<EOF
    refreshInterval: 1m
    expirationChecks:
      warningWindow: 720h
      errorWindow: 168h
      checkInterval: 1h
    internode:
      server:
        certFile: "$TLS_DIR/internode.pem"
        keyFile: "$TLS_DIR/internode.key"
        requireClientAuth: true
        clientCaFiles: ["$TLS_DIR/ca.pem"]
      client:
        serverName: $INTERNODE_NAME
        rootCaFiles: ["$TLS_DIR/ca.pem"]
    frontend:
      server:
        certFile: "$TLS_DIR/frontend.pem"
        keyFile: "$TLS_DIR/frontend.key"
        requireClientAuth: true
        clientCaFiles: ["$TLS_DIR/ca.pem"]
      client:
        serverName: $FRONTEND_NAME
        rootCaFiles: ["$TLS_DIR/ca.pem"]
EOF
}

# write_temporal_config NAME: $CLUSTER/etc/NAME/temporal.yaml for one service process. Every
# process gets the whole cluster's shape (persistence, cluster metadata, every service's ports)
# and binds and broadcasts only its own address; the processes find each other through the
# cluster_membership table (seeds) and then ringpop on the membership ports.
write_temporal_config() {
  local name=$1 ip=${SVC_IP[$1]} hist_ip=$IP_HISTORY1
  [[ $name == history-2 ]] && hist_ip=$IP_HISTORY2
  mkdir -p "$CLUSTER/etc/$name"
  {
    cat <<EOF
# Written by scripts/cluster/up.sh for the "$name" process ($ip). Do not edit: rewritten on start.
log:
  stdout: true
  level: ${STACKRUN_CLUSTER_LOG_LEVEL:-warn}
persistence:
  defaultStore: default
  visibilityStore: visibility
  numHistoryShards: $SHARDS
  datastores:
    default:
$(sql_store temporal 20)
    visibility:
$(sql_store temporal_visibility 10)
global:
  membership:
    maxJoinDuration: 30s
    broadcastAddress: "$ip"
  pprof:
    port: 0
  tls:
$(tls_section)
  metrics:
    prometheus:
      framework: tally
      timerType: histogram
      listenAddress: "$ip:$P_METRICS"
services:
$(rpc_section frontend "$IP_FRONTEND" "$P_FRONTEND" "$M_FRONTEND")
      httpPort: $P_FRONTEND_HTTP
$(rpc_section history "$hist_ip" "$P_HISTORY" "$M_HISTORY")
$(rpc_section matching "$IP_MATCHING" "$P_MATCHING" "$M_MATCHING")
$(rpc_section worker "$IP_IWORKER" "$P_IWORKER" "$M_IWORKER")
clusterMetadata:
  enableGlobalNamespace: false
  failoverVersionIncrement: 10
  masterClusterName: active
  currentClusterName: active
  clusterInformation:
    active:
      enabled: true
      initialFailoverVersion: 1
      rpcName: frontend
      rpcAddress: "$IP_FRONTEND:$P_FRONTEND"
      httpAddress: "$IP_FRONTEND:$P_FRONTEND_HTTP"
dcRedirectionPolicy:
  policy: noop
dynamicConfigClient:
  filepath: "$CLUSTER/etc/dynamicconfig.yaml"
  pollInterval: 10s
EOF
  } | put "$CLUSTER/etc/$name/temporal.yaml"
}

# write_dynamic_config: settings every service reads (and re-reads every 10 s); the same file
# docker-compose.yml mounts.
write_dynamic_config() {
  put "$CLUSTER/etc/dynamicconfig.yaml" 644 <"$REPO/deploy/temporal/dynamicconfig.yaml"
}

# write_tls_roles: who may call the frontend, by the subject CN of their client certificate
# (deploy/temporal/tls-roles, the file docker-compose.yml mounts; the web UI's line from
# $UI_ROLES). Read by every service's temporal-server --tls-roles; the frontend applies it.
write_tls_roles() {
  sed "s/^temporal-ui .*/temporal-ui        $UI_ROLES/" "$REPO/deploy/temporal/tls-roles" | put "$CLUSTER/etc/tls-roles" 644
}

# write_ui_config: the web UI server, pointed at the frontend.
write_ui_config() {
  mkdir -p "$CLUSTER/etc/ui"
  put "$CLUSTER/etc/ui/temporal.yaml" <<EOF
# Written by scripts/cluster/up.sh: the Temporal web UI (ui-server $UI_VERSION) for the cluster.
temporalGrpcAddress: "$IP_FRONTEND:$P_FRONTEND"
tls:
  caFile: "$TLS_DIR/ca.pem"
  certFile: "$TLS_DIR/temporal-ui.pem"
  keyFile: "$TLS_DIR/temporal-ui.key"
  serverName: $FRONTEND_NAME
  enableHostVerification: true
host: "$IP_UI"
port: $P_UI
enableUi: true
defaultNamespace: $NAMESPACE
notifyOnNewVersion: false
cors:
  cookieInsecure: true
  allowOrigins:
    - "http://$IP_UI:$P_UI"
EOF
}

# strip_blocks KEY...: copy stdin without the top-level YAML blocks KEY: (to the next top-level key).
strip_blocks() {
  awk -v keys=" $* " '
    /^[A-Za-z_][A-Za-z0-9_]*:/ { k = $0; sub(/:.*/, "", k); skip = index(keys, " " k " ") > 0 }
    !skip { print }'
}

# only_block KEY: the top-level YAML block KEY: of stdin (empty if there is none).
only_block() {
  awk -v key="$1" '
    /^[A-Za-z_][A-Za-z0-9_]*:/ { k = $0; sub(/:.*/, "", k); keep = k == key }
    keep { print }'
}

# cluster_operator_keys: without a trust: block in the base configuration, the cluster's own
# operators (alice and bob approve, carol starts, as in the lab) get ed25519 key pairs in
# $CLUSTER/operators and $CLUSTER/operators/keys becomes trust.keys_file. Sign as one of them with
# `stackrun --key $CLUSTER/operators/alice_ed25519 ...` (or ssh-add it).
cluster_operator_keys() {
  local o
  mkdir -p "$CLUSTER/operators"
  chmod 700 "$CLUSTER/operators"
  for o in alice bob carol; do
    [[ -f $CLUSTER/operators/${o}_ed25519 ]] || ssh-keygen -q -t ed25519 -N '' -C "$o@stackrun-cluster" -f "$CLUSTER/operators/${o}_ed25519"
  done
  for o in alice bob carol; do printf '%s %s\n' "$o" "$(cat "$CLUSTER/operators/${o}_ed25519.pub")"; done | put "$CLUSTER/operators/keys" 644
}

# trust_yaml BASE: the trust: block, the base's if it has one (its operators sign with their own
# keys), else the cluster's operators. The chat gateway gets a key of its own in $CLUSTER/operators
# and trust.chat_gateway unless the base already gives it one; it vouches for every operator of
# chat.users (chat.roles, the approver list and the two-person rule still decide).
trust_yaml() {
  local block="" k=$CLUSTER/operators/chat_gateway_ed25519
  [[ -n $1 ]] && block=$(only_block trust <"$1")
  if [[ -z $block ]]; then
    cluster_operator_keys
    block=$(printf 'trust:\n  keys_file: %s\n  max_signature_age: 10m' "$CLUSTER/operators/keys")
  fi
  printf '%s\n' "$block"
  grep -q '^  chat_gateway:' <<<"$block" && return 0
  mkdir -p "$CLUSTER/operators"
  chmod 700 "$CLUSTER/operators"
  [[ -f $k ]] || ssh-keygen -q -t ed25519 -N '' -C stackrun-chat@stackrun-cluster -f "$k"
  printf '  chat_gateway:\n    public_key: "%s"\n    private_key_file: %s\n' "$(cut -d' ' -f1,2 "$k.pub")" "$k"
  printf '    vouch:\n      - operators: ["*"]\n        gates: ["*"]\n        runbooks: ["*"]\n'
}

# write_stackrun_config: $CLUSTER/stackrun.yaml, what the workers, the gateway and the CLI read.
# The base is $STACKRUN_CONFIG, else the lab's stackrun.yaml, else a target-less configuration
# (an empty inventory); its temporal: block is replaced by the cluster's, and a chat: block is
# added when the base has none (a Mattermost token, one operator) so that the gateway can start.
write_stackrun_config() {
  local base=${STACKRUN_CONFIG:-} lab=${STACKRUN_LAB_DIR:-$REPO/.state/lab}
  [[ -z $base && -f $lab/stackrun.yaml ]] && base=$lab/stackrun.yaml
  mkdir -p "$CLUSTER/stackrun"
  if [[ -z $base ]]; then
    [[ -f $CLUSTER/stackrun/id_ed25519 ]] || ssh-keygen -q -t ed25519 -N '' -C stackrun-cluster -f "$CLUSTER/stackrun/id_ed25519"
    touch "$CLUSTER/stackrun/known_hosts"
  else
    [[ -f $base ]] || die "STACKRUN_CONFIG=$base: no such file"
  fi
  secret mattermost-token >/dev/null
  {
    echo "# Written by scripts/cluster/up.sh from ${base:-no base configuration (no target: empty inventory)}."
    echo "# Operators: STACKRUN_CONFIG=$CLUSTER/stackrun.yaml bin/stackrun list"
    echo "temporal:"
    echo "  address: $IP_FRONTEND:$P_FRONTEND"
    echo "  namespace: $NAMESPACE"
    echo "  task_queue: $TASK_QUEUE"
    echo "  tls:"
    echo "    enabled: true"
    echo "    ca_file: $TLS_DIR/ca.pem"
    echo "    server_name: $FRONTEND_NAME"
    echo "    # the operators' certificate; the workers and the gateway get their own (up.sh)"
    echo "    cert_file: $TLS_DIR/stackrun-operator.pem"
    echo "    key_file: $TLS_DIR/stackrun-operator.key"
    if [[ -n $base ]]; then
      strip_blocks temporal trust <"$base" | grep -v '^# Stackrun configuration for the lab'
    else
      cat <<EOF
ssh:
  key_file: $CLUSTER/stackrun/id_ed25519
  known_hosts_file: $CLUSTER/stackrun/known_hosts
policy:
  approvers: [alice, bob]
EOF
    fi
    if [[ -z $base ]] || ! grep -q '^chat:' "$base"; then
      cat <<EOF
chat:
  listen_address: "$IP_CHAT:$P_CHAT"
  web_ui_url: "http://$IP_UI:$P_UI"
  mattermost:
    token_file: $CLUSTER/secrets/mattermost-token
  users:
    - {operator: alice, mattermost: alice, roles: [operator]}
  roles:
    operator: {runbooks: ["*"], gates: ["*"]}
EOF
    fi
    echo "# Who signed what (docs/chatops.md, \"Trust model\")."
    trust_yaml "$base"
  } | put "$CLUSTER/stackrun.yaml"
}

# write_monitoring_config: Prometheus scraping every process of the cluster (job temporal: the
# five services; job stackrun-worker: the two workers), with Stackrun's alert rules
# (deploy/prometheus/stackrun-rules.yml), alerting into the cluster's Alertmanager.
write_monitoring_config() {
  mkdir -p "$CLUSTER/etc/prometheus" "$CLUSTER/etc/alertmanager"
  sed "s/(stackrun_step_stalled_seconds) > 900/(stackrun_step_stalled_seconds) > $STALL_ALERT_SECONDS/" \
    "$REPO/deploy/prometheus/stackrun-rules.yml" | put "$CLUSTER/etc/prometheus/stackrun-rules.yml" 644
  {
    cat <<EOF
# Written by scripts/cluster/up.sh.
global:
  scrape_interval: ${STACKRUN_CLUSTER_SCRAPE_INTERVAL:-15s}
  evaluation_interval: ${STACKRUN_CLUSTER_SCRAPE_INTERVAL:-15s}
rule_files:
  - $CLUSTER/etc/prometheus/stackrun-rules.yml
alerting:
  alertmanagers:
    - static_configs:
        - targets: ["$IP_AM:$P_AM"]
scrape_configs:
  - job_name: temporal
    static_configs:
EOF
    local name
    for name in frontend history-1 history-2 matching internal-worker; do
      printf '      - targets: ["%s:%s"]\n        labels: {service: %s}\n' "${SVC_IP[$name]}" "$P_METRICS" "$name"
    done
    cat <<EOF
  - job_name: stackrun-worker
    static_configs:
      - targets: ["$IP_WORKER1:$P_METRICS", "$IP_WORKER2:$P_METRICS"]
EOF
  } | put "$CLUSTER/etc/prometheus/prometheus.yml" 644
  put "$CLUSTER/etc/alertmanager/alertmanager.yml" 644 <<EOF
# Written by scripts/cluster/up.sh: alerts are kept (GET /api/v2/alerts); route them to your
# pager or chat in production.
route:
  receiver: keep
  group_by: [alertname, workflow_id]
  group_wait: 1s
receivers:
  - name: keep
EOF
}
