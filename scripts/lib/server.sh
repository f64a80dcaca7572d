# Sourced by the scripts that need a running server (the README walk-through, the
# client tests, the API fuzzing). `start_server NAME PORT [VARIABLE=value ...]` builds
# hark, starts `hark serve` on 127.0.0.1:PORT with the given settings on a database of
# its own (hark_NAME_…, on the local server or the test harness's private cluster),
# waits until it is ready, and on exit stops it and drops the database. It sets
# `server_pid` and `server_log` (the server's output).

start_server() {
    local name=$1 port=$2
    shift 2
    server_admin_url=postgres://postgres@127.0.0.1:5432/postgres
    if ! pg_isready -q -h 127.0.0.1 -p 5432; then
        server_admin_url=postgres://postgres@127.0.0.1:25432/postgres
    fi
    server_database="hark_${name}_$(date +%s)_$$"
    cargo build --quiet
    server_log=$(mktemp)
    env DATABASE_URL="${server_admin_url%/postgres}/$server_database" \
        HARK_BIND="127.0.0.1:$port" HARK_JWT_SECRET="$(head -c 32 /dev/urandom | base64)" "$@" \
        ./target/debug/hark serve >"$server_log" 2>&1 &
    server_pid=$!
    trap stop_server EXIT
    for _ in $(seq 1 200); do
        curl -s -o /dev/null "http://127.0.0.1:$port/readyz" && break
        sleep 0.1
    done
    curl -sf -o /dev/null "http://127.0.0.1:$port/readyz" || { cat "$server_log"; exit 1; }
}

stop_server() {
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    psql -q "$server_admin_url" -c "drop database if exists $server_database with (force)" \
        >/dev/null 2>&1 || true
    rm -f "$server_log"
}
