#!/usr/bin/env bash
# A/B of the relay's per-token cost between conversa-local binaries (BENCHMARKS.md, "Server"):
# alternates them, 400- and 50-token runs, and prints per run the load average, the server's CPU
# per token and the added time to first token and per-token latency (p50/p99). The per-token CPU
# of a binary is the slope between its 50- and 400-token runs.
#
#   scripts/bench-relay-ab.sh [--rounds N] [--streams N] <conversa-bench> <conversa-local A> <conversa-local B> ...
#
# Build each binary with `cargo build --release -p conversa-local` on its commit and copy it aside.
set -euo pipefail
rounds=2
streams=100
while [[ $# -gt 0 && "$1" == --* ]]; do
  case "$1" in
    --rounds) rounds=$2; shift 2 ;;
    --streams) streams=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
bench=$1
shift
hard=$(ulimit -Hn)
ulimit -n "$([[ "$hard" == unlimited || "$hard" -ge 65536 ]] && echo 65536 || echo "$hard")"
echo "| round | tokens | binary | load avg (1 min) at start | server CPU per token | per turn | TTFT added p50 / p99 | per token added p50 / p99 |"
echo "|---|---|---|---|---|---|---|---|"
for round in $(seq 1 "$rounds"); do
  for tokens in 400 50; do
    bins=("$@")
    # Alternate the order from round to round.
    if (( round % 2 == 0 )); then
      mapfile -t bins < <(printf '%s\n' "$@" | tac)
    fi
    for bin in "${bins[@]}"; do
      load=$(cut -d' ' -f1 /proc/loadavg)
      out=$("$bench" --server "$bin" --concurrency 0 --streams "$streams" --warmup 10 --tokens "$tokens" 2>/dev/null)
      cpu=$(grep -o 'Server CPU during these streams: [0-9]* ms for [0-9]* turns ([0-9.]* µs per token' <<<"$out")
      ms=$(awk '{print $6}' <<<"$cpu")
      turns=$(awk '{print $9}' <<<"$cpu")
      per=$(grep -o '([0-9.]* µs per token' <<<"$cpu" | tr -d '(')
      ttft=$(grep '^| time to first token' <<<"$out" | awk -F'|' '{print $7 " /" $8}')
      tok=$(grep '^| per token' <<<"$out" | awk -F'|' '{print $7 " /" $8}')
      printf '| %s | %s | %s | %s | %s | %s ms | %s | %s |\n' "$round" "$tokens" "$(basename "$bin")" "$load" "$per" \
        "$(awk -v a="$ms" -v b="$turns" 'BEGIN{printf "%.1f", a/b}')" "$ttft" "$tok"
    done
  done
done
