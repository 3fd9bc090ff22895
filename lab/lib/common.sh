# shellcheck shell=bash disable=SC2034  # (variables used by the scripts that source this file)
# Common definitions for the Stackrun OpenStack lab. Sourced by up.sh, down.sh, status.sh,
# bin/labctl and bin/labfail. Everything the lab writes lives under $LAB.

LAB_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LAB_REPO=$(cd "$LAB_SRC/.." && pwd)
LAB=${STACKRUN_LAB_DIR:-$LAB_REPO/.state/lab}
# $LAB may be a link to where up.sh keeps the state (lib/state.sh): the daemons, their
# configuration and the leftover checks use the real path. LAB_LINK is the link, if any.
LAB_LINK=""
if [[ -L $LAB ]]; then
  LAB_LINK=$LAB
  LAB=$(readlink -f "$LAB")
fi
export LAB LAB_SRC

PY=/usr/bin/python3
PASS=labpass
RO_USER=stackrun_ro
RO_PASS=labro

# Addresses. All APIs and infrastructure services of the controller bind CONTROLLER_IP.
CONTROLLER_IP=127.0.0.10
SSH_PORT=2222
declare -A HOST_IP=(
  [controller]=127.0.0.10
  [compute1]=127.0.0.11 [compute2]=127.0.0.12 [compute3]=127.0.0.13
  [storage1]=127.0.0.21 [storage2]=127.0.0.22 [storage3]=127.0.0.23
)
declare -A HOST_RACK=(
  [controller]=r0
  [compute1]=r1 [compute2]=r2 [compute3]=r3
  [storage1]=r1 [storage2]=r2 [storage3]=r3
)
LAB_HOSTS=(controller compute1 compute2 compute3 storage1 storage2 storage3)
COMPUTES=(compute1 compute2 compute3)
STORAGES=(storage1 storage2 storage3)
# Swift devices: names are unique across the lab (all "nodes" share one kernel), so that
# /dev/<name> (a symlink to the current loop device) and the XFS label <name> are unambiguous.
declare -A NODE_DEVS=([storage1]="sdb sdc" [storage2]="sdd sde" [storage3]="sdf sdg")
devs_of() { echo "${NODE_DEVS[$1]}"; }
RING_HOST=controller

# Ports (on CONTROLLER_IP unless said otherwise).
P_MYSQL=3306 P_RABBIT=5672 P_RABBIT_DIST=25672 P_EPMD=4369 P_MEMCACHED=11211
P_KEYSTONE=5000 P_PLACEMENT=8778 P_GLANCE=9292 P_NOVA=8774 P_NEUTRON=9696 P_SWIFT_PROXY=8080
P_OBJECT=6200 P_CONTAINER=6201 P_ACCOUNT=6202 P_RSYNC=873  # on each storage node's own address

PACKAGES=(
  mariadb-server mariadb-client rabbitmq-server memcached python3-pymysql python3-memcache
  python3-keystone python3-placement python3-glance python3-nova python3-neutron
  python3-swift swift swift-proxy swift-object swift-account swift-container
  python3-openstackclient python3-swiftclient python3-novaclient
  uwsgi-core uwsgi-plugin-python3 xfsprogs rsync curl openssh-server openssh-client
  prometheus-alertmanager  # the recurring checks' alerts (lib/alertmanager.sh)
  python3-cinder  # lib/cinder.sh
  qemu-utils qemu-system-common fdisk e2fsprogs  # inspect-disk: qemu-img, qemu-storage-daemon, sfdisk (docs/disk-inspection.md)
)

say()  { printf '\033[1m[lab]\033[0m %s\n' "$*"; }
warn() { printf '\033[33m[lab] warning:\033[0m %s\n' "$*" >&2; }
die()  { printf '\033[31m[lab] error:\033[0m %s\n' "$*" >&2; exit 1; }

hostdir() { printf '%s/hosts/%s' "$LAB" "$1"; }

is_lab_host() {
  local h
  for h in "${LAB_HOSTS[@]}"; do [[ $h == "$1" ]] && return 0; done
  return 1
}

# pid_alive PID: true if PID runs and is not a zombie (PID 1 reaps slowly here).
pid_alive() {
  local pid=$1 state
  [[ -n $pid && -r /proc/$pid/stat ]] || return 1
  state=$(sed -E 's/^[0-9]+ \(.*\) ([A-Za-z]) .*/\1/' "/proc/$pid/stat" 2>/dev/null) || return 1
  [[ $state != Z && $state != X ]]
}

# proc_start PID: start time of PID in clock ticks since boot (field 22 of /proc/PID/stat).
proc_start() {
  sed -E 's/^.*\) //' "/proc/$1/stat" 2>/dev/null | awk '{print $20}'
}

# pidfile_pid FILE: the PID recorded in FILE ("PID STARTTIME") if that very process still runs
# (a reused PID or a zombie does not count); empty otherwise.
pidfile_pid() {
  local pid="" start=""
  [[ -s $1 ]] || return 0
  read -r pid start <"$1" || true
  pid_alive "$pid" || return 0
  [[ -z $start || $(proc_start "$pid") == "$start" ]] || return 0
  echo "$pid"
}

# port_open HOST PORT: true when something accepts TCP connections there.
port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# wait_port HOST PORT SECONDS NAME
wait_port() {
  local i
  for ((i = 0; i < $3 * 2; i++)); do
    port_open "$1" "$2" && return 0
    sleep 0.5
  done
  die "$4 did not open $1:$2 within $3 s (see $LAB/log)"
}

# wait_http URL SECONDS NAME: any HTTP answer (even 401/404) counts.
wait_http() {
  local i code
  for ((i = 0; i < $2 * 2; i++)); do
    code=$(curl -s -o /dev/null -m 3 -w '%{http_code}' "$1" 2>/dev/null || true)
    [[ $code != 000 && -n $code ]] && return 0
    sleep 0.5
  done
  die "$3 did not answer at $1 within $2 s (see $LAB/log)"
}

# hex_addr IP PORT: the address as /proc/net/tcp writes it (127.0.0.10:5000 -> 0A00007F:1388).
hex_addr() {
  local a b c d
  IFS=. read -r a b c d <<<"$1"
  printf '%02X%02X%02X%02X:%04X' "$d" "$c" "$b" "$a" "$2"
}

# lab_pids [DIR]: PIDs of the processes started by labctl for the lab at DIR (default: any lab).
lab_pids() {
  grep -l -a -s "STACKRUN_LAB_DIR=${1:-}" /proc/[0-9]*/environ 2>/dev/null | cut -d/ -f3 || true
}

# listener_pids IP PORT: PIDs of the processes that listen on IP:PORT (or on 0.0.0.0:PORT).
listener_pids() {
  local ip=$1 port=$2 inodes inode pid fd
  inodes=$(awk -v a="$(hex_addr "$ip" "$port")" -v b="$(hex_addr 0.0.0.0 "$port")" \
    '$4 == "0A" && ($2 == a || $2 == b) {print $10}' /proc/net/tcp)
  [[ -n $inodes ]] || return 0
  for inode in $inodes; do
    for fd in /proc/[0-9]*/fd/*; do
      if [[ $(readlink "$fd" 2>/dev/null) == "socket:[$inode]" ]]; then
        pid=${fd#/proc/}; pid=${pid%%/*}
        echo "$pid"
      fi
    done
  done | sort -u
}

# apt_install PKG...: installs the missing ones only; never starts anything.
apt_install() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  say "installing ${#missing[@]} missing Debian packages: ${missing[*]}"
  if [[ ! -e /usr/sbin/policy-rc.d ]] || ! grep -q 'exit 101' /usr/sbin/policy-rc.d; then
    printf '#!/bin/sh\n# stackrun lab: never start services from maintainer scripts\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
  fi
  if [[ -z $(find /var/lib/apt/lists -maxdepth 1 -name '*_Packages*' -mtime -30 2>/dev/null | head -1) ]]; then
    say "apt lists missing or older than 30 days: apt-get update"
    apt-get -o DPkg::Lock::Timeout=600 update -q || warn "apt-get update reported errors (unreachable extra sources?)"
  fi
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q \
    --no-install-recommends "${missing[@]}"
}
