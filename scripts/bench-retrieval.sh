#!/usr/bin/env bash
# Retrieval benchmark: recall@5 of BM25 alone against hybrid ranking (BM25 + all-MiniLM-L6-v2
# cosine, fused by reciprocal rank) on bench/retrieval/questions.json over the corpus documents,
# embedding speed, and the time to embed the 300-page benchmark PDF against the time to extract it.
# Fetches what it needs (corpus, model, the generated PDF), builds in release, prints the figures.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export MALLOC_ARENA_MAX="${MALLOC_ARENA_MAX:-2}"

scripts/corpus.sh >/dev/null
scripts/fetch-embedder.sh
large=bench/out/generated/large.pdf
if [[ ! -f "$large" ]]; then
  venv="${BENCH_VENV:-bench/out/venv}"
  [[ -x "$venv/bin/python" ]] || python3 -m venv "$venv"
  "$venv/bin/pip" install -q "pymupdf==2.0" "python-docx==1.2.0" "openpyxl==3.1.5"
  "$venv/bin/python" bench/extract/gen_large.py bench/out/generated
fi

cargo build --release -p conversa-bench-retrieval
bin="${CARGO_TARGET_DIR:-$root/target}/release/bench-retrieval"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), load average: $(cut -d' ' -f1-3 /proc/loadavg)"
"$bin" --large "$large" "$@"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
