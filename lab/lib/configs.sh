# shellcheck shell=bash
# Writers of every configuration file of the lab. Sourced by up.sh after common.sh.
# Each writer is deterministic: running it again while the lab is up changes nothing.

C=$(hostdir controller)
DBURL="mysql+pymysql://openstack:$PASS@$CONTROLLER_IP:$P_MYSQL"
KS=http://$CONTROLLER_IP:$P_KEYSTONE
MEMC=$CONTROLLER_IP:$P_MEMCACHED
RABBIT=rabbit://guest:guest@$CONTROLLER_IP:$P_RABBIT/

# put FILE < content: replace FILE only when the content differs.
put() {
  local f=$1 tmp
  mkdir -p "$(dirname "$f")"
  tmp=$(mktemp "$f.XXXXXX")
  cat >"$tmp"
  if [[ -f $f ]] && cmp -s "$tmp" "$f"; then rm -f "$tmp"; else chmod 644 "$tmp"; mv -f "$tmp" "$f"; fi
}

authtoken() { # user
  cat <<EOT
[keystone_authtoken]
www_authenticate_uri = $KS
auth_url = $KS
memcached_servers = $MEMC
auth_type = password
project_domain_name = Default
user_domain_name = Default
project_name = service
username = $1
password = $PASS
EOT
}

svc_auth() { # section user
  cat <<EOT
[$1]
auth_type = password
auth_url = $KS
project_domain_name = Default
user_domain_name = Default
project_name = service
username = $2
password = $PASS
region_name = RegionOne
EOT
}

write_mariadb() {
  mkdir -p "$C/data/mysql" "$C/run/mysql"
  chown mysql:mysql "$C/data/mysql" "$C/run/mysql"
  put "$C/etc/my.cnf" <<EOT
[mysqld]
user = mysql
datadir = $C/data/mysql
socket = $C/run/mysql/mysqld.sock
pid-file = $C/run/mysql/mysqld.pid
bind-address = $CONTROLLER_IP
port = $P_MYSQL
skip-name-resolve
skip-log-bin
character-set-server = utf8mb3
collation-server = utf8mb3_general_ci
max_connections = 500
innodb_buffer_pool_size = 96M
innodb_log_file_size = 32M
innodb_flush_log_at_trx_commit = 2
performance_schema = off
key_buffer_size = 8M
[client]
socket = $C/run/mysql/mysqld.sock
EOT
}

write_rabbitmq() {
  mkdir -p "$C/data/rabbitmq" "$C/log/rabbitmq"
  chown rabbitmq:rabbitmq "$C/data/rabbitmq" "$C/log/rabbitmq"
  put "$C/etc/rabbitmq/rabbitmq.conf" <<EOT
listeners.tcp.1 = $CONTROLLER_IP:$P_RABBIT
loopback_users = none
log.console = true
log.console.level = warning
log.file = false
vm_memory_high_watermark.absolute = 512MiB
disk_free_limit.absolute = 50MB
EOT
  echo '[].' | put "$C/etc/rabbitmq/enabled_plugins"
  : | put "$C/etc/rabbitmq/rabbitmq-env.conf"
}

write_keystone() {
  mkdir -p "$C/etc/keystone/fernet-keys" "$C/etc/keystone/credential-keys"
  put "$C/etc/keystone/keystone.conf" <<EOT
[DEFAULT]
log_file = $C/log/keystone.log
[database]
connection = $DBURL/keystone
[cache]
enabled = true
backend = oslo_cache.memcache_pool
memcache_servers = $MEMC
[token]
provider = fernet
[fernet_tokens]
key_repository = $C/etc/keystone/fernet-keys
[credential]
key_repository = $C/etc/keystone/credential-keys
EOT
}

write_placement() {
  put "$C/etc/placement/placement.conf" <<EOT
[DEFAULT]
log_file = $C/log/placement-api.log
[placement_database]
connection = $DBURL/placement
[api]
auth_strategy = keystone
$(authtoken placement)
EOT
}

write_glance() {
  mkdir -p "$C/data/glance/images" "$C/data/glance/staging" "$C/data/glance/tasks" "$C/data/lock"
  put "$C/etc/glance/glance-api.conf" <<EOT
[DEFAULT]
bind_host = $CONTROLLER_IP
bind_port = $P_GLANCE
workers = 0
enabled_backends = file:file
show_image_direct_url = true
[database]
connection = $DBURL/glance
[glance_store]
default_backend = file
[file]
filesystem_store_datadir = $C/data/glance/images
[os_glance_staging_store]
filesystem_store_datadir = $C/data/glance/staging
[os_glance_tasks_store]
filesystem_store_datadir = $C/data/glance/tasks
[paste_deploy]
flavor = keystone
config_file = $C/etc/glance/glance-api-paste.ini
[oslo_concurrency]
lock_path = $C/data/lock
$(authtoken glance)
EOT
  put "$C/etc/glance/glance-api-paste.ini" <<'EOT'
[pipeline:glance-api-keystone]
pipeline = http_proxy_to_wsgi versionnegotiation authtoken context rootapp

[composite:rootapp]
paste.composite_factory = glance.api:root_app_factory
/: apiversions
/v2: apiv2app

[app:apiversions]
paste.app_factory = glance.api.versions:create_resource

[app:apiv2app]
paste.app_factory = glance.api.v2.router:API.factory

[filter:versionnegotiation]
paste.filter_factory = glance.api.middleware.version_negotiation:VersionNegotiationFilter.factory

[filter:context]
paste.filter_factory = glance.api.middleware.context:ContextMiddleware.factory

[filter:authtoken]
paste.filter_factory = keystonemiddleware.auth_token:filter_factory
delay_auth_decision = true

[filter:http_proxy_to_wsgi]
paste.filter_factory = oslo_middleware:HTTPProxyToWSGI.factory
EOT
}

nova_conf() { # host ip
  local h=$1 ip=$2 d
  d=$(hostdir "$h")
  mkdir -p "$d/data/nova/instances" "$d/data/lock"
  cat <<EOT
[DEFAULT]
host = $h
my_ip = $ip
state_path = $d/data/nova
instances_path = $d/data/nova/instances
transport_url = $RABBIT
compute_driver = fake.FakeLiveMigrateDriver
enabled_apis = osapi_compute
osapi_compute_listen = $CONTROLLER_IP
osapi_compute_workers = 1
report_interval = 10
service_down_time = 40
heal_instance_info_cache_interval = -1
[api]
auth_strategy = keystone
[api_database]
connection = $DBURL/nova_api
[database]
connection = $DBURL/nova
[wsgi]
api_paste_config = $C/etc/nova/api-paste.ini
[conductor]
workers = 1
[scheduler]
workers = 1
discover_hosts_in_cells_interval = 15
[oslo_concurrency]
lock_path = $d/data/lock
[glance]
region_name = RegionOne
[cinder]
os_region_name = RegionOne
$(authtoken nova)
$(svc_auth placement nova)
$(svc_auth neutron nova)
$(svc_auth service_user nova)
send_service_user_token = true
EOT
}

write_nova() {
  nova_conf controller "$CONTROLLER_IP" | put "$C/etc/nova/nova.conf"
  local h
  for h in "${COMPUTES[@]}"; do
    nova_conf "$h" "${HOST_IP[$h]}" | put "$(hostdir "$h")/etc/nova/nova.conf"
  done
  put "$C/etc/nova/api-paste.ini" <<'EOT'
[composite:osapi_compute]
use = call:nova.api.openstack.urlmap:urlmap_factory
/: oscomputeversions
/v2.1: openstack_compute_api_v21

[composite:openstack_compute_api_v21]
use = call:nova.api.auth:pipeline_factory_v21
keystone = http_proxy_to_wsgi compute_req_id faultwrap request_log sizelimit authtoken keystonecontext osapi_compute_app_v21

[filter:request_log]
paste.filter_factory = nova.api.openstack.requestlog:RequestLog.factory

[filter:compute_req_id]
paste.filter_factory = nova.api.compute_req_id:ComputeReqIdMiddleware.factory

[filter:faultwrap]
paste.filter_factory = nova.api.openstack:FaultWrapper.factory

[filter:sizelimit]
paste.filter_factory = oslo_middleware:RequestBodySizeLimiter.factory

[filter:http_proxy_to_wsgi]
paste.filter_factory = oslo_middleware.http_proxy_to_wsgi:HTTPProxyToWSGI.factory

[filter:keystonecontext]
paste.filter_factory = nova.api.auth:NovaKeystoneContext.factory

[filter:authtoken]
paste.filter_factory = keystonemiddleware.auth_token:filter_factory

[app:osapi_compute_app_v21]
paste.app_factory = nova.api.openstack.compute:APIRouterV21.factory

[pipeline:oscomputeversions]
pipeline = faultwrap request_log http_proxy_to_wsgi oscomputeversionapp

[app:oscomputeversionapp]
paste.app_factory = nova.api.openstack.compute.versions:Versions.factory
EOT
  put "$C/etc/nova/nova-api.wsgi" <<'EOT'
# WSGI entry point of nova-api (the Debian nova-api package is not installed).
from nova.api.openstack.compute.wsgi import init_application

application = init_application()
EOT
}

write_neutron() {
  mkdir -p "$C/data/neutron"
  put "$C/etc/neutron/neutron.conf" <<EOT
[DEFAULT]
bind_host = $CONTROLLER_IP
bind_port = $P_NEUTRON
core_plugin = ml2
service_plugins = router
auth_strategy = keystone
allow_overlapping_ips = true
api_workers = 0
rpc_workers = 0
rpc_state_report_workers = 0
transport_url = $RABBIT
state_path = $C/data/neutron
api_paste_config = $C/etc/neutron/api-paste.ini
notify_nova_on_port_status_changes = false
notify_nova_on_port_data_changes = false
[database]
connection = $DBURL/neutron
[oslo_concurrency]
lock_path = $C/data/lock
$(authtoken neutron)
EOT
  put "$C/etc/neutron/ml2_conf.ini" <<'EOT'
[ml2]
type_drivers = flat,vlan,vxlan
tenant_network_types = vxlan
mechanism_drivers =
extension_drivers = port_security
[ml2_type_flat]
flat_networks = *
[ml2_type_vlan]
network_vlan_ranges = physnet1:100:199
[ml2_type_vxlan]
vni_ranges = 1:1000
EOT
  put "$C/etc/neutron/api-paste.ini" <<'EOT'
[composite:neutron]
use = egg:Paste#urlmap
/: neutronversions_composite
/v2.0: neutronapi_v2_0

[composite:neutronapi_v2_0]
use = call:neutron.auth:pipeline_factory
keystone = http_proxy_to_wsgi request_id catch_errors authtoken keystonecontext extensions neutronapiapp_v2_0

[composite:neutronversions_composite]
use = call:neutron.auth:pipeline_factory
keystone = http_proxy_to_wsgi neutronversions

[filter:request_id]
paste.filter_factory = oslo_middleware:RequestId.factory

[filter:catch_errors]
paste.filter_factory = oslo_middleware:CatchErrors.factory

[filter:http_proxy_to_wsgi]
paste.filter_factory = oslo_middleware.http_proxy_to_wsgi:HTTPProxyToWSGI.factory

[filter:keystonecontext]
paste.filter_factory = neutron.auth:NeutronKeystoneContext.factory

[filter:authtoken]
paste.filter_factory = keystonemiddleware.auth_token:filter_factory

[filter:extensions]
paste.filter_factory = neutron.api.extensions:plugin_aware_extension_middleware_factory

[app:neutronversions]
paste.app_factory = neutron.pecan_wsgi.app:versions_factory

[app:neutronapiapp_v2_0]
paste.app_factory = neutron.api.v2.router:APIRouter.factory
EOT
}

write_swift() {
  mkdir -p /etc/swift
  put /etc/swift/swift.conf <<'EOT'
# Stackrun lab (lab/up.sh). Swift always reads this file; everything else is per host.
[swift-hash]
swift_hash_path_prefix = stackrunlabprefix
swift_hash_path_suffix = stackrunlabsuffix
[storage-policy:0]
name = Policy-0
default = yes
EOT
  mkdir -p "$C/etc/swift" "$C/cache/swift"
  chown swift:swift "$C/cache/swift"
  # tools given --swiftdir (swift-recon, swift-get-nodes...) read swift.conf from there
  local h
  for h in "$RING_HOST" "${STORAGES[@]}"; do
    mkdir -p "$(hostdir "$h")/etc/swift"
    put "$(hostdir "$h")/etc/swift/swift.conf" </etc/swift/swift.conf
  done
  put "$C/etc/swift/proxy-server.conf" <<EOT
[DEFAULT]
bind_ip = $CONTROLLER_IP
bind_port = $P_SWIFT_PROXY
workers = 0
user = swift
swift_dir = $C/etc/swift
log_name = swift-proxy
recon_cache_path = $C/cache/swift

[pipeline:main]
pipeline = catch_errors gatekeeper healthcheck proxy-logging cache listing_formats authtoken keystoneauth copy dlo slo proxy-logging proxy-server

[app:proxy-server]
use = egg:swift#proxy
account_autocreate = true

[filter:catch_errors]
use = egg:swift#catch_errors
[filter:gatekeeper]
use = egg:swift#gatekeeper
[filter:healthcheck]
use = egg:swift#healthcheck
[filter:proxy-logging]
use = egg:swift#proxy_logging
[filter:listing_formats]
use = egg:swift#listing_formats
[filter:copy]
use = egg:swift#copy
[filter:dlo]
use = egg:swift#dlo
[filter:slo]
use = egg:swift#slo
[filter:cache]
use = egg:swift#memcache
memcache_servers = $MEMC
[filter:keystoneauth]
use = egg:swift#keystoneauth
operator_roles = admin, member
reseller_admin_role = ResellerAdmin
[filter:authtoken]
paste.filter_factory = keystonemiddleware.auth_token:filter_factory
delay_auth_decision = true
$(authtoken swift | tail -n +2)
EOT
  local d ip kind port
  for h in "${STORAGES[@]}"; do
    d=$(hostdir "$h") ip=${HOST_IP[$h]}
    mkdir -p "$d/etc/swift" "$d/srv/node" "$d/cache/swift" "$d/disks" "$d/run/swift"
    chown swift:swift "$d/cache/swift" "$d/run/swift"
    for kind in account container object; do
      case $kind in account) port=$P_ACCOUNT ;; container) port=$P_CONTAINER ;; object) port=$P_OBJECT ;; esac
      put "$d/etc/swift/$kind-server.conf" <<EOT
[DEFAULT]
bind_ip = $ip
bind_port = $port
workers = 0
user = swift
swift_dir = $d/etc/swift
devices = $d/srv/node
mount_check = true
log_name = $h-swift-$kind
recon_cache_path = $d/cache/swift

[pipeline:main]
pipeline = healthcheck recon $kind-server

[app:$kind-server]
use = egg:swift#$kind

[filter:healthcheck]
use = egg:swift#healthcheck

[filter:recon]
use = egg:swift#recon
recon_cache_path = $d/cache/swift

[$kind-replicator]
interval = 30
rsync_module = {replication_ip}::$kind
recon_cache_path = $d/cache/swift

[$kind-auditor]

[$kind-updater]
EOT
    done
    put "$d/etc/swift/rsyncd.conf" <<EOT
uid = swift
gid = swift
address = $ip
port = $P_RSYNC
use chroot = no
$(for kind in account container object; do printf '\n[%s]\nmax connections = 8\npath = %s/srv/node/\nread only = false\nlock file = %s/run/swift/%s.lock\n' "$kind" "$d" "$d" "$kind"; done)
EOT
  done
}

write_sshd() {
  local h d
  mkdir -p "$LAB/ssh" "$LAB/home"
  # Sessions get a home of their own: the machine's root profile (pyenv, cargo) is not a lab
  # host's, and pyenv's rehash lock, left behind by a killed session, stalled every later
  # command for 60 s and wrote into its output.
  put "$LAB/home/.bashrc" <<'EOT'
# home of the lab hosts' SSH sessions (lab/lib/configs.sh write_sshd): nothing to set up
EOT
  for h in "${LAB_HOSTS[@]}"; do
    d=$(hostdir "$h")
    mkdir -p "$d/etc/ssh"
    put "$d/etc/ssh/sshd_config" <<EOT
# sshd of lab host $h (lab/up.sh)
ListenAddress ${HOST_IP[$h]}:$SSH_PORT
HostKey $d/etc/ssh/ssh_host_ed25519_key
PidFile none
AuthorizedKeysFile $LAB/ssh/authorized_keys
PermitRootLogin prohibit-password
AllowUsers root
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PrintMotd no
X11Forwarding no
MaxStartups 100:30:200
MaxSessions 64
LogLevel INFO
SetEnv LAB_HOST=$h STACKRUN_LAB_DIR=$LAB HOME=$LAB/home
Subsystem sftp internal-sftp
EOT
  done
}

write_clouds() {
  put "$LAB/clouds.yaml" <<EOT
# clouds.yaml of the Stackrun lab (lab/up.sh). Use: OS_CLIENT_CONFIG_FILE=$LAB/clouds.yaml OS_CLOUD=lab
clouds:
  lab:
    auth:
      auth_url: $KS/v3
      username: admin
      password: $PASS
      project_name: admin
      user_domain_name: Default
      project_domain_name: Default
    region_name: RegionOne
    identity_api_version: 3
    interface: public
  lab-demo:
    auth:
      auth_url: $KS/v3
      username: demo
      password: $PASS
      project_name: demo
      user_domain_name: Default
      project_domain_name: Default
    region_name: RegionOne
    identity_api_version: 3
    interface: public
EOT
}
