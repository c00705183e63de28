#!/usr/bin/env bash
# `make up`: from a fresh machine to a working local cluster with a demo
# service. Installs what is missing, builds and installs the binaries, starts
# a lab of three hosts (network namespaces, one shoald each) in a swarm, and
# deploys a demo service on it. Safe to re-run: it replaces an earlier lab.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:/usr/local/bin:$PATH
[ "$(id -u)" = 0 ] || { echo "make up needs root (namespaces, runc, nftables)" >&2; exit 1; }

./scripts/install-deps.sh
make --no-print-directory install >/dev/null
echo "installed: $(command -v shoald) $(command -v shoal) $(command -v shoal-shim)"

shoal lab down >/dev/null 2>&1 || true
shoal lab up --nodes 3 --managers 1
eval "$(shoal lab env node1)"
registry=$(shoal lab ls --registry 2>/dev/null || echo 10.99.0.1:5000)

echo
echo "== deploying the demo service: one demo/hostname task per node, port 8080 on each host"
shoal service create --name web --mode global \
  --publish mode=host,published=8080,target=80 \
  "$registry/demo/hostname:latest"
shoal service ps web
echo
for n in node1 node2 node3; do
  ip=$(shoal lab ls --ip "$n" 2>/dev/null || true)
  [ -n "$ip" ] || continue
  printf '%s answers: ' "$n"
  shoal lab exec node1 -- busybox wget -qO- "http://$ip:8080/" || echo "(no answer)"
done
cat <<MSG

The cluster is up. Try:
  eval \$(shoal lab env node1)      # talk to the manager (docker works too: docker node ls)
  shoal node ls
  shoal service create --name hello --replicas 6 $registry/demo/hostname
  shoal service scale hello=9
  shoal lab kill node3             # a host dies; its tasks run again elsewhere
  make down                        # remove the lab
MSG
