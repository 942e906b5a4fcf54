#!/usr/bin/env bash
# Server benchmarks (DESIGN §7 budgets): what conversa-local adds to time-to-first-token and per
# token over calling the model directly, and 1,000 concurrent streams. Builds in release, runs
# conversa-bench, prints a Markdown table (the "Server" section of BENCHMARKS.md) on stdout.
#
#   scripts/bench-server.sh                 # direct vs through the server, then the load run
#   scripts/bench-server.sh --litellm       # also LiteLLM proxy (PyPI litellm[proxy]) as a second baseline
#   scripts/bench-server.sh --streams 50    # any other option goes to conversa-bench (see --help)
#
# Everything runs on loopback. Results are only as quiet as the machine: check `uptime` first.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/conversa-target}"

litellm=0
args=()
for a in "$@"; do
  if [[ "$a" == "--litellm" ]]; then litellm=1; else args+=("$a"); fi
done

echo "[bench] building conversa-local and conversa-bench (release)" >&2
# Two builds, so that the server is exactly the production binary (its own feature set).
cargo build --release --quiet -p conversa-local
cargo build --release --quiet -p conversa-bench

# 1,000 streams need ~4,000 descriptors on the benchmark's side (client, fake model) and ~2,000 on the
# server's; the server inherits this limit.
hard=$(ulimit -Hn)
if [[ "$hard" == "unlimited" || "$hard" -ge 65536 ]]; then ulimit -n 65536; else ulimit -n "$hard"; fi

if [[ "$litellm" == 1 ]]; then
  venv="${BENCH_LITELLM_VENV:-$HOME/.cache/litellm-venv}"
  if [[ ! -x "$venv/bin/litellm" ]]; then
    echo "[bench] installing litellm[proxy] into $venv" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet 'litellm[proxy]'
  fi
  fake_port="${BENCH_FAKE_PORT:-18321}"
  proxy_port="${BENCH_PROXY_PORT:-18322}"
  work=$(mktemp -d)
  cat >"$work/litellm.yaml" <<EOF
model_list:
  - model_name: gpt-4o
    litellm_params:
      model: openai/gpt-4o
      api_base: http://127.0.0.1:$fake_port/v1
      api_key: bench-key
litellm_settings:
  telemetry: false
  drop_params: true
EOF
  # Offline: the cost map that ships in the package, no telemetry; the key is the one conversa-bench sends.
  LITELLM_MASTER_KEY=sk-bench-5f0c2a9e7d1b4c3a8e6f0d2b9a7c5e31 LITELLM_LOCAL_MODEL_COST_MAP=True LITELLM_LOG=ERROR \
    "$venv/bin/litellm" --config "$work/litellm.yaml" --host 127.0.0.1 --port "$proxy_port" \
    --num_workers 1 >"$work/litellm.log" 2>&1 &
  litellm_pid=$!
  trap 'kill "$litellm_pid" 2>/dev/null || true; wait "$litellm_pid" 2>/dev/null || true; rm -rf "$work"' EXIT
  echo "[bench] LiteLLM proxy (pid $litellm_pid) on 127.0.0.1:$proxy_port; log $work/litellm.log" >&2
  args+=(--fake-bind "127.0.0.1:$fake_port" --proxy "litellm=http://127.0.0.1:$proxy_port/v1")
fi

"$CARGO_TARGET_DIR/release/conversa-bench" --server "$CARGO_TARGET_DIR/release/conversa-local" "${args[@]}"
