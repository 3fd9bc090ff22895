# shellcheck shell=bash disable=SC2034  # (variables used by the scripts that source this file)
# Common definitions for the local Temporal cluster (make cluster). Sourced by up.sh, down.sh and
# status.sh. Everything the cluster writes lives under $CLUSTER; every process it starts is
# recorded in $CLUSTER/run/<name>.pid as "PID STARTTIME", so it is stopped by that PID only.

CLUSTER_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$CLUSTER_SRC/../.." && pwd)
CLUSTER=${STACKRUN_CLUSTER_DIR:-$REPO/.state/cluster}
BIN=${STACKRUN_CLUSTER_BIN:-$REPO/bin}

# Addresses: one loopback address per process, like one machine per service in production. The
# lab uses 127.0.0.10-31; the default net keeps clear of it (tests pick another net).
NET=${STACKRUN_CLUSTER_NET:-127.0.40}
IP_PG=$NET.1 IP_FRONTEND=$NET.2 IP_HISTORY1=$NET.3 IP_HISTORY2=$NET.4 IP_MATCHING=$NET.5
IP_IWORKER=$NET.6 IP_UI=$NET.7 IP_WORKER1=$NET.8 IP_WORKER2=$NET.9 IP_CHAT=$NET.10
IP_PROM=$NET.11 IP_AM=$NET.12
# Ports. PostgreSQL has its own port so it can never be taken for the lab's MariaDB (3306) or a
# system PostgreSQL (5432). Temporal's are its defaults; every process also serves Prometheus
# metrics on <its address>:9090.
P_PG=5433
P_FRONTEND=7233 P_FRONTEND_HTTP=7243 P_HISTORY=7234 P_MATCHING=7235 P_IWORKER=7239
M_FRONTEND=6933 M_HISTORY=6934 M_MATCHING=6935 M_IWORKER=6939
P_METRICS=9090 P_UI=8233 P_CHAT=8090 P_PROM=9090 P_AM=9093
# The StackrunStepStalled alert fires after a step has been stalled this long (seconds).
STALL_ALERT_SECONDS=${STACKRUN_CLUSTER_STALL_ALERT_SECONDS:-900}
# History shards are fixed when the cluster is created (docs/production.md, "Sizing").
SHARDS=${STACKRUN_CLUSTER_SHARDS:-16}
NAMESPACE=default
# Server-side authorization (tools/temporal/cmd/temporal-server --tls-roles): the frontend maps the
# client certificate's subject CN to Temporal roles ($CLUSTER/etc/tls-roles, configs.sh). The web
# UI's role: system:reader (it may watch, not act) unless you give it more.
UI_ROLES=${STACKRUN_CLUSTER_UI_ROLES:-system:reader}
TASK_QUEUE=${STACKRUN_CLUSTER_TASK_QUEUE:-stackrun}
SEARCH_ATTRIBUTES=(RunbookStatus RunbookStep RunbookTarget RequestedBy)
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)

# name -> address of every Temporal service process
declare -A SVC_IP=([frontend]=$IP_FRONTEND [history-1]=$IP_HISTORY1 [history-2]=$IP_HISTORY2
  [matching]=$IP_MATCHING [internal-worker]=$IP_IWORKER)
SVC_ORDER=(history-1 history-2 matching frontend internal-worker)

say()  { printf '\033[1m[cluster]\033[0m %s\n' "$*"; }
warn() { printf '\033[33m[cluster] warning:\033[0m %s\n' "$*" >&2; }
die()  { printf '\033[31m[cluster] error:\033[0m %s\n' "$*" >&2; exit 1; }

# pid_alive PID: true if PID runs and is not a zombie.
pid_alive() {
  local state
  [[ -n $1 && -r /proc/$1/stat ]] || return 1
  state=$(sed -E 's/^[0-9]+ \(.*\) ([A-Za-z]) .*/\1/' "/proc/$1/stat" 2>/dev/null) || return 1
  [[ $state != Z && $state != X ]]
}

# proc_start PID: start time of PID in clock ticks since boot (tells a reused PID apart).
proc_start() { sed -E 's/^.*\) //' "/proc/$1/stat" 2>/dev/null | awk '{print $20}'; }

# pid_of NAME: the PID recorded for NAME if that very process still runs; empty otherwise.
pid_of() {
  local f=$CLUSTER/run/$1.pid pid="" start=""
  [[ -s $f ]] || return 0
  read -r pid start <"$f" || true
  pid_alive "$pid" || return 0
  [[ -z $start || $(proc_start "$pid") == "$start" ]] || return 0
  echo "$pid"
}

# start_proc NAME CMD...: start CMD in its own session, output to $CLUSTER/log/NAME.log, unless the
# process recorded for NAME still runs. Environment variables go before CMD via env(1). The
# processes do not inherit STACKRUN_LAB_DIR: they are not the lab's (lab/up.sh kills processes
# that carry another lab's directory).
start_proc() {
  local name=$1 pid
  shift
  if [[ -n $(pid_of "$name") ]]; then
    return 0
  fi
  setsid env -u STACKRUN_LAB_DIR "$@" >>"$CLUSTER/log/$name.log" 2>&1 </dev/null &
  pid=$!
  echo "$pid $(proc_start "$pid")" >"$CLUSTER/run/$name.pid"
  STARTED+=("$name")
}

# stop_proc NAME [SECONDS] [SIGNAL]: SIGNAL (default TERM) to the recorded process, SIGKILL after
# SECONDS (default 15). PostgreSQL takes INT: a fast shutdown (TERM waits for every client to
# disconnect, and Temporal's pools never do).
stop_proc() {
  local name=$1 secs=${2:-15} sig=${3:-TERM} pid i
  pid=$(pid_of "$name")
  rm_pid() { rm -f "$CLUSTER/run/$name.pid"; }
  [[ -n $pid ]] || { rm_pid; return 0; }
  kill -"$sig" "$pid" 2>/dev/null || true
  for ((i = 0; i < secs * 10; i++)); do
    pid_alive "$pid" || { rm_pid; return 0; }
    sleep 0.1
  done
  warn "$name (pid $pid) ignored SIG$sig for $secs s: SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
  rm_pid
}

# pss_mib PID: proportional set size of PID in MiB (resident memory, pages shared between
# processes split among them: PostgreSQL's shared buffers are counted once over its processes).
pss_mib() { awk '/^Pss:/ {printf "%d", $2 / 1024}' "/proc/$1/smaps_rollup" 2>/dev/null || echo 0; }

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# wait_for SECONDS WHAT CMD...: retry CMD every 0.2 s; die with WHAT (and the log named by
# $WAIT_LOG) after SECONDS.
wait_for() {
  local secs=$1 what=$2 i
  shift 2
  for ((i = 0; i < secs * 5; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  [[ -n ${WAIT_LOG:-} && -f $WAIT_LOG ]] && tail -20 "$WAIT_LOG" >&2
  die "$what did not become ready within $secs s${WAIT_LOG:+ (see $WAIT_LOG)}"
}

psql_admin() { "$PG_BIN/psql" -h "$CLUSTER/pg/run" -p "$P_PG" -U postgres -X -q -v ON_ERROR_STOP=1 "$@"; }

# temporal_cli ARGS...: the Temporal CLI against the cluster's frontend.
# With the admin client certificate (mutual TLS, certs.sh).
temporal_cli() {
  "$BIN/temporal" "$@" --address "$IP_FRONTEND:$P_FRONTEND" --tls-ca-path "$CLUSTER/tls/ca.pem" \
    --tls-cert-path "$CLUSTER/tls/temporal-admin.pem" --tls-key-path "$CLUSTER/tls/temporal-admin.key" \
    --tls-server-name temporal-frontend
}

# members ROLE: how many live hosts of ROLE (frontend, history, matching, worker) the membership
# table lists. Temporal keeps one row per host, heartbeats every 10 s and counts a host as live
# for 20 s after its last heartbeat (common/membership/ringpop/monitor.go).
members() {
  local role
  case $1 in frontend) role=1 ;; history) role=2 ;; matching) role=3 ;; worker) role=4 ;; esac
  psql_admin -d temporal -At -c "SELECT count(*) FROM cluster_membership WHERE role = $role AND record_expiry > now() AND last_heartbeat > now() - interval '20 seconds'"
}

# pollers: how many distinct Stackrun workers poll the task queue (workflow or activity tasks).
pollers() {
  temporal_cli task-queue describe --namespace "$NAMESPACE" --task-queue "$TASK_QUEUE" -o json 2>/dev/null |
    { grep -o '"identity": *"stackrun-worker@[^"]*"' || true; } | sort -u | wc -l
}

# Every process of the cluster, in start order.
PROCS=(postgresql history-1 history-2 matching frontend internal-worker ui stackrun-worker-1 stackrun-worker-2 chat
  alertmanager prometheus)
