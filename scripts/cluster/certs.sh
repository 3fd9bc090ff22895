# shellcheck shell=bash
# The cluster's private CA and certificates, with openssl, in $CLUSTER/tls. Sourced by up.sh.
# One CA signs:
#   internode         history, matching, frontend and the internal worker between themselves
#                     (server and client auth; name temporal-internode, and every service address)
#   frontend          what the frontend shows its clients (name temporal-frontend, its address)
#   stackrun-worker, stackrun-chat, stackrun-operator, stackrun-viewer, temporal-ui, temporal-admin
#                     client certificates: the frontend refuses a client without one signed by
#                     the CA. The subject CN names the client; the frontend's --tls-roles file
#                     (configs.sh) gives each CN its roles, and a CN it does not list gets none.
# Idempotent: existing certificates are kept unless they expire within 30 days.
# Run directly, `certs.sh DIR` writes the same set for docker-compose.yml into DIR: names only
# (the containers' addresses are not known in advance), keys readable by the containers' users.

TLS_DIR=$CLUSTER/tls
FRONTEND_NAME=temporal-frontend
INTERNODE_NAME=temporal-internode
CLIENTS=(stackrun-worker stackrun-chat stackrun-operator stackrun-viewer temporal-ui temporal-admin)

# issue NAME EKU SAN: a P-256 key and a certificate signed by the CA, valid 365 days.
issue() {
  local name=$1 eku=$2 san=$3 crt=$TLS_DIR/$1.pem
  if [[ -f $crt ]] && openssl x509 -in "$crt" -noout -checkend $((30 * 86400)) >/dev/null 2>&1 &&
    openssl verify -CAfile "$TLS_DIR/ca.pem" "$crt" >/dev/null 2>&1; then
    return 0
  fi
  (umask 077 && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$TLS_DIR/$name.key" 2>/dev/null)
  openssl req -new -key "$TLS_DIR/$name.key" -subj "/O=Stackrun cluster/CN=$name" -out "$TLS_DIR/$name.csr" 2>/dev/null
  openssl x509 -req -in "$TLS_DIR/$name.csr" -CA "$TLS_DIR/ca.pem" -CAkey "$TLS_DIR/ca.key" -CAcreateserial \
    -days 365 -sha256 -out "$crt" -extfile <(
      printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=%s\n' "$eku"
      [[ -n $san ]] && printf 'subjectAltName=%s\n' "$san"
    ) 2>/dev/null || die "openssl could not sign $name"
  rm -f "$TLS_DIR/$name.csr"
  ISSUED+=("$name")
}

ensure_certs() {
  ISSUED=()
  mkdir -p "$TLS_DIR"
  chmod 755 "$TLS_DIR"
  if ! openssl x509 -in "$TLS_DIR/ca.pem" -noout -checkend $((60 * 86400)) >/dev/null 2>&1; then
    rm -f "$TLS_DIR"/*.pem "$TLS_DIR"/*.key "$TLS_DIR"/*.srl
    (umask 077 && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$TLS_DIR/ca.key" 2>/dev/null)
    openssl req -x509 -new -key "$TLS_DIR/ca.key" -subj "/O=Stackrun cluster/CN=Stackrun cluster CA" -days 1825 -sha256 \
      -addext "basicConstraints=critical,CA:TRUE,pathlen:0" -addext "keyUsage=critical,keyCertSign,cRLSign" \
      -out "$TLS_DIR/ca.pem" 2>/dev/null || die "openssl could not create the CA"
    ISSUED+=(ca)
  fi
  local ips="" fip="" n
  if [[ -z ${COMPOSE:-} ]]; then
    for n in "$IP_FRONTEND" "$IP_HISTORY1" "$IP_HISTORY2" "$IP_MATCHING" "$IP_IWORKER"; do ips+=",IP:$n"; done
    fip=",IP:$IP_FRONTEND"
  fi
  issue internode serverAuth,clientAuth "DNS:$INTERNODE_NAME$ips"
  issue frontend serverAuth "DNS:$FRONTEND_NAME$fip"
  for n in "${CLIENTS[@]}"; do issue "$n" clientAuth ""; done
  [[ ${#ISSUED[@]} -eq 0 ]] || say "TLS: issued ${ISSUED[*]} (CA $TLS_DIR/ca.pem)"
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
  set -euo pipefail
  # shellcheck source=lib.sh
  source "$(dirname "$(readlink -f "$0")")/lib.sh"
  [[ $# -eq 1 ]] || die "usage: $0 DIR   (the certificates for docker-compose.yml)"
  mkdir -p "$1"
  TLS_DIR=$(cd "$1" && pwd)
  COMPOSE=1 ensure_certs
  # The containers run as their own users (temporal: uid 1000): leaf keys readable, the CA's not.
  for k in "$TLS_DIR"/*.key; do [[ $k == */ca.key ]] || chmod 0644 "$k"; done
  say "certificates for docker-compose.yml in $TLS_DIR"
fi
