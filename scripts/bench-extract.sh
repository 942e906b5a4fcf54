#!/usr/bin/env bash
# Extraction benchmark: Conversa's extractors (release build) against the Python libraries of the
# original design (pdfplumber, python-docx, openpyxl; PyMuPDF as the fast PDF reference) on the same
# files: the corpus of scripts/corpus.sh plus generated large documents. Prints the Markdown table
# for BENCHMARKS.md and keeps everything under bench/out/.
#
# Usage: scripts/bench-extract.sh
#   BENCH_ALTERNATIVES=0  skips the other Rust PDF libraries (pdf-extract alone, lopdf, pdf_oxide)
#   BENCH_REUSE_PYTHON=1  keeps the Python baselines of the last run (they take minutes)
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
out="$root/bench/out"
venv="${BENCH_VENV:-$out/venv}"
results="$out/results"
mkdir -p "$out"

"$root/scripts/corpus.sh" >/dev/null

if [[ ! -x "$venv/bin/python" ]]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install -q "pdfplumber==0.11.10" "pymupdf==2.0" "python-docx==1.2.0" "openpyxl==3.1.5"
py="$venv/bin/python"

if [[ ! -f "$out/generated/large.xlsx" ]]; then
  "$py" "$root/bench/extract/gen_large.py" "$out/generated"
fi

features=()
if [[ "${BENCH_ALTERNATIVES:-1}" == "1" ]]; then
  features=(--features alternatives)
fi
cargo build --release --quiet --manifest-path "$root/bench/extract/Cargo.toml" "${features[@]}"
target="${CARGO_TARGET_DIR:-$root/bench/extract/target}"
bin="$target/release/conversa-bench-extract"

# Paths relative to the repository root: they name the text files that are compared.
cd "$root"
mapfile -t pdf < <(find corpus -name '*.pdf' -not -path '*/encryption/*' -not -path '*/.archives/*' | sort; echo bench/out/generated/large.pdf)
mapfile -t docx < <(find corpus -name '*.docx' | sort; echo bench/out/generated/large.docx)
mapfile -t xlsx < <(find corpus -name '*.xlsx' -not -name 'password*' | sort; echo bench/out/generated/large.xlsx)

mkdir -p "$results"
# family engine files... : one process per family and engine, so peak memory is per extractor.
rust() {
  local family=$1 engine=$2
  shift 2
  echo "bench: $family with $engine (Rust)" >&2
  rm -rf "$results/text/$family/$engine"
  "$bin" "$engine" "$results/text/$family/$engine" "$@" >"$results/$family.$engine.json"
}
python() {
  local family=$1 engine=$2
  shift 2
  if [[ "${BENCH_REUSE_PYTHON:-0}" == "1" && -s "$results/$family.$engine.json" ]]; then
    echo "bench: $family with $engine (Python): reusing the last run" >&2
    return
  fi
  echo "bench: $family with $engine (Python)" >&2
  rm -rf "$results/text/$family/$engine"
  "$py" "$root/bench/extract/py_bench.py" "$engine" "$results/text/$family/$engine" "$@" \
    >"$results/$family.$engine.json" 2>/dev/null
}

rust pdf conversa "${pdf[@]}"
if [[ "${BENCH_ALTERNATIVES:-1}" == "1" ]]; then
  for e in pdf-extract lopdf pdf_oxide; do rust pdf "$e" "${pdf[@]}"; done
fi
python pdf pymupdf "${pdf[@]}"
python pdf pdfplumber "${pdf[@]}"
rust docx conversa "${docx[@]}"
python docx python-docx "${docx[@]}"
rust xlsx conversa "${xlsx[@]}"
python xlsx openpyxl "${xlsx[@]}"

{
  echo "Machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr); $(date -u +%Y-%m-%d)"
  echo
  "$py" "$root/bench/extract/compare.py" "$results"
} | tee "$out/extract-results.md"
