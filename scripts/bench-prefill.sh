#!/usr/bin/env bash
# Prompt processing (prefill) of the offline model, side by side: Conversa's decoder
# (`bench-local-model --prefill`), the same decoder with every product on the quantized kernels
# (`--decoder conversa-quantized`, the baseline before prompts used decoded f32 weights) and llama.cpp
# on the same GGUF (node-llama-cpp 3.22.1 from npm, its prebuilt x64 CPU build, pinned in
# bench/local-model/llama-cpp/package-lock.json), taking turns.
# Prints one JSON line per engine, length and round, then the load average.
#
#   scripts/bench-prefill.sh [--lengths 1000,3000] [--runs 3] [--rounds 2] [--threads 2] [--chunk 128]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export MALLOC_ARENA_MAX="${MALLOC_ARENA_MAX:-2}"
lengths=1000,3000 runs=3 rounds=2 threads="$(nproc)" chunk=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --lengths) lengths="$2" ;;
        --runs) runs="$2" ;;
        --rounds) rounds="$2" ;;
        --threads) threads="$2" ;;
        --chunk) chunk=(--chunk "$2") ;;
        *) echo "bench-prefill: unknown argument $1" >&2; exit 2 ;;
    esac
    shift 2
done

scripts/fetch-model.sh >/dev/null
model="${CONVERSA_LOCAL_MODEL:-$root/models/SmolLM2-135M-Instruct.Q4_1.gguf}"
cargo build --release -p conversa-bench-local-model
bin="${CARGO_TARGET_DIR:-$root/target}/release/bench-local-model"
(cd bench/local-model/llama-cpp && npm install --no-audit --no-fund --ignore-scripts --omit=optional >/dev/null)
# Text for llama.cpp's tokenizer: the project's own docs (prefill cost does not depend on the words).
text="$(mktemp)"
trap 'rm -f "$text"' EXIT
cat docs/*.md README.md BENCHMARKS.md > "$text"

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), threads $threads"
for round in $(seq "$rounds"); do
    echo "round $round, load average: $(cut -d' ' -f1-3 /proc/loadavg)"
    RAYON_NUM_THREADS="$threads" "$bin" --model "$model" --prefill "$lengths" --runs "$runs" "${chunk[@]}"
    RAYON_NUM_THREADS="$threads" "$bin" --model "$model" --prefill "$lengths" --runs "$runs" "${chunk[@]}" --decoder conversa-quantized
    node bench/local-model/llama-cpp/prefill.mjs "$model" "$text" "$lengths" "$runs" "$threads"
done
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
