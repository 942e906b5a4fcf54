#!/usr/bin/env bash
# Local backing services for Conversa's tests, CI and development.
#
#   Redis            Debian redis-server              -> CONVERSA_LIMITER=redis tests
#   moto server      PyPI moto[server,cognitoidp] (DynamoDB/S3/SQS/SSM/Cognito emulator)
#                    -> dynamodb/s3/sqs adapters, and Cognito user pools issuing real JWTs (oidc tests)
#   SecantusDB       PyPI MongoDB-wire server         -> mongodb store adapter
#
# Usage:  scripts/services.sh [start|stop|status|env]        (default: start)
#
#   start   install what is missing, start what is not running, write the env file,
#           print its `export` lines on stdout (logs go to stderr). Idempotent.
#   stop    stop the services this script started (by their pid files).
#   status  one line per service; exit 1 when a requested service is down.
#   env     print the env file (after start): one `export NAME=value` per line.
#
# In CI / scripts:
#   bash scripts/services.sh start
#   . "${CONVERSA_SERVICES_DIR:-/tmp/conversa-services}/env.sh"
# or simply:  eval "$(bash scripts/services.sh start)"
# GitHub Actions:  bash scripts/services.sh env | sed -n 's/^export //p' >> "$GITHUB_ENV"
#
# Environment (all optional):
#   SERVICES="redis moto mongo"                 which services to handle
#   CONVERSA_TOOLS_DIR=$HOME/.cache/conversa-tools   Python venv with the pinned tools (shared with tools.sh)
#   CONVERSA_SERVICES_DIR=/tmp/conversa-services     pid files, logs, env.sh, Redis dir
#   CONVERSA_REDIS_PORT=6390 CONVERSA_MOTO_PORT=5055 CONVERSA_MONGO_PORT=27117
#   CONVERSA_MONGO_STORAGE=:memory:             SecantusDB storage path (':memory:' = thrown away at stop)
#
# Everything binds to 127.0.0.1 and nothing is fetched at run time: installs use apt and PyPI only.
set -euo pipefail

ACTION="${1:-start}"
SERVICES="${SERVICES:-redis moto mongo}"
TOOLS_DIR="${CONVERSA_TOOLS_DIR:-$HOME/.cache/conversa-tools}"
STATE_DIR="${CONVERSA_SERVICES_DIR:-${TMPDIR:-/tmp}/conversa-services}"
REDIS_PORT="${CONVERSA_REDIS_PORT:-6390}"
MOTO_PORT="${CONVERSA_MOTO_PORT:-5055}"
MONGO_PORT="${CONVERSA_MONGO_PORT:-27117}"
VENV="$TOOLS_DIR/venv"
PY="$VENV/bin/python"
ENV_FILE="$STATE_DIR/env.sh"

# Pinned versions (checked on PyPI). Bump them together, deliberately.
# `cognitoidp` brings joserfc, which moto's Cognito signs its tokens with.
MOTO_PKGS=("moto[server,cognitoidp]==5.2.5" "boto3==1.44.5")
MONGO_PKGS=("SecantusDB==0.7.0b3" "pymongo==4.20.0")

log() { printf '[services] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
want() { [[ " $SERVICES " == *" $1 "* ]]; }

# wait_for NAME TIMEOUT_S CMD...   polls every 0.2 s
wait_for() {
  local name=$1 t=$2; shift 2
  local end=$(($(date +%s) + t))
  until "$@" >/dev/null 2>&1; do
    if (($(date +%s) >= end)); then
      log "$name not ready after ${t}s; last log lines:"
      tail -n 20 "$STATE_DIR/$name.log" >&2 2>/dev/null || true
      return 1
    fi
    sleep 0.2
  done
}

# `kill -0` alone counts a not-yet-reaped zombie as alive.
pid_alive() {
  [[ -f $1 ]] || return 1
  local st
  st=$(ps -o stat= -p "$(cat "$1")" 2>/dev/null) || return 1
  [[ -n $st && $st != Z* ]]
}

as_root() {
  if [[ $(id -u) -eq 0 ]]; then "$@"
  elif command -v sudo >/dev/null; then sudo "$@"
  else die "need root (or sudo) for: $*"
  fi
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

redis_ready() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG; }
moto_ready() { curl -sf -o /dev/null "http://127.0.0.1:$MOTO_PORT/moto-api/"; }
mongo_ready() {
  [[ -x $PY ]] || return 1
  "$PY" - "$MONGO_PORT" <<'EOF' 2>/dev/null
import sys, pymongo
pymongo.MongoClient(f"mongodb://127.0.0.1:{sys.argv[1]}", serverSelectionTimeoutMS=500).admin.command("ping")
EOF
}

# Debian/Ubuntu ship venv support separately (python3-venv); slim CI images may lack python3.
ensure_python_venv() {
  command -v python3 >/dev/null && python3 -c 'import ensurepip, venv' 2>/dev/null && return 0
  command -v apt-get >/dev/null || die "python3 with the venv module is required"
  log "apt-get install python3 python3-venv"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3 python3-venv >/dev/null
}

ensure_venv() {
  [[ -x $PY ]] && return 0
  ensure_python_venv
  mkdir -p "$TOOLS_DIR"
  log "creating venv $VENV"
  python3 -m venv "$VENV" || die "python3 -m venv failed"
  "$VENV/bin/pip" install -q --disable-pip-version-check --upgrade pip
}

# pip_ensure PKG...   installs unless every pinned requirement is already satisfied
pip_ensure() {
  ensure_venv
  local missing=()
  local spec name ver have
  for spec in "$@"; do
    name=${spec%%==*}; name=${name%%[*}; ver=${spec##*==}
    have=$("$PY" -c "import importlib.metadata as m,sys; print(m.version(sys.argv[1]))" "$name" 2>/dev/null || true)
    [[ $have == "$ver" ]] || missing+=("$spec")
  done
  ((${#missing[@]})) || return 0
  log "pip install ${missing[*]}"
  "$VENV/bin/pip" install -q --disable-pip-version-check "${missing[@]}"
}

install_redis() {
  command -v redis-server >/dev/null && command -v redis-cli >/dev/null && return 0
  log "apt-get install redis-server"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server >/dev/null
  # Debian's package may start a system instance on 6379; ours is separate and needs none.
}
start_redis() {
  if redis_ready; then log "redis already up on 127.0.0.1:$REDIS_PORT"; return 0; fi
  port_open "$REDIS_PORT" && die "port $REDIS_PORT is taken by something that is not Redis (set CONVERSA_REDIS_PORT)"
  mkdir -p "$STATE_DIR/redis"
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no \
    --dir "$STATE_DIR/redis" --daemonize yes \
    --pidfile "$STATE_DIR/redis.pid" --logfile "$STATE_DIR/redis.log"
  wait_for redis 20 redis_ready
  log "redis up on 127.0.0.1:$REDIS_PORT"
}

install_moto() {
  pip_ensure "${MOTO_PKGS[@]}"
  # moto may be there without its server extra (pulled in by something else).
  [[ -x $VENV/bin/moto_server ]] || "$VENV/bin/pip" install -q --disable-pip-version-check "${MOTO_PKGS[0]}"
}
start_moto() {
  if moto_ready; then log "moto already up on 127.0.0.1:$MOTO_PORT"; return 0; fi
  port_open "$MOTO_PORT" && die "port $MOTO_PORT is taken by something that is not moto (set CONVERSA_MOTO_PORT)"
  # moto_server with DynamoDB requests one at a time (see the script: moto's transactions
  # otherwise lose concurrent writes).
  setsid nohup "$PY" "$(dirname "${BASH_SOURCE[0]}")/moto_server.py" -H 127.0.0.1 -p "$MOTO_PORT" \
    >"$STATE_DIR/moto.log" 2>&1 </dev/null &
  echo $! >"$STATE_DIR/moto.pid"
  wait_for moto 60 moto_ready
  log "moto up on http://127.0.0.1:$MOTO_PORT"
}

install_mongo() { pip_ensure "${MONGO_PKGS[@]}"; }
start_mongo() {
  if mongo_ready; then log "mongo-wire server already up on 127.0.0.1:$MONGO_PORT"; return 0; fi
  port_open "$MONGO_PORT" && die "port $MONGO_PORT is taken by something that is not a MongoDB-wire server (set CONVERSA_MONGO_PORT)"
  setsid nohup "$VENV/bin/secantusd-py" --host 127.0.0.1 --port "$MONGO_PORT" \
    --storage-path "${CONVERSA_MONGO_STORAGE:-:memory:}" --log-level WARNING \
    >"$STATE_DIR/mongo.log" 2>&1 </dev/null &
  echo $! >"$STATE_DIR/mongo.pid"
  wait_for mongo 90 mongo_ready
  log "mongo-wire server up on 127.0.0.1:$MONGO_PORT"
}

stop_one() {
  local name=$1 pidf="$STATE_DIR/$1.pid"
  if pid_alive "$pidf"; then
    local pid; pid=$(cat "$pidf")
    log "stopping $name (pid $pid)"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do pid_alive "$pidf" || break; sleep 0.1; done
    if pid_alive "$pidf"; then kill -9 "$pid" 2>/dev/null || true; fi
  else
    log "$name: not started by this script"
  fi
  rm -f "$pidf"
}

write_env() {
  mkdir -p "$STATE_DIR"
  {
    echo "# Written by scripts/services.sh; source it before the tests."
    if want redis; then
      echo "export REDIS_URL=redis://127.0.0.1:$REDIS_PORT"
      echo "export CONVERSA_TEST_REDIS=1"
    fi
    if want moto; then
      echo "export AWS_ENDPOINT_URL=http://127.0.0.1:$MOTO_PORT"
      echo "export AWS_REGION=us-east-1"
      echo "export AWS_DEFAULT_REGION=us-east-1"
      echo "export AWS_ACCESS_KEY_ID=test"
      echo "export AWS_SECRET_ACCESS_KEY=test"
      echo "export AWS_EC2_METADATA_DISABLED=true"
      echo "export CONVERSA_TEST_DYNAMODB=1"
      echo "export CONVERSA_TEST_S3=1"
      echo "export CONVERSA_TEST_SQS=1"
      echo "export CONVERSA_TEST_SSM=1"
      echo "export CONVERSA_TEST_COGNITO=1"
    fi
    if want mongo; then
      echo "export MONGODB_URI=mongodb://127.0.0.1:$MONGO_PORT"
      echo "export CONVERSA_TEST_MONGODB=1"
    fi
  } >"$ENV_FILE"
}

case "$ACTION" in
  start)
    mkdir -p "$STATE_DIR"
    t0=$(date +%s)
    if want redis; then install_redis; start_redis; fi
    if want moto; then install_moto; start_moto; fi
    if want mongo; then install_mongo; start_mongo; fi
    write_env
    log "ready in $(($(date +%s) - t0))s; env file: $ENV_FILE"
    grep '^export' "$ENV_FILE"
    ;;
  stop)
    for s in mongo moto redis; do want "$s" && stop_one "$s"; done
    rm -f "$ENV_FILE"
    ;;
  status)
    down=0
    if want redis; then
      if redis_ready; then echo "redis: up    redis://127.0.0.1:$REDIS_PORT"; else echo "redis: down"; down=1; fi
    fi
    if want moto; then
      if moto_ready; then echo "moto:  up    http://127.0.0.1:$MOTO_PORT"; else echo "moto:  down"; down=1; fi
    fi
    if want mongo; then
      if mongo_ready; then echo "mongo: up    mongodb://127.0.0.1:$MONGO_PORT"; else echo "mongo: down"; down=1; fi
    fi
    exit "$down"
    ;;
  env)
    [[ -f $ENV_FILE ]] || die "no env file at $ENV_FILE: run '$0 start' first"
    cat "$ENV_FILE"
    ;;
  *)
    echo "usage: $0 [start|stop|status|env]" >&2
    exit 2
    ;;
esac
