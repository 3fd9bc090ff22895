#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Stand up the Stackrun OpenStack lab on loopback (idempotent: a second run while up is a no-op).
# State: $STACKRUN_LAB_DIR (default <repo>/.state/lab; a link to /var/lib/stackrun/lab-* when the
# service users cannot reach it, lib/state.sh). See lab/README.md.
set -euo pipefail
# shellcheck source=lib/common.sh
source "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/lib/common.sh"
# shellcheck source=lib/state.sh
source "$LAB_SRC/lib/state.sh"

older=0
for a in "$@"; do
  case $a in
    --older-packages) older=1 ;;
    *) die "usage: $0 [--older-packages]" ;;
  esac
done
T0=$(date +%s)
elapsed() { echo "$(($(date +%s) - T0)) s"; }
[[ $EUID -eq 0 ]] || die "run as root (mounts, loop devices, sshd)"
LABCTL=$LAB_SRC/bin/labctl
umask 022 # the service users read what root writes here

apt_install "${PACKAGES[@]}"
lab_place_state # after the packages (they create the service users); may move $LAB
# The other libraries derive paths from $LAB when sourced: only now.
# shellcheck source=lib/services.sh
source "$LAB_SRC/lib/services.sh"
# shellcheck source=lib/configs.sh
source "$LAB_SRC/lib/configs.sh"
# shellcheck source=lib/disks.sh
source "$LAB_SRC/lib/disks.sh"
# shellcheck source=lib/check.sh
source "$LAB_SRC/lib/check.sh"
# shellcheck source=lib/alertmanager.sh
source "$LAB_SRC/lib/alertmanager.sh"
say "lab state: $LAB"
mkdir -p "$LAB/log" "$LAB/state" "$LAB/ssh" /run/sshd
exec > >(tee -a "$LAB/log/up.log") 2>&1
say "up.sh started $(date -Is) (packages ready after $(elapsed))"

# --- leftovers of a lab from another clone (other $LAB) -----------------------------------
foreign_kill() { # pid dir
  warn "killing process $1 of another lab ($2): $(tr '\0' ' ' 2>/dev/null <"/proc/$1/cmdline" | cut -c1-100)"
  kill -KILL "$1" 2>/dev/null || true
}
cleanup_leftovers() {
  local pid dir mp back loop rest
  # processes started by labctl of another lab (lab_foreign; sshd and neutron-server rewrite their
  # environment with setproctitle: the port check below and the working directory,
  # <lab>/hosts/<host>, catch those)
  while read -r pid; do
    [[ -z $pid || $pid == "$$" || $pid == "$BASHPID" ]] && continue
    dir=$(lab_foreign "$pid")
    [[ -n $dir ]] || continue
    foreign_kill "$pid" "$dir"
  done < <(lab_pids "")
  for pid in /proc/[0-9]*; do
    pid=${pid#/proc/}
    dir=$(readlink "/proc/$pid/cwd" 2>/dev/null || true)
    dir=${dir% (deleted)}
    [[ $dir =~ ^(.*)/hosts/(controller|compute[0-9]|storage[0-9])$ ]] || continue
    dir=${BASH_REMATCH[1]}
    [[ $dir != "$LAB" ]] || continue
    pid_alive "$pid" || continue
    foreign_kill "$pid" "$dir"
  done
  # mounts of another lab's Swift devices (a snapshot: unmounting rewrites /proc/self/mounts)
  local mounts
  mapfile -t mounts < <(awk '{print $2}' /proc/self/mounts)
  for mp in "${mounts[@]}"; do
    [[ $mp == */hosts/storage*/srv/node/* && $mp != "$LAB"/* ]] || continue
    warn "unmounting stale mount $mp"
    umount "$mp" 2>/dev/null || umount -l "$mp" || true
  done
  sleep 0.5 # autoclear of the loop devices happens just after the unmount
  # loop devices on another lab's images (or on deleted images)
  while read -r loop back rest; do
    [[ $back == */hosts/storage*/disks/*.img* ]] || continue
    if [[ $back != "$LAB"/* || -n $rest ]]; then
      if ! grep -q "^$loop " /proc/self/mounts; then
        warn "detaching stale loop device $loop ($back $rest)"
        losetup -d "$loop" 2>/dev/null || true
      fi
    fi
  done < <(losetup -n -O NAME,BACK-FILE -l 2>/dev/null || true)
}
cleanup_leftovers

# foreign listeners on the lab's ports: kill them on lab addresses, refuse on wildcard ones
check_ports() {
  local h svc ip port pid listening
  listening=$(awk '$4 == "0A" {print $2}' /proc/net/tcp)
  for h in "${LAB_HOSTS[@]}"; do
    for svc in sshd $(services_of "$h"); do
      svc_def "$h" "$svc"
      [[ -n $PORT ]] || continue
      [[ -n $(pidfile_pid "$PIDFILE") ]] && continue
      ip=${PORT%:*} port=${PORT#*:}
      if grep -qx "$(hex_addr 0.0.0.0 "$port")" <<<"$listening"; then
        die "port $port is taken on all addresses by pid(s) $(listener_pids 0.0.0.0 "$port" | xargs); stop it first"
      fi
      grep -qx "$(hex_addr "$ip" "$port")" <<<"$listening" || continue
      for pid in $(listener_pids "$ip" "$port"); do
        warn "killing pid $pid that holds $ip:$port (not started by this lab's labctl)"
        kill -KILL "$pid" 2>/dev/null || true
      done
    done
  done
}
check_ports

# --- configuration -----------------------------------------------------------------------
say "writing configuration"
write_mariadb; write_rabbitmq; write_keystone; write_placement; write_glance; write_nova
write_neutron; write_swift; write_sshd; write_clouds; write_alertmanager; write_cinder

# --- SSH keys ----------------------------------------------------------------------------
[[ -f $LAB/ssh/id_ed25519 ]] || ssh-keygen -q -t ed25519 -N '' -C stackrun-lab-user -f "$LAB/ssh/id_ed25519"
put "$LAB/ssh/authorized_keys" <"$LAB/ssh/id_ed25519.pub"
for h in "${LAB_HOSTS[@]}"; do
  k=$(hostdir "$h")/etc/ssh/ssh_host_ed25519_key
  [[ -f $k ]] || ssh-keygen -q -t ed25519 -N '' -C "$h" -f "$k"
done
for h in "${LAB_HOSTS[@]}"; do
  printf '[%s]:%s %s\n' "${HOST_IP[$h]}" "$SSH_PORT" "$(cut -d' ' -f1,2 "$(hostdir "$h")/etc/ssh/ssh_host_ed25519_key.pub")"
done | put "$LAB/ssh/known_hosts"

# --- Swift devices and rings -------------------------------------------------------------
for h in "${STORAGES[@]}"; do
  for dev in $(devs_of "$h"); do ensure_disk "$h" "$dev"; done
done
RB=$(hostdir "$RING_HOST")/etc/swift
for kind in account container object; do
  if [[ ! -f $RB/$kind.builder ]]; then
    case $kind in account) port=$P_ACCOUNT ;; container) port=$P_CONTAINER ;; object) port=$P_OBJECT ;; esac
    swift-ring-builder "$RB/$kind.builder" create 8 3 1 >/dev/null
    zone=0
    for h in "${STORAGES[@]}"; do
      zone=$((zone + 1))
      for dev in $(devs_of "$h"); do
        swift-ring-builder "$RB/$kind.builder" add "r1z$zone-${HOST_IP[$h]}:$port/$dev" 100 >/dev/null
      done
    done
    swift-ring-builder "$RB/$kind.builder" rebalance >/dev/null || [[ $? -eq 1 ]]
    say "ring $kind: 3 nodes x 2 devices, 3 replicas, part power 8, min_part_hours 1"
  fi
  for h in "${STORAGES[@]}"; do
    [[ -f $(hostdir "$h")/etc/swift/$kind.ring.gz ]] || cp "$RB/$kind.ring.gz" "$(hostdir "$h")/etc/swift/"
  done
done
chmod 644 "$RB"/*.ring.gz
for h in "${STORAGES[@]}"; do chmod 644 "$(hostdir "$h")"/etc/swift/*.ring.gz; done

# --- infrastructure ----------------------------------------------------------------------
if [[ ! -d $C/data/mysql/mysql ]]; then
  say "initialising the MariaDB datadir"
  rm -f "$LAB"/state/db-*.done
  if ! mariadb-install-db --defaults-file="$C/etc/my.cnf" --user=mysql --skip-test-db >"$LAB/log/mariadb-install-db.log" 2>&1; then
    tail -n 15 "$LAB/log/mariadb-install-db.log" >&2
    rm -rf "$C/data/mysql/mysql" # so that the next run initialises again
    die "mariadb-install-db failed (above; $LAB/log/mariadb-install-db.log)"
  fi
fi
for h in "${LAB_HOSTS[@]}"; do "$LABCTL" start "$h" sshd; done
"$LABCTL" start controller mariadb
"$LABCTL" start controller memcached
"$LABCTL" start controller rabbitmq-server
"$LABCTL" start controller alertmanager
for h in "${STORAGES[@]}"; do "$LABCTL" start "$h" all; done
wait_port "$CONTROLLER_IP" "$P_MYSQL" 60 mariadb

SQL=(mariadb --defaults-file="$C/etc/my.cnf" -uroot)
if [[ ! -f $LAB/state/db-users.done ]]; then
  say "creating databases and users"
  {
    for db in keystone placement glance nova_api nova nova_cell0 neutron cinder; do
      echo "CREATE DATABASE IF NOT EXISTS $db;"
    done
    echo "CREATE USER IF NOT EXISTS 'openstack'@'%' IDENTIFIED BY '$PASS';"
    echo "GRANT ALL PRIVILEGES ON *.* TO 'openstack'@'%';"
    echo "CREATE USER IF NOT EXISTS '$RO_USER'@'%' IDENTIFIED BY '$RO_PASS';"
    for db in nova nova_api cinder; do echo "GRANT SELECT ON $db.* TO '$RO_USER'@'%';"; done
    echo "FLUSH PRIVILEGES;"
  } | "${SQL[@]}"
  touch "$LAB/state/db-users.done"
fi
reports_db # the recurring checks' reports database (lib/alertmanager.sh)

# --- schemas (in parallel) ---------------------------------------------------------------
manage() { # module args... : run a python console entry point
  local mod=$1; shift
  "$PY" -c "import sys; from $mod import main; sys.argv[0] = '${mod##*.}'; sys.exit(main())" "$@"
}
SYNC_PIDS=()
sync_job() { # name command...
  local name=$1; shift
  [[ -f $LAB/state/db-$name.done ]] && return 0
  ( "$@" >"$LAB/log/db-$name.log" 2>&1 && touch "$LAB/state/db-$name.done" ) &
  SYNC_PIDS+=($!)
}
sync_keystone() {
  local kc=(--config-file "$C/etc/keystone/keystone.conf")
  keystone-manage "${kc[@]}" db_sync
  keystone-manage "${kc[@]}" fernet_setup --keystone-user root --keystone-group root
  keystone-manage "${kc[@]}" credential_setup --keystone-user root --keystone-group root
  keystone-manage "${kc[@]}" bootstrap --bootstrap-password "$PASS" \
    --bootstrap-admin-url "http://$CONTROLLER_IP:$P_KEYSTONE/v3/" \
    --bootstrap-internal-url "http://$CONTROLLER_IP:$P_KEYSTONE/v3/" \
    --bootstrap-public-url "http://$CONTROLLER_IP:$P_KEYSTONE/v3/" --bootstrap-region-id RegionOne
}
sync_nova() {
  local nc=(--config-file "$C/etc/nova/nova.conf")
  manage nova.cmd.manage "${nc[@]}" api_db sync
  manage nova.cmd.manage "${nc[@]}" cell_v2 map_cell0 --database_connection "$DBURL/nova_cell0"
  manage nova.cmd.manage "${nc[@]}" cell_v2 list_cells | grep -q ' cell1 ' ||
    manage nova.cmd.manage "${nc[@]}" cell_v2 create_cell --name cell1
  manage nova.cmd.manage "${nc[@]}" db sync
}
sync_neutron() {
  manage neutron.db.migration.cli --config-file "$C/etc/neutron/neutron.conf" \
    --config-file "$C/etc/neutron/ml2_conf.ini" upgrade heads
}
say "database schemas ($(elapsed))"
sync_job keystone sync_keystone
sync_job placement placement-manage --config-file "$C/etc/placement/placement.conf" db sync
sync_job glance manage glance.cmd.manage --config-file "$C/etc/glance/glance-api.conf" db_sync
sync_job nova sync_nova
sync_job neutron sync_neutron
sync_job cinder sync_cinder # lib/cinder.sh
for pid in "${SYNC_PIDS[@]}"; do wait "$pid" || true; done
for name in keystone placement glance nova neutron cinder; do
  [[ -f $LAB/state/db-$name.done ]] && continue
  if [[ $name == neutron ]]; then
    warn "neutron schema failed (see $LAB/log/db-neutron.log): falling back to the Neutron stand-in"
    touch "$LAB/state/neutron-stub"
    continue
  fi
  tail -n 20 "$LAB/log/db-$name.log" >&2
  die "schema of $name failed (see $LAB/log/db-$name.log)"
done

# --- OpenStack services ------------------------------------------------------------------
say "starting OpenStack services ($(elapsed))"
wait_port "$CONTROLLER_IP" "$P_RABBIT" 90 rabbitmq-server
for svc in keystone placement-api glance-api neutron-server nova-api swift-proxy; do
  "$LABCTL" start controller "$svc"
done
wait_http "http://$CONTROLLER_IP:$P_KEYSTONE/v3" 90 keystone
wait_http "http://$CONTROLLER_IP:$P_NOVA/" 120 nova-api
wait_http "http://$CONTROLLER_IP:$P_GLANCE/" 90 glance-api
wait_http "http://$CONTROLLER_IP:$P_NEUTRON/" 120 neutron-server

if [[ ! -f $LAB/state/image.raw ]]; then
  head -c 1048576 /dev/urandom >"$LAB/state/image.raw"
fi
say "bootstrap: catalog, users, flavors, image, quotas ($(elapsed))"
neutron_kind=real
[[ -f $LAB/state/neutron-stub ]] && neutron_kind=stub
CONTROLLER_IP=$CONTROLLER_IP LAB_PASS=$PASS LAB_IMAGE=$LAB/state/image.raw LAB_NEUTRON=$neutron_kind \
  "$PY" "$LAB_SRC/lib/bootstrap.py"
# conductor, scheduler and computes talk to Placement with their service users: start them now
for svc in nova-conductor nova-scheduler; do "$LABCTL" start controller "$svc"; done
for h in "${COMPUTES[@]}"; do "$LABCTL" start "$h" nova-compute; done
T_CINDER=$(date +%s)
start_cinder # lib/cinder.sh
say "cinder-api answers after $(($(date +%s) - T_CINDER)) s"

# --- cells: map the three computes -------------------------------------------------------
say "waiting for the computes to register ($(elapsed))"
for ((i = 0; i < 120; i++)); do
  n=$("${SQL[@]}" -N -e "SELECT COUNT(*) FROM nova.compute_nodes WHERE deleted = 0" 2>/dev/null || echo 0)
  [[ $n -ge ${#COMPUTES[@]} ]] && break
  sleep 1
done
m=$("${SQL[@]}" -N -e "SELECT COUNT(*) FROM nova_api.host_mappings" 2>/dev/null || echo 0)
if [[ $m -lt ${#COMPUTES[@]} ]]; then
  manage nova.cmd.manage --config-file "$C/etc/nova/nova.conf" cell_v2 discover_hosts >>"$LAB/log/db-nova.log" 2>&1
fi

# --- outputs for the rest of the project -------------------------------------------------
# shellcheck source=lib/stackrun_yaml.sh
source "$LAB_SRC/lib/stackrun_yaml.sh"
write_stackrun_yaml

say "checking every API ($(elapsed))"
ok=0
for ((i = 0; i < 60; i++)); do
  if check_apis >"$LAB/log/check.out" 2>&1; then ok=1; break; fi
  sleep 2
done
cat "$LAB/log/check.out"
check_ssh || ok=0
[[ $ok -eq 1 ]] || die "the lab is not healthy (see above and $LAB/log)"

if [[ $older -eq 1 ]]; then
  say "older package builds ($(elapsed))"
  "$LAB_SRC/bin/labpkg" older
fi
"$LAB_SRC/bin/labpkg" status

cat <<EOT

Stackrun lab is up after $(elapsed).
  Keystone     http://$CONTROLLER_IP:$P_KEYSTONE/v3   (admin/$PASS, demo/$PASS, region RegionOne)
  Placement    http://$CONTROLLER_IP:$P_PLACEMENT
  Glance       http://$CONTROLLER_IP:$P_GLANCE       (image lab-tiny)
  Nova         http://$CONTROLLER_IP:$P_NOVA/v2.1    (compute1..3, fake.FakeLiveMigrateDriver)
  Neutron      http://$CONTROLLER_IP:$P_NEUTRON       ($neutron_kind)
  Swift        http://$CONTROLLER_IP:$P_SWIFT_PROXY/v1/AUTH_<project_id>
  Cinder       http://$CONTROLLER_IP:$P_CINDER/v3/<project_id>  (controller@fake, FakeLoggingVolumeDriver; no attach)
  MariaDB      $CONTROLLER_IP:$P_MYSQL  openstack/$PASS, read-only $RO_USER/$RO_PASS (nova, nova_api, cinder)
  RabbitMQ     $CONTROLLER_IP:$P_RABBIT guest/guest
  SSH          root@127.0.0.{10..13,21..23}:$SSH_PORT  key $LAB/ssh/id_ed25519  known_hosts $LAB/ssh/known_hosts
  clouds.yaml  $LAB/clouds.yaml (cloud lab, lab-demo)
  stackrun     $LAB/stackrun.yaml
  labctl       $LABCTL   failures: $LAB_SRC/bin/labfail
EOT
