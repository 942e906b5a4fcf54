#!/usr/bin/env bash
# Fuzz smoke for CI: runs each extraction fuzz target briefly (FUZZ_SECS, default 20 s each).
# With cargo-fuzz and a nightly toolchain: libFuzzer on fuzz/fuzz_targets/{pdf,docx,sheets,image,detect},
# seeded from corpus/ (scripts/corpus.sh) when present. Without them: the stable mutation runner
# (lib/tests/extract_smoke.rs) for the same total time. Exits non-zero on a crash, a hang or an OOM.
#
# Usage: scripts/fuzz-smoke.sh [TARGET...]
#   FUZZ_ENGINE=auto|libfuzzer|stable  (auto: libFuzzer when cargo-fuzz and nightly are there)
#   FUZZ_INSTALL=1                     installs cargo-fuzz when missing
# Cold cost: libFuzzer builds the library and its dependencies with coverage instrumentation on
# nightly (tens of minutes on 2 cores); the stable runner reuses the debug test build.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
secs="${FUZZ_SECS:-20}"
targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
  targets=(pdf docx sheets image detect)
fi

have_nightly() { rustup run nightly rustc --version >/dev/null 2>&1; }
have_cargo_fuzz() { cargo fuzz --version >/dev/null 2>&1; }

if have_nightly && ! have_cargo_fuzz && [[ "${FUZZ_INSTALL:-0}" == "1" ]]; then
  cargo install cargo-fuzz --locked
fi

engine="${FUZZ_ENGINE:-auto}"
if [[ "$engine" == "auto" ]]; then
  if have_nightly && have_cargo_fuzz; then engine=libfuzzer; else engine=stable; fi
fi

if [[ "$engine" == "libfuzzer" ]]; then
  cd "$root/fuzz"
  for t in "${targets[@]}"; do
    seeds="$root/fuzz/corpus/$t"
    mkdir -p "$seeds"
    if [[ -d "$root/corpus" ]]; then
      case "$t" in
        pdf) pattern='*.pdf' ;;
        docx) pattern='*.docx' ;;
        sheets) pattern='*.xls*' ;;
        image) pattern='*.png' ;;
        *) pattern='*' ;;
      esac
      find "$root/corpus" -path '*/.archives' -prune -o -type f -name "$pattern" -size -300k -print0 |
        xargs -0 -r cp -n -t "$seeds" 2>/dev/null || true
    fi
    echo "fuzz-smoke: $t for ${secs}s (libFuzzer)"
    cargo +nightly fuzz run "$t" "$seeds" -- \
      -max_total_time="$secs" -timeout=20 -rss_limit_mb=2048 -max_len=1048576 -print_final_stats=1
  done
else
  echo "fuzz-smoke: stable mutation runner (all families) for $((secs * ${#targets[@]}))s"
  total=$((secs * ${#targets[@]}))
  cd "$root"
  FUZZ_SMOKE_SECS="$total" cargo test -p conversa --test extract_smoke -- --ignored --nocapture
fi
