#!/usr/bin/env bash
# Installs the Debian packages Stackrun's tests need, if missing. Idempotent; needs root (or sudo).
set -euo pipefail
# chromium (Debian's, never a downloaded browser) and node/npm: the web-UI test in tests/browser.
pkgs=(openssh-server openssh-client chromium)
# inspect-disk's activity tests: qemu-img, qemu-storage-daemon (FUSE export), sfdisk, mkfs.ext4.
pkgs+=(qemu-utils qemu-system-common fdisk e2fsprogs)
# arping and ping (iputils): the diagnose runbook's network probes, and its duplicate-address test.
pkgs+=(iputils-arping iputils-ping)
# --bench: what the benchmarks compare against (parallel-ssh/-scp, Ansible).
[ "${1:-}" = "--bench" ] && pkgs=(pssh ansible-core)
command -v npm >/dev/null 2>&1 || pkgs+=(nodejs npm)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# playwright-core for tests/browser, exactly as package-lock.json pins it (no browser download).
browser_npm() {
  local dir; dir="$(dirname "$0")/../tests/browser"
  if [ ! -d "$dir/node_modules/playwright-core" ] || [ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
    echo "deps: npm ci in tests/browser"
    (cd "$dir" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
  fi
}
[ ${#missing[@]} -eq 0 ] && { browser_npm; exit 0; }
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
echo "deps: installing ${missing[*]}"
# Nothing may be started by the packages' scripts (no init system here).
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
  $SUDO chmod +x /usr/sbin/policy-rc.d
fi
if [ -z "$(ls -A /var/lib/apt/lists 2>/dev/null | grep -v -e lock -e partial)" ]; then
  $SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq
fi
DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
  || { $SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }
browser_npm
