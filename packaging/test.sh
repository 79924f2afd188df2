#!/usr/bin/env bash
# Tests of the Debian packages built by `make package` (packaging/package.sh).
#
#   packaging/test.sh chroot   a clean Debian 12 root (debootstrap, target/debroot): Debian's
#                              postgresql-15 and pg_cron, our packages through apt, a cluster,
#                              CREATE EXTENSION ... CASCADE, self_test(), an upgrade from every
#                              released version, the exporter scraping the cluster, --version of
#                              the services, systemd-analyze verify of the units, and the
#                              root booted by systemd-nspawn (private network) to run both
#                              services under their sandbox.
#   packaging/test.sh host     this machine: the make-installed extension files are backed up
#                              and removed, the package installed with dpkg, the extension
#                              created from the packaged files alone in a private cluster, then
#                              the package purged and the backed-up files put back.
#   packaging/test.sh base     only (re)build the cached base root.
#
# The base root (minbase + postgresql-15, postgresql-15-cron and systemd, for systemd-analyze,
# from the Debian mirror) is cached
# as target/debroot-cache/bookworm-pg15.tar: later runs only unpack it. Everything listens on
# Unix sockets or 127.0.0.1 only; every step is bounded by `timeout`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
mode=${1:-chroot}

debs=${DEB_DIR:-${CARGO_TARGET_DIR:-$root/target-package}/debian}
debroot=${DEBROOT:-$root/target/debroot}
cache=${DEBROOT_CACHE:-$root/target/debroot-cache}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
base_tar=$cache/bookworm-pg15.tar

passed=0 failed=0
ok()   { echo "ok   - $*"; passed=$((passed + 1)); }
fail() { echo "FAIL - $*"; failed=$((failed + 1)); }
check() { local what=$1; shift; if "$@"; then ok "$what"; else fail "$what"; fi; }
# Like check, but nothing after it makes sense when it fails.
require() { local what=$1; shift; if "$@"; then ok "$what"; else fail "$what"; finish; exit 1; fi; }
finish() {
    echo "package-test ($mode): $passed passed, $failed failed"
    ((failed == 0))
}

# ---------------------------------------------------------------- chroot plumbing
in_root_t() { local t=$1; shift; timeout "$t" chroot "$debroot" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"; }
in_root() { in_root_t 120 "$@"; }

# Unmounts whatever is mounted below $1 (deepest first); fails if anything stays.
unmount_below() {
    local dir; dir=$(realpath -m "$1")
    local mounts
    mounts=$(findmnt -rn -o TARGET | awk -v d="$dir" 'index($0, d "/") == 1' | sort -r)
    for m in $mounts; do umount "$m" 2>/dev/null || umount -l "$m"; done
    ! findmnt -rn -o TARGET | awk -v d="$dir" 'index($0, d "/") == 1 {found=1} END {exit !found}'
}

# Removes a root folder, never while something is mounted inside it.
remove_root() {
    [[ -e $1 ]] || return 0
    unmount_below "$1" || { echo "still mounted below $1: refusing to delete it" >&2; return 1; }
    rm -rf --one-file-system "$1"
}

mount_root() {
    mount -t proc proc "$1/proc"
    mkdir -p "$1/dev/shm" && mount -t tmpfs -o size=256m tmpfs "$1/dev/shm"
}

build_base() {
    command -v debootstrap >/dev/null || {
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null; }
    local build=$cache/build
    mkdir -p "$cache"
    remove_root "$build"
    echo "debootstrap bookworm (minbase) from $mirror"
    timeout 1200 debootstrap --variant=minbase bookworm "$build" "$mirror" > "$cache/debootstrap.log" 2>&1 ||
        { tail -20 "$cache/debootstrap.log"; return 1; }
    # No daemons started by maintainer scripts inside the root.
    printf '#!/bin/sh\nexit 101\n' > "$build/usr/sbin/policy-rc.d" && chmod 755 "$build/usr/sbin/policy-rc.d"
    cp /etc/resolv.conf "$build/etc/resolv.conf" 2>/dev/null || true
    mount_root "$build"
    local rc=0
    debroot=$build in_root_t 900 sh -c 'apt-get update -qq && apt-get install -y -qq --no-install-recommends \
        postgresql-15 postgresql-15-cron systemd >/dev/null && apt-get clean' || rc=$?
    unmount_below "$build"
    ((rc == 0)) || return $rc
    tar -C "$build" -cf "$base_tar.tmp" . && mv "$base_tar.tmp" "$base_tar"
    remove_root "$build"
}

# ---------------------------------------------------------------- chroot test
test_chroot() {
    [[ -f $base_tar ]] || build_base
    local pkgs=("$debs"/*.deb)
    [[ -e ${pkgs[0]} ]] || { echo "no packages in $debs: run make package" >&2; exit 1; }

    remove_root "$debroot"
    mkdir -p "$debroot" && tar -C "$debroot" -xf "$base_tar"
    mount_root "$debroot"
    exporter_pid=""
    cleanup_chroot() {
        [[ -n $exporter_pid ]] && kill "$exporter_pid" 2>/dev/null || true
        in_root pg_ctlcluster 15 main stop -m fast >/dev/null 2>&1 || true
        unmount_below "$debroot" || true
    }
    trap cleanup_chroot EXIT

    mkdir -p "$debroot/tmp/debs" && cp "${pkgs[@]}" "$debroot/tmp/debs/"
    # apt resolves Depends against the cached lists (postgresql-15, pg_cron already there).
    require "apt-get install of $(cd "$debs" && echo *.deb)" \
        in_root_t 300 sh -c 'apt-get install -y -qq /tmp/debs/*.deb >/tmp/apt.log 2>&1 || { cat /tmp/apt.log; exit 1; }'
    local p
    for p in "${pkgs[@]}"; do
        p=$(dpkg-deb --field "$p" Package)
        check "$p installed" in_root sh -c "dpkg-query -W -f='\${Status}' $p | grep -q 'install ok installed'"
    done

    # Debian's own cluster (made by postgresql-common), Unix socket only, pg_cron preloaded.
    cat > "$debroot/etc/postgresql/15/main/conf.d/pkgtest.conf" <<'CONF'
listen_addresses = ''
shared_preload_libraries = 'pg_cron'
cron.database_name = 'pkgtest'
CONF
    require "cluster 15/main starts" in_root_t 60 pg_ctlcluster 15 main start
    psql() { in_root runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -At "$@"; }
    require "CREATE DATABASE pkgtest, pkgupgrade" psql -c 'CREATE DATABASE pkgtest' -c 'CREATE DATABASE pkgupgrade'

    check "CREATE EXTENSION pg_cron; CREATE EXTENSION pg_usage_analytics CASCADE" \
        psql -d pkgtest -c 'CREATE EXTENSION pg_cron' -c 'CREATE EXTENSION pg_usage_analytics CASCADE'
    check "installed version is $version" \
        test "$(psql -d pkgtest -c "SELECT extversion FROM pg_extension WHERE extname = 'pg_usage_analytics'")" = "$version"
    # What the scheduled job does, once now (self_test() wants a rollup once a job is scheduled).
    check "schedule_rollups(); CALL run_maintenance()" \
        psql -o /dev/null -d pkgtest -c 'SELECT usage_analytics.schedule_rollups()' -c 'CALL usage_analytics.run_maintenance()'
    local self
    self=$(psql -d pkgtest -F ' ' -c 'SELECT check_name, ok, detail FROM usage_analytics.self_test()')
    echo "$self" | sed 's/^/     /'
    check "self_test(): every row ok" test -n "$self" -a "$(echo "$self" | awk '$2 != "t"' | wc -l)" = 0

    # Every released version, installed from the packaged frozen script, upgrades to this one.
    local released v
    released=$(psql -d pkgupgrade -c "SELECT version FROM pg_available_extension_versions
                                       WHERE name = 'pg_usage_analytics' AND version <> '$version' ORDER BY 1")
    for v in $released; do
        check "CREATE EXTENSION VERSION '$v', then ALTER EXTENSION UPDATE to $version" psql -d pkgupgrade \
            -c 'DROP EXTENSION IF EXISTS pg_usage_analytics CASCADE' \
            -c "CREATE EXTENSION pg_usage_analytics VERSION '$v' CASCADE" \
            -c 'ALTER EXTENSION pg_usage_analytics UPDATE' \
            -c "DO \$\$ BEGIN IF (SELECT extversion FROM pg_extension WHERE extname = 'pg_usage_analytics') <> '$version'
                   OR EXISTS (SELECT 1 FROM usage_analytics.self_test() WHERE check_name <> 'pg_cron_job' AND NOT ok)
                THEN RAISE EXCEPTION 'upgrade from $v incomplete'; END IF; END \$\$"
    done
    [[ -n $released ]] || fail "no released version found in the packaged files"

    # The services answer.
    check "usage-analytics-exporter --version" sh -c "chroot '$debroot' usage-analytics-exporter --version | grep -qx 'usage-analytics-exporter $version'"
    check "man page usage-analytics-exporter(1)" test -s "$debroot/usr/share/man/man1/usage-analytics-exporter.1.gz"
    if [[ -e $debroot/usr/bin/usage-analytics-collector ]]; then
        check "usage-analytics-collector --version" sh -c "chroot '$debroot' usage-analytics-collector --version | grep -q '$version'"
        check "man page usage-analytics-collector(1)" test -s "$debroot/usr/share/man/man1/usage-analytics-collector.1.gz"
    fi
    check "/etc/default/usage-analytics-exporter is a 0640 conffile" sh -c \
        "[ \"\$(stat -c %a '$debroot/etc/default/usage-analytics-exporter')\" = 640 ] &&
         chroot '$debroot' dpkg-query -W -f='\${Conffiles}' usage-analytics-exporter | grep -q /etc/default/usage-analytics-exporter"

    # The packaged exporter scrapes the packaged extension (socket, peer auth as postgres).
    local port=$((20000 + RANDOM % 20000))
    in_root_t 40 runuser -u postgres -- /usr/bin/usage-analytics-exporter \
        --database-url "host=/var/run/postgresql user=postgres dbname=pkgtest" --listen "127.0.0.1:$port" \
        >"$debroot/tmp/exporter.log" 2>&1 &
    exporter_pid=$!
    local metrics="" i
    for i in $(seq 50); do
        metrics=$(curl -fsS --max-time 2 "http://127.0.0.1:$port/metrics" 2>/dev/null) && break
        sleep 0.2
    done
    check "exporter /metrics says ai_usage_exporter_up 1" grep -qx 'ai_usage_exporter_up 1' <<<"$metrics"
    kill "$exporter_pid" 2>/dev/null; wait "$exporter_pid" 2>/dev/null || true; exporter_pid=""

    # The units: systemd's own checker, in the root where they are installed.
    local unit
    for unit in "$debroot"/usr/lib/systemd/system/usage-analytics-*.service; do
        [[ -e $unit ]] || { fail "no unit installed"; continue; }
        check "systemd-analyze verify $(basename "$unit")" \
            in_root_t 60 systemd-analyze verify --man=no "/usr/lib/systemd/system/$(basename "$unit")"
        in_root_t 60 systemd-analyze security --offline=yes "/usr/lib/systemd/system/$(basename "$unit")" 2>/dev/null |
            tail -1 | sed "s/^/     /" || true
    done

    # The units under a real systemd: the root booted by systemd-nspawn with a private
    # network (its own loopback), the services started by systemctl with their sandbox.
    test_boot

    # Removal and purge leave nothing behind.
    check "apt-get purge of every package" in_root_t 120 sh -c \
        "apt-get purge -y -qq $(for p in "${pkgs[@]}"; do dpkg-deb --field "$p" Package; done | tr '\n' ' ') >/dev/null 2>&1"
    check "no pg_usage_analytics files left" sh -c "! ls '$debroot'/usr/share/postgresql/15/extension/pg_usage_analytics* '$debroot'/etc/default/usage-analytics-* 2>/dev/null | grep -q ."
    finish
}

test_boot() {
    command -v systemd-nspawn >/dev/null || timeout 300 apt-get install -y -qq --no-install-recommends \
        systemd-container >/dev/null 2>&1 || { fail "systemd-nspawn not available"; return; }
    in_root pg_ctlcluster 15 main stop -m fast >/dev/null 2>&1 || true
    unmount_below "$debroot"
    mv "$debroot/usr/sbin/policy-rc.d" "$debroot/policy-rc.d.off"
    cat > "$debroot/etc/postgresql/15/main/conf.d/pkgtest.conf" <<'CONF'
listen_addresses = 'localhost'
CONF
    cat > "$debroot/usr/local/sbin/pkgcheck" <<'SCRIPT'
#!/bin/bash
# Runs inside the booted root, then powers it off.
exec >/pkgcheck.log 2>&1
http() { exec 3<>"/dev/tcp/127.0.0.1/$1" && printf 'GET %s HTTP/1.0\r\nHost: localhost\r\n\r\n' "$2" >&3 && timeout 5 cat <&3; exec 3<&-; }
for i in $(seq 60); do runuser -u postgres -- psql -Atc 'SELECT 1' >/dev/null 2>&1 && break; sleep 1; done
runuser -u postgres -- psql -q -v ON_ERROR_STOP=1 \
    -c "CREATE ROLE usage_exporter LOGIN PASSWORD 'pkgtest'" -c "CREATE ROLE usage_collector LOGIN PASSWORD 'pkgtest'" \
    -c 'CREATE EXTENSION IF NOT EXISTS pg_usage_analytics CASCADE' \
    -c 'GRANT usage_analytics_monitor TO usage_exporter' -c 'GRANT usage_analytics_writer TO usage_collector'
for svc in exporter collector; do
    [ -e /usr/bin/usage-analytics-$svc ] || continue
    echo "DATABASE_URL=postgres://usage_$svc:pkgtest@127.0.0.1:5432/postgres" >> /etc/default/usage-analytics-$svc
    systemctl start usage-analytics-$svc
done
sleep 3
for svc in exporter collector; do
    [ -e /usr/bin/usage-analytics-$svc ] || continue
    echo "$svc: $(systemctl is-active usage-analytics-$svc)"
    journalctl -u usage-analytics-$svc --no-pager | tail -5
done
echo "exporter metrics: $(http 9464 /metrics | grep -E '^ai_usage_exporter_up ')"
[ -e /usr/bin/usage-analytics-collector ] && echo "collector health: $(http 4318 /health | head -1 | tr -d '\r')"
echo DONE
systemctl poweroff
SCRIPT
    chmod 755 "$debroot/usr/local/sbin/pkgcheck"
    printf '[Unit]\nAfter=postgresql.service\n[Service]\nType=oneshot\nExecStart=/usr/local/sbin/pkgcheck\n' \
        > "$debroot/etc/systemd/system/pkgcheck.service"
    mkdir -p "$debroot/etc/systemd/system/multi-user.target.wants"
    ln -sf /etc/systemd/system/pkgcheck.service "$debroot/etc/systemd/system/multi-user.target.wants/"
    rm -f "$debroot/pkgcheck.log"
    timeout 240 systemd-nspawn -q -b -D "$debroot" --private-network --register=no --keep-unit \
        > "$debroot/tmp/nspawn.log" 2>&1 || true
    unmount_below "$debroot" || true
    mv "$debroot/policy-rc.d.off" "$debroot/usr/sbin/policy-rc.d"
    rm -f "$debroot/etc/systemd/system/multi-user.target.wants/pkgcheck.service"
    mount_root "$debroot"
    grep -E '^(exporter|collector)|DONE' "$debroot/pkgcheck.log" 2>/dev/null | sed 's/^/     /'
    check "booted root: usage-analytics-exporter.service active under its sandbox" grep -qx 'exporter: active' "$debroot/pkgcheck.log"
    check "booted root: the service's /metrics says ai_usage_exporter_up 1" grep -qx 'exporter metrics: ai_usage_exporter_up 1' "$debroot/pkgcheck.log"
    if [[ -e $debroot/usr/bin/usage-analytics-collector ]]; then
        check "booted root: usage-analytics-collector.service active under its sandbox" grep -qx 'collector: active' "$debroot/pkgcheck.log"
        check "booted root: the collector answers /health" grep -q '^collector health: HTTP/1.[01] ' "$debroot/pkgcheck.log"
    fi
}

# ---------------------------------------------------------------- host test
test_host() {
    local deb
    deb=$(ls "$debs"/postgresql-15-pg-usage-analytics_*.deb 2>/dev/null | head -1)
    [[ -n $deb ]] || { echo "no extension package in $debs: run make package" >&2; exit 1; }
    if pgrep -f 'target/debug/deps' >/dev/null; then
        echo "package-test (host): skipped, a test is running (pgrep -f target/debug/deps)"
        exit 0
    fi
    if dpkg-query -W -f='${Status}' postgresql-15-pg-usage-analytics 2>/dev/null | grep -q 'install ok installed'; then
        echo "postgresql-15-pg-usage-analytics is already installed with dpkg here: not touching it" >&2
        exit 1
    fi
    local pg_config=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
    local extdir libdir bin work backup
    extdir=$("$pg_config" --sharedir)/extension libdir=$("$pg_config" --pkglibdir) bin=$("$pg_config" --bindir)
    work=$(mktemp -d /tmp/pua-pkg-host.XXXXXX) && chown postgres "$work"
    backup=${CARGO_TARGET_DIR:-$root/target-package}/host-backup.tar

    # Back up the make-installed build (the other engineers' dev state) first.
    mkdir -p "$(dirname "$backup")"
    (cd / && tar -cpf "$backup" --files-from=<(ls -d "${extdir#/}"/pg_usage_analytics* "${libdir#/}"/pg_usage_analytics.so 2>/dev/null))
    echo "backed up $(tar -tf "$backup" | wc -l) make-installed files to $backup"
    restore() {
        runuser -u postgres -- "$bin/pg_ctl" -D "$work/data" stop -m immediate >/dev/null 2>&1 || true
        timeout 120 dpkg --purge postgresql-15-pg-usage-analytics >/dev/null 2>&1 || true
        rm -f "$extdir"/pg_usage_analytics* "$libdir/pg_usage_analytics.so"
        tar -C / -xpf "$backup"
        echo "restored $(tar -tf "$backup" | wc -l) make-installed files"
        rm -rf "$work"
    }
    trap restore EXIT

    # The cluster first, so the window without the dev build stays short.
    timeout 60 runuser -u postgres -- "$bin/initdb" -D "$work/data" -A trust >/dev/null
    timeout 60 runuser -u postgres -- "$bin/pg_ctl" -D "$work/data" -w -l "$work/log" \
        -o "-c listen_addresses='' -k $work" start >/dev/null

    rm -f "$extdir"/pg_usage_analytics* "$libdir/pg_usage_analytics.so"
    check "dpkg -i $(basename "$deb")" timeout 120 dpkg -i "$deb"
    check "the package owns the control file and the .so" \
        dpkg -S "$extdir/pg_usage_analytics.control" "$libdir/pg_usage_analytics.so"
    local hpsql=(timeout 60 runuser -u postgres -- "$bin/psql" -X -q -v ON_ERROR_STOP=1 -At -h "$work" -d postgres)
    check "CREATE EXTENSION pg_usage_analytics CASCADE from the packaged files" \
        "${hpsql[@]}" -c 'CREATE EXTENSION pg_usage_analytics CASCADE'
    local self
    self=$("${hpsql[@]}" -F ' ' -c 'SELECT check_name, ok, detail FROM usage_analytics.self_test()')
    echo "$self" | sed 's/^/     /'
    check "self_test(): every row ok" test -n "$self" -a "$(echo "$self" | awk '$2 != "t"' | wc -l)" = 0
    trap - EXIT
    restore
    check "make-installed files are back" test -s "$libdir/pg_usage_analytics.so" -a -s "$extdir/pg_usage_analytics.control"
    finish
}

case $mode in
    chroot) test_chroot ;;
    host) test_host ;;
    base) build_base ;;
    *) echo "usage: $0 chroot|host|base" >&2; exit 2 ;;
esac
