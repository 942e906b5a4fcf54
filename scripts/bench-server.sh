#!/usr/bin/env bash
# Server benchmarks (DESIGN §7 budgets): what conversa-local adds to time-to-first-token and per
# token over calling the model directly, and 1,000 concurrent streams. Builds in release, runs
# conversa-bench, prints a Markdown table (the "Server" section of BENCHMARKS.md) on stdout.
#
#   scripts/bench-server.sh                 # direct vs through the server, then the load run
#   scripts/bench-server.sh --litellm       # also LiteLLM proxy (PyPI litellm[proxy]) as a baseline
#   scripts/bench-server.sh --tensorzero    # also TensorZero's Rust gateway (PyPI tensorzero) as a baseline
#   scripts/bench-server.sh --peers         # both
#   scripts/bench-server.sh --streams 50    # any other option goes to conversa-bench (see --help)
#
# Everything runs on loopback. Results are only as quiet as the machine: check `uptime` first.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/conversa-target}"

litellm=0
tensorzero=0
args=()
for a in "$@"; do
  case "$a" in
    --litellm) litellm=1 ;;
    --tensorzero) tensorzero=1 ;;
    --peers) litellm=1; tensorzero=1 ;;
    *) args+=("$a") ;;
  esac
done

echo "[bench] building conversa-local and conversa-bench (release)" >&2
# Two builds, so that the server is exactly the production binary (its own feature set).
cargo build --release --quiet -p conversa-local
cargo build --release --quiet -p conversa-bench

# 1,000 streams need ~4,000 descriptors on the benchmark's side (client, fake model) and ~2,000 on the
# server's; the server inherits this limit.
hard=$(ulimit -Hn)
if [[ "$hard" == "unlimited" || "$hard" -ge 65536 ]]; then ulimit -n 65536; else ulimit -n "$hard"; fi

# Peers run in front of the same fake model, which then listens on a fixed port.
fake_port="${BENCH_FAKE_PORT:-18321}"
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
if [[ "$litellm" == 1 || "$tensorzero" == 1 ]]; then
  args+=(--fake-bind "127.0.0.1:$fake_port")
fi

if [[ "$litellm" == 1 ]]; then
  venv="${BENCH_LITELLM_VENV:-$HOME/.cache/litellm-venv}"
  if [[ ! -x "$venv/bin/litellm" ]]; then
    echo "[bench] installing litellm[proxy] into $venv" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet 'litellm[proxy]'
  fi
  proxy_port="${BENCH_PROXY_PORT:-18322}"
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
  pids+=($!)
  echo "[bench] LiteLLM proxy (pid $!) on 127.0.0.1:$proxy_port; log $work/litellm.log" >&2
  args+=(--proxy "litellm=http://127.0.0.1:$proxy_port/v1")
fi

if [[ "$tensorzero" == 1 ]]; then
  # TensorZero's gateway is written in Rust; its PyPI package ships it compiled into the Python
  # extension, which can serve it over HTTP (its OpenAI-compatible route) from inside the process.
  tz_version=2026.6.0
  venv="${BENCH_TENSORZERO_VENV:-$HOME/.cache/tensorzero-venv}"
  if ! "$venv/bin/python" -c "import tensorzero, sys; sys.exit(tensorzero.__version__ != '$tz_version')" 2>/dev/null; then
    echo "[bench] installing tensorzero==$tz_version into $venv" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet "tensorzero==$tz_version"
  fi
  cat >"$work/tensorzero.toml" <<EOF
[gateway]
observability.enabled = false

[models.gpt-4o]
routing = ["fake"]

[models.gpt-4o.providers.fake]
type = "openai"
model_name = "gpt-4o"
api_base = "http://127.0.0.1:$fake_port/v1/"
api_key_location = "none"
EOF
  cat >"$work/tz_gateway.py" <<'EOF'
import sys, threading, tensorzero
gateway = tensorzero._start_http_gateway(config_file=sys.argv[1], clickhouse_url=None,
                                         postgres_url=None, valkey_url=None, async_setup=False)
print("TENSORZERO_BASE_URL=" + gateway.base_url, flush=True)
threading.Event().wait()
EOF
  "$venv/bin/python" "$work/tz_gateway.py" "$work/tensorzero.toml" >"$work/tensorzero.log" 2>&1 &
  pids+=($!)
  base=""
  for _ in $(seq 1 300); do
    base=$(sed -n 's/^TENSORZERO_BASE_URL=//p' "$work/tensorzero.log")
    [[ -n "$base" ]] && break
    kill -0 "${pids[-1]}" 2>/dev/null || break
    sleep 0.1
  done
  if [[ -z "$base" ]]; then
    echo "[bench] TensorZero did not start; its log:" >&2
    cat "$work/tensorzero.log" >&2
    exit 1
  fi
  echo "[bench] TensorZero $tz_version gateway (pid ${pids[-1]}) at $base; log $work/tensorzero.log" >&2
  args+=(--proxy "tensorzero=$base" --proxy-model "tensorzero=tensorzero::model_name::gpt-4o")
fi

"$CARGO_TARGET_DIR/release/conversa-bench" --server "$CARGO_TARGET_DIR/release/conversa-local" "${args[@]}"
