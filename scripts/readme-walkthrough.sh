#!/usr/bin/env bash
# Runs the README's curl walk-through, verbatim, against a server started the way the
# README says, on a database of its own that is dropped afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."

admin_url=postgres://postgres@127.0.0.1:5432/postgres
if ! pg_isready -q -h 127.0.0.1 -p 5432; then
    admin_url=postgres://postgres@127.0.0.1:25432/postgres
fi
database="hark_readme_$(date +%s)_$$"
export DATABASE_URL="${admin_url%/postgres}/$database"

if curl -s -o /dev/null localhost:8080/healthz; then
    echo "something already listens on port 8080; stop it to run the walk-through" >&2
    exit 1
fi

cargo build --quiet
log=$(mktemp)
HARK_OPERATOR_KEY=local-operator-key ./target/debug/hark serve >"$log" 2>&1 &
server=$!
cleanup() {
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
    psql -q "$admin_url" -c "drop database if exists $database with (force)" >/dev/null 2>&1 || true
    rm -f "$log"
}
trap cleanup EXIT

for _ in $(seq 1 100); do
    curl -s -o /dev/null localhost:8080/healthz && break
    sleep 0.1
done
curl -sf localhost:8080/healthz >/dev/null || { cat "$log"; exit 1; }

# The walk-through is the shell block between the markers in README.md.
walkthrough=$(sed -n '/<!-- walkthrough:start -->/,/<!-- walkthrough:end -->/p' README.md | sed '/^```/d; /^<!--/d')
output=$(bash -euo pipefail -c "$walkthrough")
echo "$output"
last_username=$(echo "$output" | jq -rs '.[-1].username')
[ "$last_username" = bob ] || { echo "the walk-through did not end with bob's profile" >&2; exit 1; }
echo "README walk-through: OK"
