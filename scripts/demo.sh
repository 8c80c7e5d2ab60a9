#!/usr/bin/env bash
# The README's demo command (make demo): installs redis-server when it can; without one the
# demo runs on an in-process Redis-protocol server and says so.
set -uo pipefail
cd "$(dirname "$0")/.."

"$BASH" scripts/need-redis.sh 2>&1 | grep -v '^redis-server not found and not installable' >&2 || true
exec go run ./examples/demo "$@"
