# Shell helpers shared by scripts/demo.sh and scripts/bench.sh. Source it:
#   source "$(dirname "$0")/lib.sh"
# Needs PG_BIN (default /usr/lib/postgresql/15/bin). Everything listens on 127.0.0.1.

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}

# start_cluster DIR PORT [CONF_LINE...]
# A PostgreSQL cluster in DIR/data (owned by postgres, trust auth, UTF8), created
# on first use with port = PORT, listen_addresses = '127.0.0.1', its socket in
# DIR, timezone UTC and the extra postgresql.conf lines given; then started
# (log DIR/postgres.log). An existing cluster keeps its configuration.
start_cluster() {
    local dir=$1 port=$2
    shift 2
    mkdir -p "$dir"
    chown postgres "$dir"
    if [[ ! -f $dir/data/PG_VERSION ]]; then
        echo "initdb in $dir/data"
        runuser -u postgres -- "$PG_BIN/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 >/dev/null
        {
            echo "port = $port"
            echo "listen_addresses = '127.0.0.1'"
            echo "unix_socket_directories = '$dir'"
            echo "timezone = 'UTC'"
            printf '%s\n' "$@"
        } >>"$dir/data/postgresql.conf"
    fi
    runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 300 start >/dev/null
}

# stop_cluster DIR: fast shutdown of the cluster in DIR/data if it is running.
stop_cluster() {
    if [[ -f $1/data/postmaster.pid ]]; then
        runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$1/data" -m fast -w stop >/dev/null 2>&1 || true
    fi
}

# start_service BIN DATABASE_URL LISTEN LOG [ARG...]
# A service binary (usage-analytics-exporter or -collector) in the background;
# sets SERVICE_PID. Returns once http://LISTEN/health answers (at most 60 s),
# non-zero if it never does.
start_service() {
    local bin=$1 url=$2 listen=$3 log=$4
    shift 4
    DATABASE_URL=$url "$bin" --listen "$listen" "$@" >"$log" 2>&1 &
    SERVICE_PID=$!
    if ! wait_http "http://$listen/health" 60 "$SERVICE_PID"; then
        echo "$(basename "$bin") did not become healthy on $listen; last lines of $log:" >&2
        tail -n 20 "$log" >&2
        return 1
    fi
}

# wait_http URL [SECONDS] [PID]: wait until URL answers 2xx (default 60 s);
# gives up early when PID (if given) has exited.
wait_http() {
    local url=$1 seconds=${2:-60} pid=${3:-}
    local deadline=$((SECONDS + seconds))
    while ((SECONDS < deadline)); do
        curl -fsS -o /dev/null --max-time 5 "$url" 2>/dev/null && return 0
        if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then
            return 1
        fi
        sleep 0.2
    done
    return 1
}

# free_listen HOST:PORT: prints HOST:PORT when that port can be bound on HOST,
# else HOST:<a free port the kernel picks>. (Checked now: another process may
# still take it before it is used.)
free_listen() {
    python3 - "$1" <<'PY'
import socket, sys
host, port = sys.argv[1].rsplit(":", 1)
s = socket.socket()
try:
    s.bind((host, int(port)))
except OSError:
    s.close()
    s = socket.socket()
    s.bind((host, 0))
print(f"{host}:{s.getsockname()[1]}")
s.close()
PY
}
