#!/usr/bin/env bash
# The project's test command (README, `make test`, .ci/run). Runs vet, the race
# detector on unit tests, and the end-to-end suites (as root).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH
echo "== go vet"
go vet ./...
echo "== unit and end-to-end tests"
go test -race -count=1 -timeout 40m ./... 2>&1 | tee /tmp/shoal-test.log | grep -E '^(ok|FAIL|---|panic|\?)' || true
status=${PIPESTATUS[0]}
echo "== summary"
grep -E '^(ok|FAIL)' /tmp/shoal-test.log | awk '{print $1}' | sort | uniq -c
exit $status
