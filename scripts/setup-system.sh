#!/usr/bin/env bash
# Machine-level set-up: Debian packages, TimescaleDB (Apache edition), the service user.
# Idempotent and quick when everything is already in place; safe to run on every `make`.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/lib.sh
. "$here/lib.sh"

PACKAGES=(
  postgresql-15 postgresql-client-15 postgresql-server-dev-15
  cmake build-essential dpkg-dev
  mosquitto mosquitto-clients
  chromium fonts-noto-cjk  # the console's browser tests (Playwright drives Debian's chromium)
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing Debian packages: ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The distribution packages enable system-wide services; we never touch those. Our own
# instances run from var/ on their own ports (see estate/services.py).

"$here/build-timescaledb.sh"

# PostgreSQL refuses to run as root. When set-up runs as root (CI, fresh machines), the
# private services run as this unprivileged system user instead.
if [ "$(id -u)" = 0 ] && ! getent passwd "$SERVICE_USER" >/dev/null; then
  say "creating system user $SERVICE_USER for the private PostgreSQL and Mosquitto"
  useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$SERVICE_USER"
fi
