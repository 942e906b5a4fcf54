#!/usr/bin/env bash
# Build, lint and test tools, installed from PyPI into the
# project's tool venv (the same one scripts/services.sh uses):
#
#   cargo-lambda   `cargo lambda build --release --arm64` (brings zig as its cross linker)
#   cfn-lint       lints template.yaml
#   schemathesis   checks the running API against its OpenAPI document
#                  (functions/local/tests/openapi_conformance.rs)
#
# Usage:  scripts/tools.sh [install|path|check]          (default: install)
#   install  install the pinned versions when missing, then print where they are
#   path     print the venv's bin folder (for PATH=...)
#   check    print the versions; exit 1 when one is missing
#
# After install:  export PATH="$(bash scripts/tools.sh path):$PATH"
#                 cargo lambda --version; cfn-lint --version; st --version
#
# Also adds the Rust target aarch64-unknown-linux-gnu (Lambda arm64) with rustup when
# rustup can reach its dist server; cargo-lambda can still link for arm64 with zig
# without it only when the target's standard library is installed, so a failure is reported.
# Environment: CONVERSA_TOOLS_DIR (default $HOME/.cache/conversa-tools),
#              CONVERSA_SKIP_RUST_TARGET=1 to skip the rustup step.
set -euo pipefail

ACTION="${1:-install}"
TOOLS_DIR="${CONVERSA_TOOLS_DIR:-$HOME/.cache/conversa-tools}"
VENV="$TOOLS_DIR/venv"
PY="$VENV/bin/python"
BIN="$VENV/bin"

# Pinned versions (checked on PyPI). cargo-lambda's wheel carries the binary;
# ziglang is its linker for cross-compiling to aarch64.
# cfn-lint stays at 1.53.x on purpose: it lints SAM templates through the real SAM
# transform (aws-sam-translator), so it checks the generated resources (function URLs'
# InvokeMode, GetAtt ChatFunctionUrl.FunctionUrl, dependency cycles). 1.54 and later
# validate SAM resources shallowly and missed a real circular dependency here.
# schemathesis: the conformance test runs all its checks, and functions/local/tests holds a
# settings file and a hook written for 4.32.5; a new version can add checks, so it moves on
# purpose only.
PKGS=("cargo-lambda==1.9.2" "ziglang==0.15.2" "cfn-lint==1.53.3" "aws-sam-translator==1.115.0"
  "schemathesis==4.32.5")
RUST_TARGET=aarch64-unknown-linux-gnu

log() { printf '[tools] %s\n' "$*" >&2; }

as_root() {
  if [[ $(id -u) -eq 0 ]]; then "$@"
  elif command -v sudo >/dev/null; then sudo "$@"
  else log "need root (or sudo) for: $*"; return 1
  fi
}

# Debian/Ubuntu ship venv support separately (python3-venv); slim CI images may lack python3.
ensure_python_venv() {
  command -v python3 >/dev/null && python3 -c 'import ensurepip, venv' 2>/dev/null && return 0
  log "apt-get install python3 python3-venv"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3 python3-venv >/dev/null
}

ensure_venv() {
  [[ -x $PY ]] && return 0
  ensure_python_venv
  mkdir -p "$TOOLS_DIR"
  log "creating venv $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check --upgrade pip
}

installed_version() {
  "$PY" -c "import importlib.metadata as m,sys; print(m.version(sys.argv[1]))" "$1" 2>/dev/null || true
}

install() {
  ensure_venv
  local missing=() spec
  for spec in "${PKGS[@]}"; do
    [[ $(installed_version "${spec%%==*}") == "${spec##*==}" ]] || missing+=("$spec")
  done
  if ((${#missing[@]})); then
    log "pip install ${missing[*]}"
    "$VENV/bin/pip" install -q --disable-pip-version-check "${missing[@]}"
  fi
  if [[ ${CONVERSA_SKIP_RUST_TARGET:-0} != 1 ]] && command -v rustup >/dev/null; then
    if rustup target list --installed 2>/dev/null | grep -qx "$RUST_TARGET"; then
      log "rust target $RUST_TARGET already installed"
    elif rustup target add "$RUST_TARGET" >&2; then
      log "rust target $RUST_TARGET added"
    else
      log "warning: could not add rust target $RUST_TARGET (rustup dist server unreachable?);"
      log "         'cargo lambda build --arm64' needs it. x86_64 builds still work."
    fi
  fi
}

check() {
  local ok=0
  if [[ -x $BIN/cargo-lambda ]]; then
    printf 'cargo-lambda: %s  (%s)\n' "$(PATH="$BIN:$PATH" cargo lambda --version 2>&1 | head -n1)" "$BIN/cargo-lambda"
  else echo "cargo-lambda: missing"; ok=1; fi
  if [[ -x $BIN/cfn-lint ]]; then
    printf 'cfn-lint:     %s  (%s)\n' "$("$BIN/cfn-lint" --version 2>&1 | head -n1)" "$BIN/cfn-lint"
  else echo "cfn-lint:     missing"; ok=1; fi
  if [[ -x $BIN/st ]]; then
    printf 'schemathesis: %s  (%s)\n' "$("$BIN/st" --version 2>&1 | head -n1)" "$BIN/st"
  else echo "schemathesis: missing"; ok=1; fi
  if [[ -x $BIN/python-zig || -n $(installed_version ziglang) ]]; then
    printf 'zig:          %s  (python -m ziglang)\n' "$("$PY" -m ziglang version 2>&1 | head -n1)"
  else echo "zig:          missing"; ok=1; fi
  if command -v rustup >/dev/null; then
    if rustup target list --installed 2>/dev/null | grep -qx "$RUST_TARGET"; then
      echo "rust target:  $RUST_TARGET installed"
    else echo "rust target:  $RUST_TARGET NOT installed (arm64 builds unavailable)"; fi
  fi
  return "$ok"
}

case "$ACTION" in
  install)
    install
    check
    echo "PATH addition: export PATH=\"$BIN:\$PATH\""
    ;;
  path) echo "$BIN" ;;
  check) check ;;
  *) echo "usage: $0 [install|path|check]" >&2; exit 2 ;;
esac
