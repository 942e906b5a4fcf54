#!/usr/bin/env bash
# Runs Conversa on this machine: builds the frontend and the local server, then serves both at
# http://127.0.0.1:8080 (CONVERSA_BIND) on embedded defaults (SQLite and files under ./data).
# With no OPENAI_API_KEY / OPENAI_BASE_URL, answers come from the offline model, fetched on first run.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/conversa-target}"

for tool in cargo node npm; do
  command -v "$tool" >/dev/null || { echo "run: $tool is required" >&2; exit 1; }
done

echo "[run] building the frontend" >&2
(cd frontend && npm ci --no-audit --no-fund --loglevel=error && npm run build --silent)

if [[ -z "${OPENAI_API_KEY:-}" && -z "${OPENAI_BASE_URL:-}" && -z "${CONVERSA_LOCAL_MODEL:-}" ]]; then
  bash scripts/fetch-model.sh >&2
fi
# Retrieval by meaning (CONVERSA_EMBEDDER=minilm, the default) needs the embedding model.
if [[ "${CONVERSA_EMBEDDER:-minilm}" == "minilm" && -z "${CONVERSA_EMBED_MODEL:-}" ]]; then
  bash scripts/fetch-embedder.sh >&2
fi
# Two malloc arenas: the model's threads otherwise each keep the memory they freed (BENCHMARKS.md).
export MALLOC_ARENA_MAX="${MALLOC_ARENA_MAX:-2}"

echo "[run] building conversa-local (release)" >&2
exec cargo run --release --quiet -p conversa-local
