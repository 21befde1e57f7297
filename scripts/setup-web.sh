#!/usr/bin/env bash
# The console (api/web): its packages from the npm registry (exactly the lock's versions,
# `npm ci`) and its build (Vite, into api/web/dist, which the API serves). Each step is
# skipped when what it depends on is unchanged, so this is quick on every `make`.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/lib.sh
. "$here/lib.sh"
web="$here/../api/web"
cd "$web"

command -v node >/dev/null || die "the console needs Node.js 20.19 or newer (and npm): install nodejs and npm"
node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 19) ? 0 : 1)' \
  || die "the console's build (Vite 8) needs Node.js 20.19 or newer; this is $(node --version)"

lock=$(sha256sum package.json package-lock.json | sha256sum | cut -d' ' -f1)
if [ ! -f node_modules/.estate-lock ] || [ "$(cat node_modules/.estate-lock)" != "$lock" ]; then
  say "installing the console's packages from npm (api/web/package-lock.json)"
  npm ci --no-audit --no-fund --loglevel=error >/dev/null
  echo "$lock" > node_modules/.estate-lock
fi

sources=$( (cat package-lock.json vite.config.js index.html; find src public -type f | sort | xargs cat) | sha256sum | cut -d' ' -f1)
if [ ! -f dist/index.html ] || [ ! -f node_modules/.estate-build ] || [ "$(cat node_modules/.estate-build)" != "$sources" ]; then
  say "building the console (Vite: api/web/dist)"
  npx --no-install vite build --logLevel warn
  echo "$sources" > node_modules/.estate-build
fi
