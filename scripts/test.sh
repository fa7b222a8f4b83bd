#!/usr/bin/env bash
# The whole test suite: what `npm test` runs, and what CI runs. Installs and starts what the tests need.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "HAProxy 2.6 / 3.0 / 3.2 / 3.4 (cached in ${NESTJS_SPOE_CACHE:-$HOME/.cache/nestjs-spoe})"
if [ -n "${HAPROXY_BIN:-}" ]; then
  echo "using HAPROXY_BIN=$HAPROXY_BIN"
elif command -v apt-get >/dev/null 2>&1; then
  bash scripts/provision-haproxy.sh 2.6 3.0 3.2 3.4
elif [ "${CI:-}" = "true" ]; then
  echo "CI=true but neither HAPROXY_BIN nor apt-get is available: HAProxy tests cannot run" >&2
  exit 1
else
  echo "no apt-get and no HAPROXY_BIN: the HAProxy tests will be skipped"
fi

step "redis-server, redis-sentinel, docker-compose, openssl and curl (the example agent's and the TLS e2e tests)"
# redis-sentinel (Debian's package of that name) runs the Sentinels of the failover tests (redis-sentinel.e2e-spec).
if command -v redis-server >/dev/null 2>&1 && command -v redis-sentinel >/dev/null 2>&1; then
  redis-server --version
elif command -v apt-get >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server redis-sentinel
elif [ "${CI:-}" = "true" ]; then
  echo "CI=true but redis-server or redis-sentinel is missing and apt-get is not available" >&2
  exit 1
else
  echo "no redis-server or redis-sentinel and no apt-get: the Redis tests will be skipped"
fi
if ! docker compose version >/dev/null 2>&1 && ! command -v docker-compose >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-compose
fi
# The TLS tests make their certificates with the openssl CLI, as the README shows users.
if ! command -v openssl >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openssl
fi
# demo.e2e-spec runs the curl commands `npm start` prints.
if ! command -v curl >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends curl
fi

step "type check"
npx tsc -p tsconfig.json --noEmit

step "lint (ESLint, Prettier's format check — npm run format fixes it —, and the packed library checked by publint and @arethetypeswrong/cli)"
npm run --silent lint

results=$(mktemp -d)
trap 'rm -rf "$results"' EXIT

step "unit tests (Node $(node --version))"
npx jest --selectProjects unit --json --outputFile "$results/unit-node.json"

step "unit tests (Node 24)"
bash scripts/with-node24.sh node node_modules/jest/bin/jest.js --selectProjects unit --json --outputFile "$results/unit-node24.json"

step "e2e tests"
npx jest --selectProjects e2e --json --outputFile "$results/e2e.json"

# One closing line for the whole suite, summed over the three Jest runs.
node -e '
  const runs = process.argv.slice(1).map((f) => require(f));
  const sum = (key) => runs.reduce((n, r) => n + r[key], 0);
  console.log(`\ntests: ${sum("numPassedTests")} passed, ${sum("numFailedTests")} failed, ${sum("numPendingTests")} skipped`);
' "$results/unit-node.json" "$results/unit-node24.json" "$results/e2e.json"
