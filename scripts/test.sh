#!/usr/bin/env bash
# The whole test suite, with its set-up: system packages, backing services (Redis, moto,
# a MongoDB-wire server), test documents, the offline chat and embedding models, the Rust tests with every feature
# (with Schemathesis run on the API's OpenAPI document), and the frontend's unit and browser tests
# against the real server.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/conversa-target}"
step() { printf '\n== %s\n' "$*" >&2; }

step "system packages"
bash scripts/setup.sh

step "tools (cargo-lambda, cfn-lint, schemathesis)"
bash scripts/tools.sh install >/dev/null
PATH="$(bash scripts/tools.sh path):$PATH"
export PATH

step "backing services"
bash scripts/services.sh start >/dev/null
# shellcheck disable=SC1091
. "${CONVERSA_SERVICES_DIR:-${TMPDIR:-/tmp}/conversa-services}/env.sh"
# Adapter suites and the Lambda emulator test fail instead of skipping when a service or tool is missing.
export CONVERSA_REQUIRE_SERVICES=1

step "real-world documents"
bash scripts/corpus.sh

step "offline models (chat, embeddings)"
bash scripts/fetch-model.sh
bash scripts/fetch-embedder.sh

step "rust tests"
cargo test --workspace --all-features

step "frontend: unit and browser tests"
# The server binary the Rust tests above just built.
export CONVERSA_LOCAL_BIN="$CARGO_TARGET_DIR/debug/conversa-local"
(cd frontend && npm ci --no-audit --no-fund --loglevel=error && npm test && npm run test:e2e)

step "fuzz smoke (libFuzzer on every extraction target, briefly)"
# cargo-fuzz is installed when missing. The instrumented build is a separate release tree (about
# 20 min cold on 2 cores). With a deadline (CONVERSA_DEADLINE, epoch seconds; .ci/run sets it), the
# install and build get what time is left and, if it runs out, the stable mutation runner fuzzes
# instead, saying so.
if [[ -n "${CONVERSA_DEADLINE:-}" ]]; then
  export FUZZ_DEADLINE=$((CONVERSA_DEADLINE - 5 * 60))
fi
FUZZ_ENGINE="${FUZZ_ENGINE:-libfuzzer}" FUZZ_INSTALL=1 FUZZ_SECS="${FUZZ_SECS:-20}" \
  bash scripts/fuzz-smoke.sh
