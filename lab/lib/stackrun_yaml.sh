# shellcheck shell=bash
# Writes $LAB/stackrun.yaml (docs/config-schema.md) and $LAB/lab.env. Sourced by up.sh.

svc_yaml() { # host svc [amqp]
  svc_def "$1" "$2"
  local log=${LOG/\/hosts\/$1\//\/hosts\/\{host\}\/}
  printf '      - name: %s\n        log: %s\n' "$2" "$log"
  [[ ${3:-} == amqp ]] && printf '        amqp: true\n'
  return 0
}

# lab_operator_keys: the lab's operators (alice and bob approve, carol may only start and reject)
# get ed25519 key pairs in $LAB/operators, and their public keys go to $LAB/operators/keys, the
# trust.keys_file of the lab's stackrun.yaml. Sign as one of them with
# `stackrun --key $LAB/operators/alice_ed25519 ...` (or ssh-add it).
lab_operator_keys() {
  local o
  mkdir -p "$LAB/operators"
  chmod 700 "$LAB/operators"
  for o in alice bob carol; do
    [[ -f $LAB/operators/${o}_ed25519 ]] || ssh-keygen -q -t ed25519 -N '' -C "$o@stackrun-lab" -f "$LAB/operators/${o}_ed25519"
  done
  for o in alice bob carol; do printf '%s %s\n' "$o" "$(cat "$LAB/operators/${o}_ed25519.pub")"; done | put "$LAB/operators/keys"
}

# lab_chat_gateway_yaml: with a chat: section of your own in $LAB/chat.yaml (docs/chatops.md),
# appended to stackrun.yaml below, the chat gateway gets a key pair of its own in $LAB/operators
# and trust.chat_gateway, vouching for every lab operator (chat.users and chat.roles, the policy
# and the two-person rule still decide); make run then starts the gateway. Nothing without it.
lab_chat_gateway_yaml() {
  local k=$LAB/operators/chat_gateway_ed25519
  [[ -f $LAB/chat.yaml ]] || return 0
  [[ -f $k ]] || ssh-keygen -q -t ed25519 -N '' -C stackrun-chat@stackrun-lab -f "$k"
  printf '  chat_gateway:\n    public_key: "%s"\n    private_key_file: %s\n' "$(cut -d' ' -f1,2 "$k.pub")" "$k"
  printf '    vouch:\n      - operators: ["*"]\n        gates: ["*"]\n        runbooks: ["*"]\n'
}

# stackrun_outage_yaml prints the outage: section (docs/outage-recovery.md): the lab's priority
# table, the guide's tiers with the lab's services (tiers 3 and 100 have nothing in the lab and are
# reported empty). The guide names neither placement nor neutron-server: each joins the first
# guide tier after everything it needs (database, message queue, memcached: 10; keystone: 15) and
# before what needs it: placement with cinder-scheduler (20), before nova-scheduler and
# nova-conductor (22); neutron-server with Glance (21), before nova-api (99) and the instances.
# Tiers of their own (16, 17) made the recovery wait for each Python service's start alone, on a
# 2-core lab. The storage tier starts its 21 Swift services at once (parallel: 21), as up.sh does
# (`labctl start storageN all`); the other tiers keep the policy's default_parallelism.
# e2e/outage_test.go prints it too: the lab tests run this tree's table.
stackrun_outage_yaml() {
  local C
  C=$(hostdir controller)
  cat <<EOT
outage:
  instances: ran-before
  database_host: controller
  database_defaults_file: $C/etc/my.cnf
  databases: [keystone, glance, placement, nova_api, nova, nova_cell0, neutron]
  tiers:
    - {priority: 1, name: internal network, roles: ["*"], host_verify: [reachable]}
    - priority: 2
      name: backend storage
      roles: [storage]
      host_verify: [swift-devices]
      parallel: 21
      services:
        - {name: rsync, verify: [process, "port:$P_RSYNC"]}
        - {name: swift-account, verify: [process, "port:$P_ACCOUNT"]}
        - {name: swift-container, verify: [process, "port:$P_CONTAINER"]}
        - {name: swift-object, verify: [process, "port:$P_OBJECT"]}
        - {name: swift-account-replicator, verify: [process]}
        - {name: swift-container-replicator, verify: [process]}
        - {name: swift-object-replicator, verify: [process]}
    - {priority: 3, name: public network, roles: [network], services: [{name: neutron-l3-agent, verify: [process]}]}
    - {priority: 4, name: nova-compute hosts, roles: [compute], services: [{name: nova-compute, verify: [process]}]}
    - {priority: 5, name: user instances, instances: true}
    - priority: 10
      name: message queue and database
      roles: [controller]
      checks: [db-integrity]
      services:
        - {name: mariadb, verify: [process, "port:$P_MYSQL"]}
        - {name: rabbitmq-server, verify: [process, "port:$P_RABBIT"]}
        - {name: memcached, verify: [process, "port:$P_MEMCACHED"]}
    - {priority: 15, name: keystone, roles: [controller], services: [{name: keystone, verify: [process, "port:$P_KEYSTONE", "api:identity"]}]}
    - priority: 20
      name: cinder-scheduler and placement
      roles: [controller]
      services:
        - {name: cinder-scheduler, verify: [process, amqp]}
        - {name: cinder-volume, verify: [process]} # its backend child holds the AMQP connection
        - {name: placement-api, verify: [process, "port:$P_PLACEMENT", "api:placement"]}
    - priority: 21
      name: image catalogue and delivery, network API
      roles: [controller, proxy]
      services:
        - {name: glance-api, verify: [process, "port:$P_GLANCE", "api:image"]}
        - {name: swift-proxy, verify: [process, "port:$P_SWIFT_PROXY", "api:object-store"]}
        - {name: neutron-server, verify: [process, "port:$P_NEUTRON", "api:network"]}
    - priority: 22
      name: nova-scheduler
      roles: [controller]
      services:
        - {name: nova-conductor, verify: [process, amqp]}
        - {name: nova-scheduler, verify: [process, amqp]}
    - {priority: 98, name: cinder-api, roles: [controller], services: [{name: cinder-api, verify: [process, "port:$P_CINDER", "api:block-storage"]}]}
    - priority: 99
      name: nova-api
      roles: [controller]
      checks: [hypervisors]
      services:
        - {name: nova-api, verify: [process, "port:$P_NOVA", "api:compute"]}
    - {priority: 100, name: dashboard, roles: [dashboard], services: [{name: apache2, verify: [process]}]}
EOT
}

write_stackrun_yaml() {
  local labctl=$LAB_SRC/bin/labctl h roles s
  lab_operator_keys
  {
    cat <<EOT
# Stackrun configuration for the lab (written by lab/up.sh; schema: docs/config-schema.md).
# Service logs: the paths below contain {host}; the lab's log_tail template goes through labctl,
# which resolves the log of <host>/<service> itself (every lab host shares one filesystem).
temporal:
  address: 127.0.0.1:7233
  namespace: default
  task_queue: stackrun
openstack:
  cloud: lab
  clouds_file: $LAB/clouds.yaml
  region: RegionOne
  compute_microversion: "2.90"
databases:
  nova_dsn: $RO_USER:$RO_PASS@tcp($CONTROLLER_IP:$P_MYSQL)/nova?parseTime=true
  nova_api_dsn: $RO_USER:$RO_PASS@tcp($CONTROLLER_IP:$P_MYSQL)/nova_api?parseTime=true
  cinder_dsn: $RO_USER:$RO_PASS@tcp($CONTROLLER_IP:$P_MYSQL)/cinder?parseTime=true
  # Writable (the lab's all-privileges account): only recover-host --db-rewrite-fallback uses it.
  nova_rw_dsn: openstack:$PASS@tcp($CONTROLLER_IP:$P_MYSQL)/nova?parseTime=true
ssh:
  user: root
  port: $SSH_PORT
  key_file: $LAB/ssh/id_ed25519
  use_agent: false
  known_hosts_file: $LAB/ssh/known_hosts
  connect_timeout: 10s
  command_timeout: 2m
  max_output_bytes: 1048576
inventory:
EOT
    for h in "${LAB_HOSTS[@]}"; do
      case $h in
        controller) roles="[controller, proxy]" ;;
        compute*) roles="[compute]" ;;
        storage*) roles="[storage]" ;;
      esac
      printf '  %s:\n    address: %s\n    port: %s\n    roles: %s\n    labels:\n' "$h" "${HOST_IP[$h]}" "$SSH_PORT" "$roles"
      printf '      rack: %s\n      switch: sw-%s\n' "${HOST_RACK[$h]}" "${HOST_RACK[$h]}"
      case $h in
        controller)
          printf '      swift_ring_builder: "true"\n      swift_dir: %s/etc/swift\n' "$(hostdir "$h")" ;;
        storage*)
          printf '      swift_dir: %s/etc/swift\n      swift_devices: %s/srv/node\n      swift_disks: %s\n' \
            "$(hostdir "$h")" "$(hostdir "$h")" "$(devs_of "$h" | tr ' ' ,)" ;;
      esac
    done
    echo "roles:"
    echo "  controller:"
    echo "    services:"
    for s in mariadb rabbitmq-server memcached keystone placement-api glance-api nova-api; do svc_yaml controller "$s"; done
    svc_yaml controller nova-conductor amqp
    svc_yaml controller nova-scheduler amqp
    svc_yaml controller neutron-server
    svc_yaml controller cinder-api
    svc_yaml controller cinder-scheduler amqp
    # no amqp: cinder-volume's main process only supervises the backend's child, which holds the
    # connection (and logs none); verify asks os-services for a report since the start instead
    svc_yaml controller cinder-volume
    echo "  proxy:"
    echo "    services:"
    svc_yaml controller swift-proxy
    echo "  compute:"
    echo "    services:"
    svc_yaml compute1 nova-compute amqp
    echo "  storage:"
    echo "    services:"
    for s in $(services_of storage1); do svc_yaml storage1 "$s"; done
    cat <<EOT
commands:
  service_start: [$labctl, start, "{host}", "{service}"]
  service_stop: [$labctl, stop, "{host}", "{service}"]
  service_status: [$labctl, status, "{host}", "{service}"]
  log_tail: [$labctl, tail, "{host}", "{service}", "{lines}"]
  service_pid: [$labctl, pid, "{host}", "{service}"]
  # a host's boot time is that of its last "reboot" (labctl reboot: rolling-maintenance --action reboot)
  uptime: [$labctl, uptime, "{host}"]
  host_reboot: [$labctl, reboot, "{host}"]
  # evacuate's configuration-management hold (policy.config_hold): labctl's mask, like systemctl's
  systemd_mask: [$labctl, mask, "{host}", "{service}"]
  systemd_unmask: [$labctl, unmask, "{host}", "{service}"]
  # the staged upgrade: the lab has the python3-* packages only, so the tools of nova-common,
  # glance-common and cinder-common run through labmanage; keystone-manage and placement-manage
  # are the packaged ones (the catalogue's defaults)
  schema_sync_glance: [$LAB_SRC/bin/labmanage, glance-manage, --config-file, "{config_file}", db_sync]
  schema_sync_nova_api: [$LAB_SRC/bin/labmanage, nova-manage, --config-file, "{config_file}", api_db, sync]
  schema_sync_nova: [$LAB_SRC/bin/labmanage, nova-manage, --config-file, "{config_file}", db, sync]
  schema_sync_cinder: [$LAB_SRC/bin/labmanage, cinder-manage, --config-file, "{config_file}", db, sync]
  nova_upgrade_check: [$LAB_SRC/bin/labmanage, nova-status, --config-file, "{config_file}", upgrade, check]
  nova_online_data_migrations: [$LAB_SRC/bin/labmanage, nova-manage, --config-file, "{config_file}", db, online_data_migrations, --max-count, "{count}"]
policy:
  approvers: [alice, bob]
  two_person_gates: [approve-plan, confirm-host-dead, confirm-host-dead-override, force-complete, disk-replaced, db-rewrite, data-access, release-notes-read, tested-on-staging, canary-ok, config-updated, rollback]
  gate_timeout: 4h
  escalation: notify-then-wait
  escalation_repeats: 1
  max_hosts_out_of_service: 2
  default_parallelism: 4
  activity_max_attempts: 5
worker:
  audit_log: $LAB/log/stackrun-audit.jsonl
# The staged upgrade (lab/bin/labpkg older|newer switches the builds). Which hosts run a service
# follows from roles: keystone, placement-api, glance-api and the nova control plane on the
# controller, nova-compute on compute1..3; Cinder (lib/cinder.sh) on the controller: python3-cinder
# has one build in Debian 12, so its package step says "already at the target version".
upgrade:
  backup_dir: $LAB/hosts/{host}/backups
  database_host: controller
  database_defaults_file: $C/etc/my.cnf
  order: [keystone, placement, glance, nova, cinder]
  services:
    keystone: {config_dir: "$LAB/hosts/{host}/etc/keystone", config_file: "$LAB/hosts/{host}/etc/keystone/keystone.conf"}
    placement: {config_dir: "$LAB/hosts/{host}/etc/placement", config_file: "$LAB/hosts/{host}/etc/placement/placement.conf"}
    glance: {config_dir: "$LAB/hosts/{host}/etc/glance", config_file: "$LAB/hosts/{host}/etc/glance/glance-api.conf"}
    nova: {config_dir: "$LAB/hosts/{host}/etc/nova", config_file: "$LAB/hosts/{host}/etc/nova/nova.conf"}
    cinder: {config_dir: "$LAB/hosts/{host}/etc/cinder", config_file: "$LAB/hosts/{host}/etc/cinder/cinder.conf"}
# Who signed what (docs/chatops.md, "Trust model"): the lab's operators' keys. Sign with
# stackrun --key $LAB/operators/<alice|bob|carol>_ed25519 ... (or ssh-add the key).
trust:
  keys_file: $LAB/operators/keys
  max_signature_age: 10m
EOT
    lab_chat_gateway_yaml
    cat <<EOT
# inspect-disk: every lab compute keeps its instances under its own host directory (the fake
# driver writes no disk there; e2e tests put one where Nova's instance directory says it is).
inspect_disk:
  instances_path: $LAB/hosts/{host}/data/nova/instances
swift:
  ring_builder_host: $RING_HOST
  builder_dir: $(hostdir "$RING_HOST")/etc/swift
  parallelism: 8
  nodes:
EOT
    # Every Swift node has its own swift dir and recon cache; storage nodes list their devices
    # (/dev/<name> is a symlink to the device's current loop device).
    local zone=0
    for h in "${LAB_HOSTS[@]}"; do
      case $h in
        controller)
          printf '    %s:\n      swift_dir: %s/etc/swift\n      recon_cache_path: %s/cache/swift\n' "$h" "$(hostdir "$h")" "$(hostdir "$h")" ;;
        storage*)
          zone=$((zone + 1))
          printf '    %s:\n      swift_dir: %s/etc/swift\n      recon_cache_path: %s/cache/swift\n      devices_dir: %s/srv/node\n      zone: %d\n      devices:\n' \
            "$h" "$(hostdir "$h")" "$(hostdir "$h")" "$(hostdir "$h")" "$zone"
          for d in $(devs_of "$h"); do printf '        %s: ""\n' "$d"; done ;;
      esac
    done
    stackrun_checks_yaml
    stackrun_outage_yaml
    # A chat: section of your own (lab_chat_gateway_yaml above).
    [[ ! -f $LAB/chat.yaml ]] || cat "$LAB/chat.yaml"
  } | put "$LAB/stackrun.yaml"

  {
    echo "# Stackrun lab facts for shell scripts and tests (written by lab/up.sh)."
    echo "STACKRUN_LAB_DIR=$LAB"
    echo "LAB_SRC=$LAB_SRC"
    echo "LABCTL=$LAB_SRC/bin/labctl"
    echo "LABFAIL=$LAB_SRC/bin/labfail"
    echo "OS_CLIENT_CONFIG_FILE=$LAB/clouds.yaml"
    echo "OS_CLOUD=lab"
    echo "LAB_SSH_PORT=$SSH_PORT"
    echo "LAB_SSH_KEY=$LAB/ssh/id_ed25519"
    echo "LAB_OPERATOR_KEYS=$LAB/operators"
    echo "LAB_KNOWN_HOSTS=$LAB/ssh/known_hosts"
    echo "LAB_RING_HOST=$RING_HOST"
    echo "LAB_RING_DIR=$(hostdir "$RING_HOST")/etc/swift"
    for h in "${LAB_HOSTS[@]}"; do echo "LAB_IP_$h=${HOST_IP[$h]}"; done
  } | put "$LAB/lab.env"
}
