#!/usr/bin/env bash
# The offline model as a new user meets it: a question about a 6-page PDF (pypdf's
# Seige_of_Vicksburg_Sample_OCR.pdf from the corpus) through conversa-local, time to the first token,
# to done, the prompt's size, two questions at once (the second is told its place with `queued`), and
# the titles. Fetches the corpus and the models, builds conversa-local in release, prints a table.
#
#   scripts/bench-offline.sh                          # this checkout's build
#   scripts/bench-offline.sh --baseline BIN           # and another conversa-local binary, taking turns
#   scripts/bench-offline.sh --rounds 3               # other options go to scripts/bench_offline.py
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export MALLOC_ARENA_MAX="${MALLOC_ARENA_MAX:-2}"

servers=()
args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --baseline) servers+=(--server "baseline=$2"); shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done

scripts/corpus.sh >/dev/null
scripts/fetch-model.sh
scripts/fetch-embedder.sh
cargo build --release --quiet -p conversa-local
bin="${CARGO_TARGET_DIR:-$root/target}/release/conversa-local"
# A copy: a later build of another checkout must not swap the binary under a running benchmark.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "$bin" "$work/conversa-local"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), load average: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
python3 scripts/bench_offline.py "${servers[@]}" --server "this=$work/conversa-local" \
  --pdf corpus/pypdf-7.1.0/resources/Seige_of_Vicksburg_Sample_OCR.pdf \
  --model models/SmolLM2-135M-Instruct.Q4_1.gguf --embedder models/all-MiniLM-L6-v2 "${args[@]}"
