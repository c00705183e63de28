#!/usr/bin/env bash
# Installs the Debian packages Shoal needs, only those missing. Safe to re-run.
set -euo pipefail
need=()
have() { command -v "$1" >/dev/null 2>&1; }
have runc     || need+=(runc)
have busybox  || need+=(busybox-static)
have nft      || need+=(nftables)
have ip       || need+=(iproute2)
have nsenter  || need+=(util-linux)
have iptables || true
have curl     || need+=(curl)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends "${need[@]}" >/dev/null 2>&1 || {
    apt-get update >/dev/null 2>&1
    apt-get install -y --no-install-recommends "${need[@]}"
  }
fi
if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
  echo "note: add /usr/local/go/bin to PATH" >&2
fi
