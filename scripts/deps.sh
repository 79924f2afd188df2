#!/usr/bin/env bash
# Installs what the build and tests need, idempotently: quick when present.
# Usage: scripts/deps.sh PG_CONFIG PGRX_VERSION APT_PACKAGE...
set -euo pipefail
pg_config=$1 pgrx_version=$2
shift 2

missing=()
for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
    echo "deps: installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [[ "$(cargo pgrx --version 2>/dev/null)" != "cargo-pgrx $pgrx_version" ]]; then
    echo "deps: installing cargo-pgrx $pgrx_version (about 5 minutes)"
    cargo install cargo-pgrx --version "$pgrx_version" --locked --force
fi

pgrx_home=${PGRX_HOME:-$HOME/.pgrx}
if ! grep -qs "^pg15 *= *\"$pg_config\"" "$pgrx_home/config.toml"; then
    echo "deps: cargo pgrx init --pg15=$pg_config"
    cargo pgrx init --pg15="$pg_config"
fi

# Python packages (pinned): the Grafana bundle's generator and tests, and the
# real OpenTelemetry SDK the collector's tests send spans with.
for requirements in grafana/requirements.txt tests/otel/requirements.txt; do
    path="$(dirname "${BASH_SOURCE[0]}")/../$requirements"
    if ! python3 - "$path" 2>/dev/null <<'EOF'; then
import sys
from importlib.metadata import version
pins = [l.split("#")[0].strip().split("==") for l in open(sys.argv[1])]
sys.exit(any(version(name) != pinned for name, pinned in (p for p in pins if p != [""])))
EOF
        echo "deps: pip install -r $requirements"
        # Debian's own Python refuses pip installs (PEP 668) unless told:
        # these pinned test and build tools go into it on purpose.
        PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install --quiet --disable-pip-version-check -r "$path"
    fi
done
