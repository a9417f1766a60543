#!/usr/bin/env bash
# Installs the Debian packages the tests start or call by hand: headless Chromium for the page
# tests, a real Prometheus server (and its promtool), a real Alertmanager and etcd (the fleet
# lease's tests run a 3-member cluster on loopback). Idempotent: installs only what is missing, says what it does,
# and exits 0 without touching apt when everything is there.
#
#   scripts/install-system-deps.sh          install what is missing (root, or sudo without a password)
#   scripts/install-system-deps.sh --check  exit 1 and list what is missing; install nothing
set -euo pipefail

# package -> a command it provides (what the tests look for)
PACKAGES=(prometheus prometheus-alertmanager chromium etcd-server)
declare -A PROVIDES=([prometheus]=promtool [prometheus-alertmanager]=prometheus-alertmanager [chromium]=chromium [etcd-server]=etcd)

missing=()
for pkg in "${PACKAGES[@]}"; do
  if ! command -v "${PROVIDES[$pkg]}" >/dev/null 2>&1; then
    missing+=("$pkg")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  [ "${1:-}" = "--check" ] || echo "system packages: all present (${PACKAGES[*]})"
  exit 0
fi
if [ "${1:-}" = "--check" ]; then
  echo "missing system packages: ${missing[*]}"
  exit 1
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "error: missing ${missing[*]} and no apt-get here; install them with your package manager" >&2
  exit 1
fi
SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO=(sudo -n)
  else
    echo "error: missing ${missing[*]}; run as root: apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi

echo "installing system packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq
# --no-install-recommends: the recommends pull in node exporters and web assets the tests never use.
# The packages' postinst scripts try to start services; without a service manager that is a no-op.
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"

for pkg in "${missing[@]}"; do
  if ! command -v "${PROVIDES[$pkg]}" >/dev/null 2>&1; then
    echo "error: installed $pkg but ${PROVIDES[$pkg]} is still not on PATH" >&2
    exit 1
  fi
done
echo "installed: ${missing[*]}"
