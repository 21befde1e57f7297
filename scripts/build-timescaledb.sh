#!/usr/bin/env bash
# Build and install TimescaleDB (Apache-licensed edition) for the system's PostgreSQL.
#
# Debian stable has no TimescaleDB package, so we take Debian's own `timescaledb` source
# package from the next Debian release and build it against the local PostgreSQL headers.
# The apt source for that release is derived from this machine's apt configuration (same
# mirror, same keyring) and lives only in a temporary directory: nothing is added to
# /etc/apt and no mirror host is written down here.
#
# Skipped when TimescaleDB >= MIN_VERSION is already installed for this PostgreSQL.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/lib.sh
. "$here/lib.sh"

MIN_VERSION=${TIMESCALEDB_MIN_VERSION:-2.19.3}

[ -x "$PG_CONFIG" ] || die "$PG_CONFIG not found: install postgresql-server-dev-$PG_MAJOR"
sharedir=$("$PG_CONFIG" --sharedir)
control="$sharedir/extension/timescaledb.control"

version_ge() { [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" = "$2" ]; }

if [ -f "$control" ]; then
  have=$(sed -n "s/^default_version *= *'\(.*\)'.*/\1/p" "$control")
  if [ -n "$have" ] && version_ge "$have" "$MIN_VERSION"; then
    exit 0
  fi
  say "TimescaleDB $have is older than $MIN_VERSION: rebuilding"
fi

. /etc/os-release
case "${VERSION_CODENAME:-}" in
  bullseye) next=bookworm ;;
  bookworm) next=trixie ;;
  trixie)   next=forky ;;
  *) die "unknown Debian release '${VERSION_CODENAME:-?}': set the next release by hand in $0" ;;
esac

# Find the mirror and keyring this machine already uses for the Debian archive itself
# (the entry that serves "$VERSION_CODENAME" with component main, not -security).
read -r mirror keyring < <(python3 - "$VERSION_CODENAME" <<'PY'
import glob, re, sys
codename = sys.argv[1]
def deb822(text):
    for stanza in re.split(r"\n\s*\n", text):
        f = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line:
                continue
            k, v = line.split(":", 1)
            f[k.strip().lower()] = v.strip()
        yield f
for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
    for f in deb822(open(path).read()):
        suites = f.get("suites", "").split()
        if codename in suites and "main" in f.get("components", "").split():
            print(f["uris"].split()[0], f.get("signed-by", "/usr/share/keyrings/debian-archive-keyring.gpg"))
            sys.exit(0)
for path in ["/etc/apt/sources.list", *sorted(glob.glob("/etc/apt/sources.list.d/*.list"))]:
    try:
        lines = open(path).read().splitlines()
    except OSError:
        continue
    for line in lines:
        m = re.match(r"\s*deb(?:-src)?\s+(?:\[([^\]]*)\]\s+)?(\S+)\s+(\S+)\s+(.*)", line)
        if m and m.group(3) == codename and "main" in m.group(4).split():
            opts = dict(o.split("=", 1) for o in (m.group(1) or "").split() if "=" in o)
            print(m.group(2), opts.get("signed-by", "/usr/share/keyrings/debian-archive-keyring.gpg"))
            sys.exit(0)
sys.exit("no apt source for the Debian archive found")
PY
) || die "could not derive a Debian mirror from /etc/apt"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/parts" "$work/lists/partial" "$work/src"
cat > "$work/parts/next.sources" <<SRC
Types: deb-src
URIs: $mirror
Suites: $next
Components: main
Signed-By: $keyring
SRC
apt_opts=(-o "Dir::Etc::SourceList=/dev/null" -o "Dir::Etc::SourceParts=$work/parts"
          -o "Dir::State::Lists=$work/lists" -o "APT::Sandbox::User=$(id -un)")

say "fetching Debian's timescaledb source package from $next"
apt-get "${apt_opts[@]}" update -qq
(cd "$work/src" && apt-get "${apt_opts[@]}" source -qq timescaledb >/dev/null)
srcdir=$(find "$work/src" -mindepth 1 -maxdepth 1 -type d -name 'timescaledb-*' | head -n1)
[ -n "$srcdir" ] || die "apt-get source timescaledb produced no source tree"

say "building $(basename "$srcdir") (Apache edition) against PostgreSQL $PG_MAJOR"
# Same flags as the Debian package (debian/rules), minus the test suites.
cmake -S "$srcdir" -B "$srcdir/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DPG_CONFIG="$PG_CONFIG" -DAPACHE_ONLY=1 -DSEND_TELEMETRY_DEFAULT=OFF -DUSE_TELEMETRY=OFF \
  -DREGRESS_CHECKS=OFF -DTAP_CHECKS=OFF -DWARNINGS_AS_ERRORS=OFF >"$work/cmake.log" 2>&1 \
  || { tail -n 30 "$work/cmake.log"; die "cmake failed"; }
make -C "$srcdir/build" -j"$(nproc)" >"$work/make.log" 2>&1 \
  || { tail -n 30 "$work/make.log"; die "build failed"; }
as_root make -C "$srcdir/build" install >"$work/install.log" 2>&1 \
  || { tail -n 30 "$work/install.log"; die "install failed"; }
say "installed TimescaleDB $(sed -n "s/^default_version *= *'\(.*\)'.*/\1/p" "$control")"
