#!/usr/bin/env bash
# Fuzzes the REST API with schemathesis (from PyPI) against a server started here on
# a database of its own (dropped afterwards), authenticated as a tenant owner and
# with an API key: no answer may be a server error or fall outside the documented
# statuses, content types, headers and schemas. Operations that end the run's own
# credentials (deleting the tenant or a user, logging out, revoking keys) and the two
# streaming routes (fuzzed by tests/api/fuzz.rs and the realtime tests) are left out.
set -euo pipefail
cd "$(dirname "$0")/.."

admin_url=postgres://postgres@127.0.0.1:5432/postgres
if ! pg_isready -q -h 127.0.0.1 -p 5432; then
    admin_url=postgres://postgres@127.0.0.1:25432/postgres
fi
database="hark_fuzz_$(date +%s)_$$"
port=${HARK_FUZZ_PORT:-18490}
url="http://127.0.0.1:$port"
examples=${HARK_FUZZ_EXAMPLES:-40}

venv=target/fuzz-venv
[ -x "$venv/bin/pip" ] || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/python/fuzz-requirements.txt

cargo build --quiet
log=$(mktemp)
DATABASE_URL="${admin_url%/postgres}/$database" HARK_BIND="127.0.0.1:$port" \
    HARK_TENANT_CREATION=open HARK_LOG_FORMAT=text RUST_LOG=warn \
    HARK_SEND_BURST=1000000 HARK_SEND_RATE_PER_SECOND=1000000 \
    HARK_LOGIN_FAILURES_PER_ACCOUNT=1000000 HARK_LOGIN_FAILURES_PER_ADDRESS=1000000 \
    ./target/debug/hark serve >"$log" 2>&1 &
server=$!
cleanup() {
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
    psql -q "$admin_url" -c "drop database if exists $database with (force)" >/dev/null 2>&1 || true
    rm -f "$log"
}
trap cleanup EXIT
for _ in $(seq 1 200); do
    curl -s -o /dev/null "$url/readyz" && break
    sleep 0.1
done

token=$(curl -sf -X POST "$url/v1/tenants" -H 'content-type: application/json' \
    -d '{"slug":"fuzz","name":"Fuzz","owner":{"username":"owner","password":"correct horse battery staple"}}' \
    | jq -r '.session.access_token')
api_key=$(curl -sf -X POST "$url/v1/api-keys" -H 'content-type: application/json' \
    -H "authorization: Bearer $token" -d '{"name":"fuzz"}' | jq -r '.key')

status=0
"$venv/bin/schemathesis" run "$url/openapi.json" \
    --header "Authorization: Bearer $token" \
    --header "X-Api-Key: $api_key" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance \
    --exclude-operation-id deleteTenant --exclude-operation-id deleteUser \
    --exclude-operation-id logout --exclude-operation-id revokeApiKey \
    --exclude-operation-id connectWebSocket --exclude-operation-id streamRoomEvents \
    --max-examples "$examples" --workers 2 --seed 20261121 --warnings off \
    || status=$?
if grep -q "ERROR" "$log"; then
    echo "the server logged errors while fuzzed:" >&2
    grep "ERROR" "$log" >&2
    status=1
fi
if ! kill -0 "$server" 2>/dev/null; then
    echo "the server died while fuzzed" >&2
    status=1
fi
[ "$status" = 0 ] && echo "schemathesis: OK"
exit "$status"
