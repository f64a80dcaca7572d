#!/usr/bin/env bash
# Generates the TypeScript and Python clients from openapi/openapi.yaml (no hand
# edits), validates openapi/asyncapi.yaml with the AsyncAPI parser, and runs the
# client tests and the demo page's browser test against a server started here on a
# database of its own (dropped afterwards). Builds and tests both SDKs
# (clients/typescript, clients/python) against fleets of two instances of their own,
# checks that the demo page's SDK bundle is current, and drives the demo page through
# instance restarts. Needs Node.js with npm, Python 3 and Chromium (.ci/run installs
# what is missing).
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/lib/server.sh

port=${HARK_CLIENT_TEST_PORT:-18480}
export HARK_URL="http://127.0.0.1:$port"

step() { printf '\n--> %s\n' "$*"; }

step "npm tools (tests/js)"
(cd tests/js && npm ci --no-fund --no-audit --loglevel=error)

step "Python tools (target/client-venv)"
venv=target/client-venv
[ -x "$venv/bin/pip" ] || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/python/requirements.txt

step "TypeScript SDK: install, generate (REST client, frame types), type-check, build"
(cd clients/typescript && npm ci --no-fund --no-audit --loglevel=error && npm run --silent generate >/dev/null \
    && npm run --silent check && npx --no-install tsc -p tsconfig.build.json)

step "The demo page's SDK bundle (src/demo/hark-sdk.js) is built from the SDK's sources"
cp src/demo/hark-sdk.js target/hark-sdk.committed.js
(cd clients/typescript && npm run --silent bundle >/dev/null 2>&1)
if ! cmp -s src/demo/hark-sdk.js target/hark-sdk.committed.js; then
    echo "src/demo/hark-sdk.js is out of date: run npm run bundle in clients/typescript and commit it" >&2
    exit 1
fi

step "Python SDK: install (the REST client generated at build time), lint"
"$venv/bin/pip" install --quiet --disable-pip-version-check --no-build-isolation ./clients/python
(cd clients/python && "../../$venv/bin/ruff" check hark tests hatch_build.py && "../../$venv/bin/ruff" format --check hark tests hatch_build.py)

step "AsyncAPI document validates with @asyncapi/parser"
(cd tests/js && node asyncapi.mjs ../../openapi/asyncapi.yaml)

step "Generate the TypeScript client (@hey-api/openapi-ts)"
rm -rf target/clients/typescript
(cd tests/js && npx --no-install openapi-ts --input ../../openapi/openapi.yaml --output ../../target/clients/typescript)

step "Generate the Python client (openapi-python-client)"
rm -rf target/clients/hark_client
mkdir -p target/clients
# ruff (from the same virtual environment) formats the generated code.
PATH="$PWD/$venv/bin:$PATH" "$venv/bin/openapi-python-client" generate \
    --path openapi/openapi.yaml --output-path target/clients/hark_client --meta none --overwrite

step "Start a server on $HARK_URL"
# Webhook receivers of the tests are local; the webhook burst sends 10,000 messages
# over ten WebSockets of one user at once; the operator key is the tests' too.
export HARK_OPERATOR_KEY="client-tests-operator-key"
start_server clients "$port" HARK_TENANT_CREATION=open HARK_DEMO_TENANT=demo \
    HARK_OPERATOR_KEY="$HARK_OPERATOR_KEY" \
    HARK_LOG_FORMAT=text RUST_LOG=warn HARK_WEBHOOK_ALLOW_PRIVATE=true \
    HARK_SEND_BURST=1000000 HARK_SEND_RATE_PER_SECOND=1000000 \
    HARK_WS_OPS_BURST=1000000 HARK_WS_OPS_PER_SECOND=1000000 HARK_MAX_STREAMS_PER_USER=100 \
    HARK_MAX_REQUESTS_IN_FLIGHT_PER_USER=100

step "TypeScript client test (type-checked strictly, then run)"
(cd tests/js && npx --no-install tsc -p . && node --test --import tsx client.test.ts)

step "Python client and webhook tests"
PYTHONPATH=target/clients "$venv/bin/python" -m pytest -q -s tests/python

step "Demo page in Chromium (Playwright)"
(cd tests/js && node --test demo.test.mjs)

# The SDKs' tests start fleets of their own (two instances on a database of their own,
# behind a proxy), on the PostgreSQL server the server above uses.
export HARK_ADMIN_URL="$server_admin_url"

step "TypeScript SDK against two instances under faults"
(cd clients/typescript && npm test)

step "Python SDK against two instances under faults"
(cd clients/python && "../../$venv/bin/python" -m pytest -q -s -p no:cacheprovider tests)

step "Demo page in Chromium through instance restarts"
(cd tests/js && node --test --import tsx demo-restart.test.ts)

echo "client tests: OK"
