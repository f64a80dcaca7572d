#!/usr/bin/env bash
# Fuzzes the REST API with schemathesis (from PyPI) against a server started here on
# a database of its own (dropped afterwards), authenticated as a tenant owner and
# with an API key, with every check and every phase (examples, coverage, fuzzing,
# stateful), valid and invalid data: no answer may be a server error or fall outside
# the documented statuses, content types, headers and schemas; every request the
# document allows is accepted and every one it forbids refused. Operations that end
# the run's own credentials (deleting the tenant or a user, logging out, revoking keys
# or sessions) and the two streaming routes (fuzzed by tests/api/fuzz.rs and the
# realtime tests) are left out.
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/lib/server.sh

# One worker: with two, schemathesis 4.32.5 on Python 3.11 sometimes fails inside itself
# ("AST constructor recursion depth mismatch", a race in the interpreter's ast module
# between its threads), which says nothing about the API.
port=${HARK_FUZZ_PORT:-18490}
url="http://127.0.0.1:$port"
examples=${HARK_FUZZ_EXAMPLES:-40}

venv=target/fuzz-venv
[ -x "$venv/bin/pip" ] || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/python/fuzz-requirements.txt

start_server fuzz "$port" HARK_TENANT_CREATION=open HARK_LOG_FORMAT=text RUST_LOG=warn \
    HARK_SEND_BURST=1000000 HARK_SEND_RATE_PER_SECOND=1000000 \
    HARK_LOGIN_FAILURES_PER_ACCOUNT=1000000 HARK_LOGIN_FAILURES_PER_ADDRESS=1000000 \
    HARK_JOIN_CODE_FAILURES_PER_USER=1000000 HARK_JOIN_CODE_FAILURES_PER_ADDRESS=1000000 \
    HARK_ROOMS_PER_USER_PER_HOUR=1000000 HARK_SIGNUPS_PER_ADDRESS_PER_HOUR=1000000 \
    HARK_REQUESTS_BURST=1000000 HARK_REQUESTS_PER_SECOND=1000000 \
    HARK_MAX_REQUESTS_IN_FLIGHT_PER_TENANT=1000000

token=$(curl -sf -X POST "$url/v1/tenants" -H 'content-type: application/json' \
    -d '{"slug":"fuzz","name":"Fuzz","owner":{"username":"owner","password":"correct horse battery staple"}}' \
    | jq -r '.session.access_token')
api_key=$(curl -sf -X POST "$url/v1/api-keys" -H 'content-type: application/json' \
    -H "authorization: Bearer $token" -d '{"name":"fuzz"}' | jq -r '.key')

status=0
# tests/python/schemathesis.toml lists the false positives left out, with reasons. One
# check goes here, because `--checks all` would turn it on again over the file: a 404
# from an operation that takes the id of a resource the run created and an id the
# fuzzer invented (adding an invented user to a room just created) is about the
# invented id, and ensure_resource_availability takes it for the room having vanished.
"$venv/bin/schemathesis" --config-file tests/python/schemathesis.toml run "$url/openapi.json" \
    --header "Authorization: Bearer $token" \
    --header "X-Api-Key: $api_key" \
    --checks all --exclude-checks ensure_resource_availability \
    --mode all --phases examples,coverage,fuzzing,stateful \
    --exclude-operation-id deleteTenant --exclude-operation-id deleteUser \
    --exclude-operation-id logout --exclude-operation-id revokeApiKey \
    --exclude-operation-id backendRevokeSessions \
    --exclude-operation-id connectWebSocket --exclude-operation-id streamRoomEvents \
    --exclude-operation-id streamMyEvents \
    --max-examples "$examples" --workers 1 --seed "${HARK_FUZZ_SEED:-20261121}" --warnings off \
    || status=$?
if grep -q "ERROR" "$server_log"; then
    echo "the server logged errors while fuzzed:" >&2
    grep "ERROR" "$server_log" >&2
    status=1
fi
if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "the server died while fuzzed" >&2
    status=1
fi
[ "$status" = 0 ] && echo "schemathesis: OK"
exit "$status"
