# shellcheck shell=bash disable=SC2153  # (COMPUTES and the like come from common.sh)
# API checks shared by up.sh, status.sh, labpkg and labfail. Sourced after common.sh.
# shellcheck source=cinder.sh
source "$LAB_SRC/lib/cinder.sh" # check_cinder

lab_token() {
  curl -s -m 10 -D - -o /dev/null -H 'Content-Type: application/json' \
    -d "{\"auth\":{\"identity\":{\"methods\":[\"password\"],\"password\":{\"user\":{\"name\":\"admin\",\"domain\":{\"id\":\"default\"},\"password\":\"$PASS\"}}},\"scope\":{\"project\":{\"name\":\"admin\",\"domain\":{\"id\":\"default\"}}}}}" \
    "http://$CONTROLLER_IP:$P_KEYSTONE/v3/auth/tokens" | awk 'tolower($1) == "x-subject-token:" {print $2}' | tr -d '\r'
}

# check_apis: prints one line per API; returns non-zero if any failed.
check_apis() {
  local token fail=0 name url code want
  token=$(lab_token || true)
  if [[ -z $token ]]; then
    echo "  keystone   FAIL (no token from http://$CONTROLLER_IP:$P_KEYSTONE/v3)"
    return 1
  fi
  echo "  keystone   ok   http://$CONTROLLER_IP:$P_KEYSTONE/v3 (token issued)"
  local project_id
  project_id=$(curl -s -m 10 -H "X-Auth-Token: $token" "http://$CONTROLLER_IP:$P_KEYSTONE/v3/auth/tokens" \
    -H "X-Subject-Token: $token" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["token"]["project"]["id"])' 2>/dev/null || true)
  while read -r name url want; do
    want=${want//|/ }
    code=$(curl -s -o /dev/null -m 15 -w '%{http_code}' -H "X-Auth-Token: $token" \
      -H 'OpenStack-API-Version: compute 2.60' "$url" || true)
    if [[ " $want " == *" $code "* ]]; then
      printf '  %-10s ok   %s\n' "$name" "$url"
    else
      printf '  %-10s FAIL %s (HTTP %s, want %s)\n' "$name" "$url" "$code" "$want"
      fail=1
    fi
  done <<EOT
placement http://$CONTROLLER_IP:$P_PLACEMENT/resource_providers 200
glance http://$CONTROLLER_IP:$P_GLANCE/v2/images 200
nova http://$CONTROLLER_IP:$P_NOVA/v2.1/servers 200
neutron http://$CONTROLLER_IP:$P_NEUTRON/v2.0/networks 200
swift http://$CONTROLLER_IP:$P_SWIFT_PROXY/v1/AUTH_$project_id 200|204
EOT
  check_cinder "$token" "$project_id" || fail=1 # lib/cinder.sh
  local computes
  computes=$(curl -s -m 15 -H "X-Auth-Token: $token" -H 'OpenStack-API-Version: compute 2.60' \
    "http://$CONTROLLER_IP:$P_NOVA/v2.1/os-services?binary=nova-compute" | "$PY" -c '
import json, sys
svcs = json.load(sys.stdin)["services"]
print(" ".join(sorted("%s:%s%s%s" % (s["host"], s["state"], ",forced_down" if s["forced_down"] else "",
      ",disabled" if s["status"] == "disabled" else "") for s in svcs)))' 2>/dev/null || true)
  local up forced
  up=$(tr ' ' '\n' <<<"$computes" | grep -c ':up' || true)
  forced=$(tr ' ' '\n' <<<"$computes" | grep ':down,forced_down' | cut -d: -f1 | xargs || true)
  if [[ $up -eq ${#COMPUTES[@]} ]]; then
    echo "  computes   ok   $computes"
  elif [[ -n $forced && $((up + $(wc -w <<<"$forced"))) -eq ${#COMPUTES[@]} ]]; then
    # a forced_down flag survives restarts: accept it, and say how to clear it
    echo "  computes   ok   $computes (forced down, as a test left it: lab/bin/labfail force-up <host> for $forced)"
  else
    echo "  computes   FAIL $up of ${#COMPUTES[@]} up: ${computes:-none}"
    fail=1
  fi
  return "$fail"
}

# check_ssh: every lab host's sshd answers with its own host key.
check_ssh() {
  local h fail=0 out
  for h in "${LAB_HOSTS[@]}"; do
    out=$(ssh -F none -i "$LAB/ssh/id_ed25519" -o UserKnownHostsFile="$LAB/ssh/known_hosts" \
      -o StrictHostKeyChecking=yes -o BatchMode=yes -o ConnectTimeout=5 -p "$SSH_PORT" \
      "root@${HOST_IP[$h]}" 'echo $LAB_HOST' 2>&1 || true)
    if [[ $out == "$h" ]]; then
      printf '  ssh %-10s ok   root@%s:%s\n' "$h" "${HOST_IP[$h]}" "$SSH_PORT"
    else
      printf '  ssh %-10s FAIL root@%s:%s: %s\n' "$h" "${HOST_IP[$h]}" "$SSH_PORT" "${out//$'\n'/ }"
      fail=1
    fi
  done
  return "$fail"
}
