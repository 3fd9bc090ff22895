#!/usr/bin/env bash
# make run: local Temporal dev server with its web UI and Stackrun's search attributes, then a
# worker. The target is the OpenStack lab (brought up first) unless STACKRUN_CONFIG names another
# configuration. Ctrl-C stops the worker and Temporal; the lab keeps running (make lab-down).
set -euo pipefail
cd "$(dirname "$0")/.."
STATE=${STATE:-$PWD/.state}
mkdir -p "$STATE"
LAB_DIR=${STACKRUN_LAB_DIR:-$STATE/lab}

if [ -z "${STACKRUN_CONFIG:-}" ]; then
  echo "run: bringing up the OpenStack lab (state in $LAB_DIR; set STACKRUN_CONFIG to use another target)"
  STACKRUN_LAB_DIR=$LAB_DIR lab/up.sh
  export STACKRUN_CONFIG=$LAB_DIR/stackrun.yaml
fi

pids=()
cleanup() {
  trap - INT TERM EXIT
  echo
  echo "run: stopping worker and Temporal"
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup INT TERM EXIT

if bin/temporal operator cluster health --address 127.0.0.1:7233 >/dev/null 2>&1; then
  echo "run: a Temporal server already answers on 127.0.0.1:7233; using it"
else
  echo "run: starting Temporal dev server (SQLite in $STATE/temporal.db, log $STATE/temporal.log)"
  bin/temporal server start-dev --ip 127.0.0.1 --port 7233 --ui-ip 127.0.0.1 --ui-port 8233 \
    --db-filename "$STATE/temporal.db" --log-level warn \
    --search-attribute RunbookStatus=Keyword --search-attribute RunbookStep=Keyword \
    --search-attribute RunbookTarget=Keyword --search-attribute RequestedBy=Keyword \
    >"$STATE/temporal.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 100); do
    bin/temporal operator cluster health --address 127.0.0.1:7233 >/dev/null 2>&1 && break
    kill -0 "${pids[0]}" 2>/dev/null || { echo "run: Temporal exited; see $STATE/temporal.log"; tail -20 "$STATE/temporal.log"; exit 1; }
    sleep 0.2
  done
fi
echo "run: worker with config $STACKRUN_CONFIG (audit log $STATE/audit.log)"
STACKRUN_WORKER_AUDIT_LOG=${STACKRUN_WORKER_AUDIT_LOG:-$STATE/audit.log} bin/stackrun-worker &
pids+=($!)
cat <<MSG

  Temporal web UI   http://127.0.0.1:8233   (runs waiting for a person: RunbookStatus="WaitingApproval")
  Temporal          127.0.0.1:7233
  Try               bin/stackrun run post-reboot-check --host compute1 --wait
                    bin/stackrun list --status WaitingApproval
  Stop              Ctrl-C (the lab keeps running: make lab-down)

MSG
wait -n "${pids[@]}"
