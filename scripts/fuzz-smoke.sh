#!/usr/bin/env bash
# Fuzz smoke for CI: runs each extraction fuzz target briefly (FUZZ_SECS, default 20 s each) and
# exits non-zero on a crash, a hang or an OOM.
#
# libFuzzer (cargo-fuzz, fuzz/fuzz_targets/{pdf,docx,sheets,image,detect}) when cargo-fuzz is there:
# on the nightly toolchain when installed, else on stable with RUSTC_BOOTSTRAP=1 (cargo-fuzz needs
# nightly-only flags). Seeds come from corpus/ (scripts/corpus.sh) when present; new inputs and
# crash artifacts go under fuzz/corpus/ and fuzz/artifacts/ (both git-ignored). Without cargo-fuzz:
# the stable mutation runner (lib/tests/extract_smoke.rs) for the same total time.
#
# Usage: scripts/fuzz-smoke.sh [TARGET...]
#   FUZZ_ENGINE=auto|libfuzzer|stable  auto: libFuzzer when cargo-fuzz is (or gets) installed
#   FUZZ_INSTALL=1                     installs cargo-fuzz (`cargo install cargo-fuzz --locked`)
#   FUZZ_TOOLCHAIN=nightly|stable      default: nightly when installed, else stable
#   FUZZ_SANITIZER=none|address        default: none (the parsers are safe Rust; see BENCHMARKS.md)
#   FUZZ_TARGET_DIR=DIR                default: $HOME/.cache/conversa-fuzz-target
#   FUZZ_SECS=N                        seconds per target (default 20)
# Cold cost: the libFuzzer build compiles the library and its dependencies with coverage
# instrumentation in release mode; BENCHMARKS.md ("Fuzzing") has the measured times. The stable
# runner reuses the debug test build.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
secs="${FUZZ_SECS:-20}"
targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
  targets=(pdf docx sheets image detect)
fi

have_nightly() { rustup run nightly rustc --version >/dev/null 2>&1; }
have_cargo_fuzz() { cargo fuzz --version >/dev/null 2>&1; }

engine="${FUZZ_ENGINE:-auto}"
# FUZZ_DEADLINE (epoch seconds): the install and the instrumented build must end by then; when the
# time runs out, the stable mutation runner fuzzes instead (a warning says so).
time_left() { echo $(( ${FUZZ_DEADLINE:-0} - $(date +%s) )); }
bounded() {
  if [[ -z "${FUZZ_DEADLINE:-}" ]]; then "$@"; return; fi
  local left
  left=$(time_left)
  if (( left < 60 )); then return 124; fi
  timeout "$left" "$@"
}
fall_back() {
  echo "fuzz-smoke: WARNING: $1; the stable mutation runner fuzzes instead of libFuzzer" >&2
  engine=stable
}

if [[ "$engine" != "stable" ]] && ! have_cargo_fuzz && [[ "${FUZZ_INSTALL:-0}" == "1" ]]; then
  bounded cargo install cargo-fuzz --locked || fall_back "cargo-fuzz could not be installed in time"
fi
if [[ "$engine" == "auto" ]]; then
  if have_cargo_fuzz; then engine=libfuzzer; else engine=stable; fi
fi

if [[ "$engine" == "libfuzzer" ]]; then
  if ! have_cargo_fuzz; then
    echo "fuzz-smoke: cargo-fuzz is missing (FUZZ_INSTALL=1 installs it)" >&2
    exit 2
  fi
  toolchain="${FUZZ_TOOLCHAIN:-}"
  if [[ -z "$toolchain" ]]; then
    if have_nightly; then toolchain=nightly; else toolchain=stable; fi
  fi
  if [[ "$toolchain" != "nightly" ]]; then
    # cargo-fuzz passes -Z flags; a stable compiler accepts them with this switch.
    export RUSTC_BOOTSTRAP=1
  fi
  fuzz_target_dir="${FUZZ_TARGET_DIR:-$HOME/.cache/conversa-fuzz-target}"
  build=(-O --debug-assertions --sanitizer "${FUZZ_SANITIZER:-none}")
  cd "$root/fuzz"
  echo "fuzz-smoke: building ${targets[*]} (libFuzzer, $toolchain, ${build[*]}) in $fuzz_target_dir"
  started=$(date +%s)
  for t in "${targets[@]}"; do
    rc=0
    CARGO_TARGET_DIR="$fuzz_target_dir" bounded cargo "+$toolchain" fuzz build "${build[@]}" "$t" || rc=$?
    if [[ $rc -eq 124 ]]; then
      fall_back "the libFuzzer build did not finish before FUZZ_DEADLINE"
      break
    elif [[ $rc -ne 0 && "$toolchain" != nightly ]]; then
      # Stable only takes cargo-fuzz's flags through RUSTC_BOOTSTRAP, which a toolchain may refuse.
      fall_back "the libFuzzer build failed on the $toolchain toolchain"
      break
    elif [[ $rc -ne 0 ]]; then
      exit "$rc"
    fi
  done
  if [[ "$engine" == "libfuzzer" ]]; then echo "fuzz-smoke: built in $(($(date +%s) - started))s"; fi
fi

if [[ "$engine" == "libfuzzer" ]]; then
  export CARGO_TARGET_DIR="$fuzz_target_dir"
  failed=()
  for t in "${targets[@]}"; do
    seeds="$root/fuzz/corpus/$t"
    mkdir -p "$seeds" "$root/fuzz/artifacts/$t"
    if [[ -d "$root/corpus" ]]; then
      # The sheets and detect targets read their first byte as a selector: seeds get the byte that
      # picks their own family (sheets: 0 XLSX/XLSB, 1 XLS, 2 ODS; detect: an index into NAMES).
      while IFS= read -r -d '' f; do
        ext="${f##*.}"
        case "$t:$ext" in
          pdf:pdf | docx:docx) prefix='' ;;
          sheets:xlsx | sheets:xlsm | sheets:xlsb) prefix='\x00' ;;
          sheets:xls) prefix='\x01' ;;
          sheets:ods) prefix='\x02' ;;
          detect:pdf) prefix='\x00' ;;
          detect:docx) prefix='\x01' ;;
          detect:xlsx) prefix='\x02' ;;
          detect:ods) prefix='\x04' ;;
          *) continue ;;
        esac
        rel="${f#"$root/corpus/"}"
        out="$seeds/seed-${rel//\//_}"
        [[ -e "$out" ]] || { printf "$prefix"; cat "$f"; } >"$out"
      done < <(find "$root/corpus" -path '*/.archives' -prune -o -type f -size -300k -print0)
    fi
    if [[ "$t" == image ]]; then
      base64 -d >"$seeds/seed-1x1.png" <<<'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=='
      base64 -d >"$seeds/seed-1x1.gif" <<<'R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7'
    fi
    echo "fuzz-smoke: $t for ${secs}s (libFuzzer, $(find "$seeds" -type f | wc -l) inputs)"
    if ! cargo "+$toolchain" fuzz run "${build[@]}" "$t" "$seeds" -- \
      -max_total_time="$secs" -timeout=20 -rss_limit_mb=2048 -max_len=1048576 \
      -print_final_stats=1 -artifact_prefix="$root/fuzz/artifacts/$t/"; then
      failed+=("$t")
    fi
  done
  if [[ ${#failed[@]} -gt 0 ]]; then
    echo "fuzz-smoke: FAILED: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
    exit 1
  fi
  echo "fuzz-smoke: ${targets[*]}: no crash"
else
  unset RUSTC_BOOTSTRAP
  echo "fuzz-smoke: stable mutation runner (all families) for $((secs * ${#targets[@]}))s"
  total=$((secs * ${#targets[@]}))
  cd "$root"
  FUZZ_SMOKE_SECS="$total" cargo test -p conversa --test extract_smoke -- --ignored --nocapture
fi
