# shellcheck shell=bash disable=SC2034  # (svc_def sets variables for its callers)
# Service table of the lab: which services each host runs and how each one is started.
# svc_def HOST SERVICE sets: CMD (argv array), RUNAS (user or empty), ENVS (array of K=V),
# LOG (file), PIDFILE, PORT (ip:port checked by `status`, or empty).
# Sourced after common.sh. Cinder's services: lib/cinder.sh.
# shellcheck source=cinder.sh
source "$LAB_SRC/lib/cinder.sh"

services_of() {
  case $1 in
    controller)
      echo mariadb rabbitmq-server memcached keystone placement-api glance-api \
        nova-api nova-conductor nova-scheduler ${CINDER_SERVICES[*]} neutron-server swift-proxy alertmanager ;;
    compute[0-9]) echo nova-compute ;;
    storage[0-9])
      echo rsync swift-account swift-container swift-object \
        swift-account-replicator swift-container-replicator swift-object-replicator ;;
    *) return 1 ;;
  esac
}

svc_def() {
  local host=$1 svc=$2 d ip
  d=$(hostdir "$host")
  ip=${HOST_IP[$host]}
  CMD=() RUNAS="" ENVS=() PORT=""
  LOG=$d/log/$svc.log
  PIDFILE=$d/run/$svc.pid
  case $host:$svc in
    *:sshd)
      CMD=(/usr/sbin/sshd -D -f "$d/etc/ssh/sshd_config" -E "$LOG")
      PORT=$ip:$SSH_PORT ;;
    controller:mariadb)
      CMD=(/usr/sbin/mariadbd --defaults-file="$d/etc/my.cnf")
      PORT=$ip:$P_MYSQL ;;
    controller:rabbitmq-server)
      RUNAS=rabbitmq
      ENVS=(HOME="$d/data/rabbitmq" RABBITMQ_MNESIA_BASE="$d/data/rabbitmq/mnesia"
        RABBITMQ_LOG_BASE="$d/log/rabbitmq" RABBITMQ_NODENAME=rabbit@localhost
        RABBITMQ_NODE_IP_ADDRESS="$ip" RABBITMQ_NODE_PORT="$P_RABBIT" RABBITMQ_DIST_PORT="$P_RABBIT_DIST"
        ERL_EPMD_ADDRESS="$ip" ERL_EPMD_PORT="$P_EPMD" RABBITMQ_PID_FILE="$d/data/rabbitmq/rabbit.pid"
        RABBITMQ_CONFIG_FILE="$d/etc/rabbitmq/rabbitmq" RABBITMQ_ENABLED_PLUGINS_FILE="$d/etc/rabbitmq/enabled_plugins"
        RABBITMQ_CONF_ENV_FILE="$d/etc/rabbitmq/rabbitmq-env.conf"
        RABBITMQ_SERVER_ERL_ARGS="+S 1:1 +A 4 +P 65536 -kernel inet_dist_use_interface {127,0,0,10}")
      CMD=(/usr/lib/rabbitmq/bin/rabbitmq-server)
      PORT=$ip:$P_RABBIT ;;
    controller:memcached)
      CMD=(/usr/bin/memcached -u memcache -l "$ip" -p "$P_MEMCACHED" -U 0 -m 64 -c 1024)
      PORT=$ip:$P_MEMCACHED ;;
    controller:keystone)
      ENVS=(OS_KEYSTONE_CONFIG_DIR="$d/etc/keystone")
      CMD=(/usr/bin/uwsgi --plugin python3 --http-socket "$ip:$P_KEYSTONE"
        --wsgi-file /usr/bin/keystone-wsgi-public --processes 1 --threads 2 --need-app
        --add-header "Connection: close" --buffer-size 65535 --die-on-term)
      PORT=$ip:$P_KEYSTONE ;;
    controller:placement-api)
      ENVS=(OS_PLACEMENT_CONFIG_DIR="$d/etc/placement")
      CMD=(/usr/bin/uwsgi --plugin python3 --http-socket "$ip:$P_PLACEMENT"
        --wsgi-file /usr/bin/placement-api --processes 1 --threads 2 --need-app
        --add-header "Connection: close" --buffer-size 65535 --die-on-term)
      PORT=$ip:$P_PLACEMENT ;;
    controller:glance-api)
      CMD=("$PY" -c 'import sys; from glance.cmd.api import main; sys.argv[0] = "glance-api"; sys.exit(main())'
        --config-file "$d/etc/glance/glance-api.conf" --log-file "$LOG")
      PORT=$ip:$P_GLANCE ;;
    controller:nova-api)
      # Under uwsgi no green thread runs between requests to send AMQP heartbeats: RabbitMQ drops
      # the idle connection and the next RPC can hang on it. The API needs no heartbeat here.
      # One thread per process: with 2 threads per process the lab lost RPC replies (service
      # updates and server diagnostics timed out after 60 s: 2 of 36 calls, 0 of 36 with 1).
      ENVS=(OS_NOVA_CONFIG_DIR="$d/etc/nova" OS_OSLO_MESSAGING_RABBIT__HEARTBEAT_TIMEOUT_THRESHOLD=0)
      CMD=(/usr/bin/uwsgi --plugin python3 --http-socket "$ip:$P_NOVA"
        --wsgi-file "$d/etc/nova/nova-api.wsgi" --master --processes 3 --threads 1 --harakiri 120 --need-app
        --add-header "Connection: close" --buffer-size 65535 --die-on-term)
      PORT=$ip:$P_NOVA ;;
    controller:nova-conductor | controller:nova-scheduler | compute[0-9]:nova-compute)
      CMD=("$PY" -c "import sys; from nova.cmd.${svc#nova-} import main; sys.argv[0] = '$svc'; sys.exit(main())"
        --config-file "$d/etc/nova/nova.conf" --log-file "$LOG") ;;
    controller:neutron-server)
      CMD=("$PY" -c 'import sys; from neutron.cmd.eventlet.server import main; sys.argv[0] = "neutron-server"; sys.exit(main())'
        --config-file "$d/etc/neutron/neutron.conf" --config-file "$d/etc/neutron/ml2_conf.ini" --log-file "$LOG")
      PORT=$ip:$P_NEUTRON ;;
    controller:neutron-stub)
      CMD=("$PY" "$LAB_SRC/lib/neutron_stub.py" "$ip" "$P_NEUTRON")
      PORT=$ip:$P_NEUTRON ;;
    controller:alertmanager) # lib/alertmanager.sh writes its config
      CMD=(/usr/bin/prometheus-alertmanager --config.file="$d/etc/alertmanager/alertmanager.yml"
        --storage.path="$d/data/alertmanager" --web.listen-address="$ip:9093" --cluster.listen-address=)
      PORT=$ip:9093 ;;
    controller:swift-proxy)
      RUNAS=swift
      CMD=(/usr/bin/swift-proxy-server "$d/etc/swift/proxy-server.conf" -v)
      PORT=$ip:$P_SWIFT_PROXY ;;
    storage[0-9]:rsync)
      CMD=(/usr/bin/rsync --daemon --no-detach --config="$d/etc/swift/rsyncd.conf" --address="$ip" --port="$P_RSYNC" --log-file="$LOG")
      PORT=$ip:$P_RSYNC ;;
    storage[0-9]:swift-account | storage[0-9]:swift-container | storage[0-9]:swift-object)
      RUNAS=swift
      CMD=("/usr/bin/$svc-server" "$d/etc/swift/${svc#swift-}-server.conf" -v)
      case $svc in
        swift-object) PORT=$ip:$P_OBJECT ;;
        swift-container) PORT=$ip:$P_CONTAINER ;;
        swift-account) PORT=$ip:$P_ACCOUNT ;;
      esac ;;
    storage[0-9]:swift-*-replicator)
      local kind=${svc#swift-}; kind=${kind%-replicator}
      RUNAS=swift
      CMD=("/usr/bin/$svc" "$d/etc/swift/$kind-server.conf" -v) ;;
    *) svc_def_cinder "$host" "$svc" || return 1 ;;
  esac
}
