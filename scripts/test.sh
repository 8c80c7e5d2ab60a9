#!/usr/bin/env bash
# The README's test command (make test): installs redis-server when it can, uses the race
# detector when cgo and a C compiler are there, then runs go test on the given packages.
set -euo pipefail
cd "$(dirname "$0")/.."

"$BASH" scripts/need-redis.sh

race=(-race)
if [ "$(go env CGO_ENABLED)" != 1 ] || ! command -v "$(go env CC)" >/dev/null 2>&1; then
  echo "tests run without the race detector: it needs cgo and a C compiler ($(go env CC) not found or CGO_ENABLED=0)" >&2
  race=()
fi
exec go test "${race[@]}" -count=1 -timeout 15m "$@"
