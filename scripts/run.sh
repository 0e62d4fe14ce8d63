#!/usr/bin/env bash
# Quickstart: install into .venv and run the host with the default config (config/agenthost.yaml).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/agenthost run "$@"
