#!/usr/bin/env bash
# Debian packages from the release build (`make package`), into $CARGO_TARGET_DIR/debian:
#   postgresql-15-pg-usage-analytics  the extension (cargo pgrx package + released and upgrade scripts)
#   usage-analytics-exporter          the exporter, its hardened unit, /etc/default file, man page
#   usage-analytics-collector         the same for the collector, when collector/Cargo.toml exists
# Packaging metadata: [package.metadata.deb] of pg_usage_analytics/ and exporter/Cargo.toml.
# The Makefile has already regenerated the upgrade script (make upgrade-script).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD

CARGO_DEB_VERSION=3.8.0                       # builds on Rust >= 1.85; pinned for reproducible packages
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target-package}
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
out=$CARGO_TARGET_DIR/debian
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)

# Tools, idempotently: cargo-deb (pinned) and help2man (Debian).
if [[ "$(cargo deb --version 2>/dev/null)" != *" $CARGO_DEB_VERSION"* ]]; then
    echo "package: installing cargo-deb $CARGO_DEB_VERSION (about 3 minutes)"
    cargo install cargo-deb --version "$CARGO_DEB_VERSION" --locked --force
fi
if ! command -v help2man >/dev/null; then
    echo "package: installing help2man"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends help2man >/dev/null ||
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends help2man >/dev/null; }
fi

# 1. The extension, exactly as `make install-release` installs it: cargo pgrx
#    package's tree, plus the frozen install scripts of released versions and the
#    upgrade scripts (frozen, or built by `make upgrade-script`), but never a
#    released copy of the current version's script.
stage=$CARGO_TARGET_DIR/release/pg_usage_analytics-pg15
rm -rf "$stage"
(cd pg_usage_analytics && cargo pgrx package --pg-config "$PG_CONFIG")
extdir=$stage$("$PG_CONFIG" --sharedir)/extension
libdir=$stage$("$PG_CONFIG" --pkglibdir)
for f in sql/released/*.sql "${UPGRADE_BUILD_DIR:?set by make package}"/*.sql; do
    [[ -e $f && $(basename "$f") != "pg_usage_analytics--$version.sql" ]] || continue
    install -m 644 "$f" "$extdir/"
done
for f in "$extdir/pg_usage_analytics.control" "$extdir/pg_usage_analytics--$version.sql" "$libdir/pg_usage_analytics.so"; do
    [[ -s $f ]] || { echo "package: missing $f after cargo pgrx package" >&2; exit 1; }
done

# 2. The service binaries and their man pages, generated from --help.
bins=(usage-analytics-exporter usage-analytics-collector)
cargo build --release $(printf -- ' -p %s' "${bins[@]}")
mkdir -p "$CARGO_TARGET_DIR/release/man"
declare -A summary=(
    [usage-analytics-exporter]="Prometheus exporter for the pg_usage_analytics PostgreSQL extension"
    [usage-analytics-collector]="OpenTelemetry (OTLP/HTTP) collector recording GenAI spans into pg_usage_analytics"
)
for bin in "${bins[@]}"; do
    help2man --no-info --section 1 --name "${summary[$bin]}" \
        --output "$CARGO_TARGET_DIR/release/man/$bin.1" "$CARGO_TARGET_DIR/release/$bin"
    gzip -9nf "$CARGO_TARGET_DIR/release/man/$bin.1"
done

# 3. Debian's changelog (one entry for this version, dated by the last commit), then the
#    .deb files: cargo-deb with --no-build (everything is built above).
maintainer=$(sed -n 's/^maintainer = "\(.*\)"/\1/p' exporter/Cargo.toml | head -1)
{
    echo "pg-usage-analytics ($version-1) unstable; urgency=medium"
    echo
    echo "  * pg_usage_analytics $version; see README.md (Upgrades) for what changed."
    echo
    echo " -- $maintainer  $(LC_ALL=C date -u -R -d "@$SOURCE_DATE_EPOCH")"
} | gzip -9n > "$CARGO_TARGET_DIR/release/changelog.Debian.gz"
rm -rf "$out" && mkdir -p "$out"
cargo deb -p pg_usage_analytics --no-build --output "$out"
cargo deb -p usage-analytics-exporter --no-build --output "$out"
cargo deb -p usage-analytics-collector --no-build --output "$out"

for deb in "$out"/*.deb; do
    echo "== $(basename "$deb")"
    dpkg-deb --field "$deb" Package Version Architecture Depends Recommends Suggests
    dpkg-deb --contents "$deb" | awk '$6 !~ /\/$/ {print "   ", $1, $2, $6}'
    scripts=$(dpkg-deb --info "$deb" | { grep -oE ' (pre|post)(inst|rm) ' || true; } | tr -d ' ' | paste -sd' ')
    [[ -z $scripts ]] || echo "    maintainer scripts: $scripts"
done
