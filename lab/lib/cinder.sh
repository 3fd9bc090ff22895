# shellcheck shell=bash
# Cinder in the lab: cinder-api (8776), cinder-scheduler and cinder-volume on the controller, with
# cinder.tests.fake_driver.FakeLoggingVolumeDriver (no LVM here: no device-mapper, LAB.md). Volumes
# are bookkeeping only and cannot be attached to servers (LAB.md: nova -> cinder got 401s).
# Sourced by common.sh's users after services.sh (svc_def_cinder) and by up.sh after configs.sh
# (write_cinder, sync_cinder, start_cinder).

P_CINDER=8776
CINDER_SERVICES=(cinder-api cinder-scheduler cinder-volume)
CINDER_PACKAGES=(python3-cinder)

# svc_def_cinder HOST SERVICE: svc_def's part for Cinder (same variables); 1 if not Cinder's.
svc_def_cinder() {
  local host=$1 svc=$2 d
  d=$(hostdir "$host")
  case $host:$svc in
    controller:cinder-api)
      CMD=("$PY" -c 'import sys; from cinder.cmd.api import main; sys.argv[0] = "cinder-api"; sys.exit(main())'
        --config-file "$d/etc/cinder/cinder.conf" --log-file "$LOG")
      PORT=${HOST_IP[$host]}:$P_CINDER ;;
    controller:cinder-scheduler | controller:cinder-volume)
      CMD=("$PY" -c "import sys; from cinder.cmd.${svc#cinder-} import main; sys.argv[0] = '$svc'; sys.exit(main())"
        --config-file "$d/etc/cinder/cinder.conf" --log-file "$LOG") ;;
    *) return 1 ;;
  esac
}

# write_cinder: cinder.conf and a trimmed api-paste.ini (cinder-common, which ships it, is not
# installed: LAB.md point 5; osprofiler, cors and healthcheck dropped).
write_cinder() {
  mkdir -p "$C/data/cinder" "$C/data/lock"
  put "$C/etc/cinder/cinder.conf" <<EOT
[DEFAULT]
host = controller
my_ip = $CONTROLLER_IP
state_path = $C/data/cinder
transport_url = $RABBIT
auth_strategy = keystone
osapi_volume_listen = $CONTROLLER_IP
osapi_volume_listen_port = $P_CINDER
osapi_volume_workers = 1
api_paste_config = $C/etc/cinder/api-paste.ini
enabled_backends = fake
glance_api_servers = http://$CONTROLLER_IP:$P_GLANCE
report_interval = 10
service_down_time = 40
[database]
connection = $DBURL/cinder
[oslo_concurrency]
lock_path = $C/data/lock
[fake]
volume_driver = cinder.tests.fake_driver.FakeLoggingVolumeDriver
volume_backend_name = fake
$(authtoken cinder)
$(svc_auth nova cinder)
EOT
  put "$C/etc/cinder/api-paste.ini" <<'EOT'
[composite:osapi_volume]
use = call:cinder.api:root_app_factory
/: apiversions
/v3: openstack_volume_api_v3

[composite:openstack_volume_api_v3]
use = call:cinder.api.middleware.auth:pipeline_factory
keystone = http_proxy_to_wsgi request_id faultwrap sizelimit authtoken keystonecontext apiv3
keystone_nolimit = http_proxy_to_wsgi request_id faultwrap sizelimit authtoken keystonecontext apiv3

[filter:request_id]
paste.filter_factory = oslo_middleware.request_id:RequestId.factory

[filter:http_proxy_to_wsgi]
paste.filter_factory = oslo_middleware.http_proxy_to_wsgi:HTTPProxyToWSGI.factory

[filter:faultwrap]
paste.filter_factory = cinder.api.middleware.fault:FaultWrapper.factory

[filter:sizelimit]
paste.filter_factory = oslo_middleware.sizelimit:RequestBodySizeLimiter.factory

[app:apiv3]
paste.app_factory = cinder.api.v3.router:APIRouter.factory

[pipeline:apiversions]
pipeline = http_proxy_to_wsgi faultwrap osvolumeversionapp

[app:osvolumeversionapp]
paste.app_factory = cinder.api.versions:Versions.factory

[filter:keystonecontext]
paste.filter_factory = cinder.api.middleware.auth:CinderKeystoneContext.factory

[filter:authtoken]
paste.filter_factory = keystonemiddleware.auth_token:filter_factory
EOT
}

# sync_cinder: the schema (up.sh runs it with the other syncs, in parallel; no-op when at head).
sync_cinder() {
  manage cinder.cmd.manage --config-file "$C/etc/cinder/cinder.conf" db sync
}

# start_cinder: after the bootstrap (the cinder user and the volumev3 endpoints exist then).
start_cinder() {
  local svc
  for svc in "${CINDER_SERVICES[@]}"; do "$LABCTL" start controller "$svc"; done
  wait_http "http://$CONTROLLER_IP:$P_CINDER/" 90 cinder-api
}

# check_cinder TOKEN PROJECT_ID: the volume API lists volumes and cinder-scheduler and
# cinder-volume are up (os-services); one line each, non-zero if either failed.
check_cinder() {
  local token=$1 project=$2 url code svcs fail=0
  url=http://$CONTROLLER_IP:$P_CINDER/v3/$project
  code=$(curl -s -o /dev/null -m 15 -w '%{http_code}' -H "X-Auth-Token: $token" "$url/volumes" || true)
  if [[ $code == 200 ]]; then
    printf '  %-10s ok   %s\n' cinder "$url/volumes"
  else
    printf '  %-10s FAIL %s (HTTP %s, want 200)\n' cinder "$url/volumes" "$code"
    fail=1
  fi
  svcs=$(curl -s -m 15 -H "X-Auth-Token: $token" "$url/os-services" | "$PY" -c '
import json, sys
print(" ".join(sorted("%s/%s:%s%s" % (s["binary"], s["host"], s["state"], ",disabled" if s["status"] == "disabled" else "")
      for s in json.load(sys.stdin)["services"])))' 2>/dev/null || true)
  if [[ " $svcs " == *" cinder-scheduler/controller:up "* && " $svcs " == *" cinder-volume/controller@fake:up "* ]]; then
    echo "  volumes    ok   $svcs"
  else
    echo "  volumes    FAIL cinder-scheduler/controller and cinder-volume/controller@fake not both up: ${svcs:-none}"
    fail=1
  fi
  return "$fail"
}
