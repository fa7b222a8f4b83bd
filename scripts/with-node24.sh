#!/usr/bin/env bash
# Runs a command with Node 24 first on PATH. Node 24 comes from the npm registry (the `node` package ships the
# binary), cached by npx, so this works on a machine that only has another Node installed.
set -euo pipefail
exec npx --yes --package=node@24 -- "$@"
