#!/usr/bin/env bash
# Installs what Conversa's build and tests need from Debian's packages, once; fast when all is there.
#   scripts/setup.sh            system packages for running and testing
# Rust (cargo, rustc) and Node.js (node, npm) are expected on the machine.
set -euo pipefail

need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v chromium >/dev/null || need+=(chromium)
python3 -c 'import ensurepip, venv' 2>/dev/null || need+=(python3-venv)
command -v unzip >/dev/null || need+=(unzip)
command -v curl >/dev/null || need+=(curl)

if ((${#need[@]})); then
  echo "[setup] apt-get install ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  SUDO=""
  [[ $(id -u) -eq 0 ]] || SUDO="sudo"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
for tool in cargo node npm python3; do
  command -v "$tool" >/dev/null || { echo "[setup] $tool is required but not installed" >&2; exit 1; }
done
