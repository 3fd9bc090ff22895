# shellcheck shell=bash disable=SC2034  # (variables used by the scripts that source this file)
# Prometheus Alertmanager and the reports database of Stackrun's recurring checks (issue 6).
# Sourced by up.sh (package, config, start, database, stackrun.yaml) and status.sh (API check);
# the service itself is `labctl ... controller alertmanager` (lib/services.sh).
#   Alertmanager   http://127.0.0.10:9093 (v2 API), config $LAB/hosts/controller/etc/alertmanager/
#                  alertname=StackrunAlertingTest is routed to the weekly check's own webhook
#                  receiver on 127.0.0.1:9099; everything else to a receiver that drops it.
#   Reports DB     MariaDB database stackrun, user stackrun/labstackrun (all on stackrun.*)

P_ALERTMANAGER=9093
ALERT_RECEIVER=127.0.0.1:9099
REPORTS_DB=stackrun REPORTS_USER=stackrun REPORTS_PASS=labstackrun

write_alertmanager() {
  local d
  d=$(hostdir controller)
  mkdir -p "$d/etc/alertmanager" "$d/data/alertmanager"
  put "$d/etc/alertmanager/alertmanager.yml" <<EOT
# Lab Alertmanager (written by lab/up.sh, lib/alertmanager.sh).
route:
  receiver: drop
  group_by: [alertname, rack]
  group_wait: 30s
  group_interval: 5m
  repeat_interval: 4h
  routes:
    - matchers: ['alertname="StackrunAlertingTest"']
      receiver: stackrun-alerting-test
      group_by: [stackrun_test_id]
      group_wait: 1s
      group_interval: 1s
      repeat_interval: 1h
receivers:
  - name: drop
  - name: stackrun-alerting-test
    webhook_configs:
      - url: http://$ALERT_RECEIVER/
        send_resolved: false
EOT
}

# reports_db: the stackrun database and its user (idempotent).
reports_db() {
  mariadb --defaults-file="$(hostdir controller)/etc/my.cnf" -uroot <<EOT
CREATE DATABASE IF NOT EXISTS $REPORTS_DB CHARACTER SET utf8mb4;
CREATE USER IF NOT EXISTS '$REPORTS_USER'@'%' IDENTIFIED BY '$REPORTS_PASS';
GRANT ALL PRIVILEGES ON $REPORTS_DB.* TO '$REPORTS_USER'@'%';
FLUSH PRIVILEGES;
EOT
}

# stackrun_checks_yaml: the checks: section of $LAB/stackrun.yaml.
stackrun_checks_yaml() {
  cat <<EOT
checks:
  time_zone: UTC
  reports_dsn: $REPORTS_USER:$REPORTS_PASS@tcp($CONTROLLER_IP:$P_MYSQL)/$REPORTS_DB?parseTime=true
  alertmanager:
    url: http://$CONTROLLER_IP:$P_ALERTMANAGER
    receiver_address: $ALERT_RECEIVER
    delivery_timeout: 60s
EOT
}

check_alertmanager() {
  if curl -fsS -m 5 "http://$CONTROLLER_IP:$P_ALERTMANAGER/api/v2/status" >/dev/null 2>&1; then
    echo "  alertmanager      ok  http://$CONTROLLER_IP:$P_ALERTMANAGER"
  else
    echo "  alertmanager      DOWN  http://$CONTROLLER_IP:$P_ALERTMANAGER"
    return 1
  fi
}
