#!/usr/bin/env bash
# Benchmarks the in-process local model: load time, time to first token, decode tokens/s, peak memory.
# Fetches the default model if needed, builds the benchmark in release, runs it with both weight formats
# and both thread settings, then the bare decoder against candle-transformers' quantized_llama side by
# side. Extra arguments go to bench-local-model (e.g. --model PATH --runs 5).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# Two malloc arenas: the model's threads otherwise each keep freed memory (see BENCHMARKS.md).
export MALLOC_ARENA_MAX="${MALLOC_ARENA_MAX:-2}"

if [[ -z "${CONVERSA_LOCAL_MODEL:-}" ]]; then
    scripts/fetch-model.sh
    model=(--model models/SmolLM2-135M-Instruct.Q4_1.gguf)
else
    model=(--model "$CONVERSA_LOCAL_MODEL")
fi

cargo build --release -p conversa-bench-local-model
bin="${CARGO_TARGET_DIR:-$root/target}/release/bench-local-model"

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), load average: $(cut -d' ' -f1-3 /proc/loadavg)"
for weights in q8_0 as-stored; do
    for threads in all 1; do
        echo
        echo "## weights $weights, threads $threads"
        if [[ "$threads" == all ]]; then
            "$bin" "${model[@]}" --weights "$weights" "$@"
        else
            RAYON_NUM_THREADS=1 "$bin" "${model[@]}" --weights "$weights" "$@"
        fi
    done
done

echo
echo "## bare decoder: Conversa's against candle-transformers' quantized_llama (same Q8_0 weights, all threads)"
echo "954-token prompt in 128-token chunks, then 128 greedy tokens; each run in its own process, alternating."
echo
echo "| decoder | load | RSS before / after load / peak | prompt | decode |"
echo "|---|---|---|---|---|"
for round in 1 2 3; do
    for decoder in candle conversa; do
        "$bin" "${model[@]}" --decoder "$decoder" --tokens 128
    done
done
