#!/usr/bin/env bash
# Makes sure redis-server is on PATH (or REDIS_SERVER_BIN is set), installing it when this
# machine lets us: apt-get as root or with password-less sudo, or Homebrew. Otherwise it
# prints one line that says how, and fails.
set -euo pipefail

if [ -n "${REDIS_SERVER_BIN:-}" ] || command -v redis-server >/dev/null 2>&1; then
  exit 0
fi

install() {
  echo "redis-server not found: installing it ($*)" >&2
  "$@" >/dev/null
}

if command -v apt-get >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    install sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server'
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    install sudo sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server'
  fi
elif command -v brew >/dev/null 2>&1; then
  install brew install redis
fi

if command -v redis-server >/dev/null 2>&1; then
  exit 0
fi
echo "redis-server not found and not installable here: install it (apt-get install -y redis-server, brew install redis) or set REDIS_SERVER_BIN" >&2
exit 1
