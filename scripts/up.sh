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
shoal lab up --nodes 3 --managers 1 | tee /tmp/shoal-lab-up.txt
eval "$(shoal lab env node1)"
registry=$(awk '/^registry:/ {print $2}' /tmp/shoal-lab-up.txt)

echo
echo "== deploying the demo service: 3 replicas of demo/hostname, published on port 8080 of every host"
shoal service create -d --name web --replicas 3 -p 8080:80 "$registry/demo/hostname:latest"
for _ in $(seq 1 150); do
  [ "$(shoal service ls --filter name=web --format '{{.Replicas}}')" = "3/3" ] && break
  sleep 0.2
done
shoal service ls
shoal service ps web
echo
for n in node1 node2 node3; do
  ip=$(awk -v n="$n" '$1 == n {print $2}' /tmp/shoal-lab-up.txt)
  [ -n "$ip" ] || continue
  for _ in 1 2; do
    printf 'http://%s:8080 (%s) answers: ' "$ip" "$n"
    shoal lab exec node1 -- busybox wget -qO- "http://$ip:8080/" || echo "(no answer)"
  done
done
cat <<MSG

The cluster is up. Try:
  eval \$(shoal lab env node1)      # talk to the manager (docker works too: docker node ls)
  curl http://10.99.0.12:8080/      # any host answers, balancing over the tasks
  shoal node ls
  shoal service create --name hello --replicas 6 $registry/demo/hostname
  shoal service scale hello=9
  shoal lab kill node3             # a host dies; its tasks run again elsewhere
  make down                        # remove the lab
MSG
