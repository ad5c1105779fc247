#!/usr/bin/env bash
# Ensure Debian packages the project needs are present: install them with apt when we are
# root (or have password-less sudo), else print the one command to run and exit 2.
# Usage: scripts/system-deps.sh COMMAND:PACKAGE...   e.g. rabbitmq-server:rabbitmq-server
# (COMMAND may be an absolute path, for binaries outside PATH such as PostgreSQL's initdb)
set -euo pipefail

missing=()
for pair in "$@"; do
  cmd=${pair%%:*}
  pkg=${pair#*:}
  if [ "${cmd#/}" != "$cmd" ]; then  # an absolute path: that file must be executable
    [ -x "$cmd" ] || missing+=("$pkg")
  elif ! command -v "$cmd" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$cmd" ] && [ ! -x "/usr/lib/rabbitmq/bin/$cmd" ]; then
    missing+=("$pkg")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
  SUDO=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  SUDO="sudo -n"
else
  echo "commbench: missing ${missing[*]}: run 'sudo apt-get install -y ${missing[*]}' and try again" >&2
  exit 2
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "commbench: missing ${missing[*]} and this is not a Debian system: install them with your package manager" >&2
  exit 2
fi
echo "installing ${missing[*]} (apt-get)…"
export DEBIAN_FRONTEND=noninteractive
# policy-rc.d-style guard: installing the broker must not start a system service for us.
$SUDO apt-get update -qq >/dev/null || true
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
