#!/usr/bin/env bash
# Runs the README's curl walk-through, verbatim, against a server started the way the
# README says, on a database of its own that is dropped afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/lib/server.sh

if curl -s -o /dev/null localhost:8080/healthz; then
    echo "something already listens on port 8080; stop it to run the walk-through" >&2
    exit 1
fi

# As the README says: the default port, an operator key.
start_server readme 8080 HARK_OPERATOR_KEY=local-operator-key

# The walk-through is the shell block between the markers in README.md.
walkthrough=$(sed -n '/<!-- walkthrough:start -->/,/<!-- walkthrough:end -->/p' README.md | sed '/^```/d; /^<!--/d')
output=$(bash -euo pipefail -c "$walkthrough")
echo "$output"
last_username=$(echo "$output" | jq -rs '.[-1].username')
[ "$last_username" = bob ] || { echo "the walk-through did not end with bob's profile" >&2; exit 1; }
echo "README walk-through: OK"
