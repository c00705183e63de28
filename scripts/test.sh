#!/usr/bin/env bash
# The project's test command (README, `make test`, .ci/run): vet, then every
# test with the race detector. Unit tests need nothing; end-to-end tests need
# root (runc, namespaces, nftables) and skip themselves without it.
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH
log=$(mktemp /tmp/shoal-test.XXXXXX.log)
echo "== go vet ./..."
go vet ./... || exit 1
echo "== go test -race ./...   (full log: $log)"
go test -race -count=1 -timeout 45m ./... >"$log" 2>&1
status=$?
# Failures in full, then go test's per-package summary.
grep -E -B2 -A30 '^(--- FAIL|FAIL|panic:)' "$log" | head -400
echo "== summary"
grep -E '^(ok|FAIL|\?|---)' "$log" | grep -vE '^\?' 
echo "== $(grep -c '^ok' "$log") packages ok, $(grep -c '^FAIL' "$log") failed"
exit $status
