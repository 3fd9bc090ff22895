#!/usr/bin/env bash
# make run: local Temporal dev server with its web UI and Stackrun's search attributes, a worker,
# and the chat gateway when the configuration has a chat: section. The target is the OpenStack lab
# (brought up first) unless STACKRUN_CONFIG names another configuration. Ctrl-C stops the gateway,
# the worker and Temporal; the lab keeps running (make lab-down).
#
# Environment: STATE (default .state), STACKRUN_CONFIG, STACKRUN_TEMPORAL_ADDRESS (default
# 127.0.0.1:7233: where the dev server listens unless one answers there), RUN_UI_PORT (8233),
# RUN_BIN (the directory of stackrun, stackrun-worker and temporal; default bin).
set -euo pipefail
cd "$(dirname "$0")/.."
STATE=${STATE:-$PWD/.state}
mkdir -p "$STATE"
LAB_DIR=${STACKRUN_LAB_DIR:-$STATE/lab}
BIN=${RUN_BIN:-$PWD/bin}
ADDR=${STACKRUN_TEMPORAL_ADDRESS:-127.0.0.1:7233}
UI_PORT=${RUN_UI_PORT:-8233}

if [ -z "${STACKRUN_CONFIG:-}" ]; then
  echo "run: bringing up the OpenStack lab (state in $LAB_DIR; set STACKRUN_CONFIG to use another target)"
  STACKRUN_LAB_DIR=$LAB_DIR lab/up.sh
  export STACKRUN_CONFIG=$LAB_DIR/stackrun.yaml
fi

pids=() names=()
joined() { local out="" n; for n in "${names[@]}"; do out+="${out:+, }$n"; done; echo "$out"; }
cleanup() {
  trap - INT TERM EXIT
  echo
  if [ ${#pids[@]} -gt 0 ]; then
    echo "run: stopping $(joined)"
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  fi
}
trap cleanup INT TERM EXIT
started() { pids+=("$1"); names=("$2" "${names[@]}"); }

if "$BIN/temporal" operator cluster health --address "$ADDR" >/dev/null 2>&1; then
  echo "run: a Temporal server already answers on $ADDR; using it"
else
  echo "run: starting Temporal dev server on $ADDR (SQLite in $STATE/temporal.db, log $STATE/temporal.log)"
  "$BIN/temporal" server start-dev --ip "${ADDR%:*}" --port "${ADDR##*:}" --ui-ip 127.0.0.1 --ui-port "$UI_PORT" \
    --db-filename "$STATE/temporal.db" --log-level warn \
    --search-attribute RunbookStatus=Keyword --search-attribute RunbookStep=Keyword \
    --search-attribute RunbookTarget=Keyword --search-attribute RequestedBy=Keyword \
    >"$STATE/temporal.log" 2>&1 &
  started $! Temporal
  for _ in $(seq 1 100); do
    "$BIN/temporal" operator cluster health --address "$ADDR" >/dev/null 2>&1 && break
    kill -0 "${pids[0]}" 2>/dev/null || { echo "run: Temporal exited; see $STATE/temporal.log"; tail -20 "$STATE/temporal.log"; exit 1; }
    sleep 0.2
  done
fi
export STACKRUN_TEMPORAL_ADDRESS=$ADDR
echo "run: worker with config $STACKRUN_CONFIG (audit log $STATE/audit.log)"
STACKRUN_WORKER_AUDIT_LOG=${STACKRUN_WORKER_AUDIT_LOG:-$STATE/audit.log} "$BIN/stackrun-worker" &
started $! "the worker"

# The chat gateway runs when the configuration has a chat: section (or STACKRUN_CHAT_* sets keys).
# The lab's stackrun.yaml has one when $STACKRUN_LAB_DIR/chat.yaml exists (lab/lib/stackrun_yaml.sh).
chat="not configured (add a chat: section to $STACKRUN_CONFIG; docs/chatops.md)"
if grep -q '^chat:' "$STACKRUN_CONFIG" 2>/dev/null || env | grep -q '^STACKRUN_CHAT_'; then
  echo "run: chat gateway (stackrun chat serve, log $STATE/chat.log)"
  "$BIN/stackrun" chat serve >"$STATE/chat.log" 2>&1 &
  started $! "the chat gateway"
  url=""
  for _ in $(seq 1 100); do
    url=$(sed -n 's/^stackrun chat: listening on \(http:[^ ]*\).*/\1/p' "$STATE/chat.log" | head -1)
    [ -n "$url" ] && break
    kill -0 "${pids[-1]}" 2>/dev/null || { echo "run: the chat gateway exited:"; tail -20 "$STATE/chat.log"; exit 1; }
    sleep 0.1
  done
  [ -n "$url" ] || { echo "run: the chat gateway did not start within 10 s; see $STATE/chat.log"; exit 1; }
  chat="$url   (Slack: $url/slack/commands, Mattermost: $url/mattermost/commands; log $STATE/chat.log)"
fi
cat <<MSG

  Temporal web UI   http://127.0.0.1:$UI_PORT   (runs waiting for a person: RunbookStatus="WaitingApproval")
  Temporal          $ADDR
  Chat gateway      $chat
  Try               bin/stackrun run post-reboot-check --host compute1 --wait --as carol --key $LAB_DIR/operators/carol_ed25519
                    bin/stackrun list --status WaitingApproval
  Stop              Ctrl-C stops $(joined) (the lab keeps running: make lab-down)

MSG
wait -n "${pids[@]}"
