#!/usr/bin/env bash
# Init time of the chat Lambda function under cargo-lambda's Runtime API emulator, with every AWS
# client it builds (on moto) and the embedding function it calls (under a second emulator, loading
# the model on its first invocation); and the time that first invocation spends loading the model.
# See bench/lambda/init.py.
#
#   bash scripts/services.sh start && . /tmp/conversa-services/env.sh
#   scripts/bench-lambda-init.sh [--release] [--runs N] [--key ssm|env]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export PATH="$(bash scripts/tools.sh path):$PATH"
profile=debug
if [[ "${1:-}" == "--release" ]]; then profile=release; shift; fi
: "${AWS_ENDPOINT_URL:?source /tmp/conversa-services/env.sh (moto) first}"
scripts/fetch-embedder.sh >/dev/null
if [[ "$profile" == release ]]; then
  cargo build --release -p conversa-chat
  cargo build --release -p conversa-embed
else
  cargo build -p conversa-chat
  cargo build -p conversa-embed
fi
bin="${CARGO_TARGET_DIR:-$root/target}/$profile/chat"
embed_bin="${CARGO_TARGET_DIR:-$root/target}/$profile/embed"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "binary: $bin ($profile)"
python bench/lambda/init.py --bin "$bin" --embed-bin "$embed_bin" --model-dir "$root/models/all-MiniLM-L6-v2" "$@"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
