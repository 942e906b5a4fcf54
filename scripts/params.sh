#!/usr/bin/env bash
# An environment's settings in Parameter Store, under /conversa/<environment>/ (docs/deploy.md,
# "Environments"). The stack of the environment names them in samconfig.toml; CloudFormation
# reads tiers, default-tier and prices at every deploy, the functions read the model keys at
# run time.
#
# Usage:  scripts/params.sh <command> <environment> [...]
#   init  <env>                    create what is missing: tiers {}, default-tier default, prices {}
#                                  (one tier without limits, the built-in prices); never overwrites
#   put   <env> tiers <file|->     tiers and budgets, JSON (README, "Usage and budgets")
#   put   <env> prices <file|->    prices in USD per million tokens, JSON
#   put   <env> default-tier <name>
#   key   <env> [openai|anthropic] read a model key from the terminal (not echoed) into the
#                                  SecureString <prefix>/openai-api-key or anthropic-api-key
#   show  <env>                    the settings (keys: name and version only, never the value)
#
# Values are checked before they are written (JSON that parses, an object, a default tier that
# is one of the tiers), minified, and stored as String parameters (SecureString for keys).
# Deploy the environment afterwards: sam deploy --config-env <env>.
# Environment: the AWS CLI's own (AWS_PROFILE, AWS_REGION, ...);
#              CONVERSA_PARAMS_PREFIX (default /conversa/<env>).
set -euo pipefail

die() { printf 'params: %s\n' "$*" >&2; exit 1; }
usage() { sed -n '7,16p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

[[ $# -ge 2 ]] || usage
CMD=$1 ENV_NAME=$2
shift 2
[[ $ENV_NAME =~ ^[a-z0-9][a-z0-9-]{0,31}$ ]] || die "environment: lowercase letters, digits and -, e.g. dev, staging, prod"
PREFIX="${CONVERSA_PARAMS_PREFIX:-/conversa/$ENV_NAME}"
command -v aws >/dev/null || die "the AWS CLI is needed (aws)"

# The value of a parameter, or nothing when it does not exist (any other error stops).
get() {
  local out
  if out=$(aws ssm get-parameter --name "$PREFIX/$1" --query Parameter.Value --output text 2>&1); then
    printf '%s' "$out"
  elif [[ $out != *ParameterNotFound* ]]; then
    die "reading $PREFIX/$1: $out"
  fi
}

# Sends a put-parameter request, a JSON document on stdin, through a private temporary file
# (the AWS CLI cannot read it from a pipe): values never appear in a process list, and quotes
# and braces reach Parameter Store untouched.
put_request() {
  local tmp
  tmp=$(umask 077 && mktemp)
  # shellcheck disable=SC2064
  trap "rm -f '$tmp'" EXIT
  cat >"$tmp"
  aws ssm put-parameter --cli-input-json "file://$tmp" --query Version --output text >/dev/null
  rm -f "$tmp"
}

# Writes a String parameter.
put_string() {
  local name=$1 value=$2 overwrite=${3:-true}
  python3 -c '
import json, sys
print(json.dumps({"Name": sys.argv[1], "Type": "String", "Value": sys.argv[2],
                  "Overwrite": sys.argv[3] == "true"}))' "$PREFIX/$name" "$value" "$overwrite" |
    put_request
  printf '%s/%s written\n' "$PREFIX" "$name"
}

# Checks a tiers or prices document; prints it minified. $1: tiers|prices.
check_json() {
  python3 -c '
import json, re, sys
kind, text = sys.argv[1], sys.stdin.read()
# Limit -> whether it may have a fraction (dollars).
limits = {"turns_per_minute": False, "tokens_per_day": False, "tokens_per_month": False,
          "usd_per_day": True, "usd_per_month": True}
names = ", ".join(limits)
try:
    doc = json.loads(text)
except ValueError as e:
    sys.exit(f"{kind}: not JSON ({e})")
if not isinstance(doc, dict):
    sys.exit(f"{kind}: expected an object, e.g. " + ("{\"free\": {\"tokens_per_day\": 100000}}" if kind == "tiers" else "{\"my-model\": {\"input\": 1, \"output\": 4}}"))
for name, v in doc.items():
    if not isinstance(v, dict):
        sys.exit(f"{kind}: {name!r}: expected an object")
    if kind == "tiers" and not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name):
        sys.exit(f"tiers: {name!r} is not a tier name (letters, digits, - _; up to 64)")
    if kind == "prices" and set(v) != {"input", "output"}:
        sys.exit(f"prices: {name!r}: expected input and output, USD per million tokens")
    for key, n in v.items():
        if kind == "tiers" and key not in limits:
            sys.exit(f"tiers: {name!r}: unknown limit {key!r} (one of {names})")
        if isinstance(n, bool) or not isinstance(n, (int, float)) or n < 0:
            sys.exit(f"{kind}: {name!r}: {key} must be a number, 0 or more")
        if kind == "tiers" and not limits[key] and n != int(n):
            sys.exit(f"tiers: {name!r}: {key} must be a whole number")
out = json.dumps(doc, separators=(",", ":"))
# Parameter Store standard parameters hold 4 KB; the environment variables of a function
# together must fit in 4 KB too.
if len(out.encode()) > 4096:
    sys.exit(f"{kind}: {len(out.encode())} bytes minified; at most 4096 (and all the environment variables of a function together must fit in 4 KB)")
print(out)' "$1"
}

# Whether $2 names a tier of the tiers document $1 (default always exists).
is_tier() {
  python3 -c 'import json, sys; sys.exit(sys.argv[2] not in ["default", *json.loads(sys.argv[1] or "{}")])' "$1" "$2"
}

case "$CMD" in
  init)
    [[ $# -eq 0 ]] || usage
    for pair in "tiers={}" "default-tier=default" "prices={}"; do
      name=${pair%%=*}
      if [[ -n $(get "$name") ]]; then printf '%s/%s exists, kept\n' "$PREFIX" "$name"
      else put_string "$name" "${pair#*=}" false; fi
    done
    ;;
  put)
    [[ $# -eq 2 ]] || usage
    what=$1 src=$2
    case "$what" in
      tiers | prices)
        if [[ $src == - ]]; then value=$(check_json "$what")
        else [[ -f $src ]] || die "$src: no such file"; value=$(check_json "$what" <"$src"); fi
        if [[ $what == tiers ]]; then
          current=$(get default-tier)
          if [[ -n $current ]] && ! is_tier "$value" "$current"; then
            die "the default tier \"$current\" is not among these tiers: put default-tier first, or add it"
          fi
        fi
        put_string "$what" "$value"
        ;;
      default-tier)
        [[ $src =~ ^[A-Za-z0-9_-]{1,64}$ ]] || die "default-tier: a tier name (letters, digits, - _; up to 64)"
        tiers=$(get tiers)
        is_tier "$tiers" "$src" ||
          die "\"$src\" is not one of the tiers in $PREFIX/tiers (or default)"
        put_string default-tier "$src"
        ;;
      *) die "put: tiers, prices or default-tier (model keys: the key command)" ;;
    esac
    ;;
  key)
    provider=${1:-openai}
    [[ $provider == openai || $provider == anthropic ]] || die "key: openai or anthropic"
    [[ -t 0 ]] || die "key: run it in a terminal (the key is read without echo)"
    read -rsp "$provider API key for $ENV_NAME: " secret
    echo
    [[ -n $secret ]] || die "no key given"
    # Through stdin and a private file: the key never appears in an argument or the output.
    printf '%s' "$secret" | python3 -c '
import json, sys
print(json.dumps({"Name": sys.argv[1], "Type": "SecureString", "Value": sys.stdin.read(),
                  "Overwrite": True}))' "$PREFIX/$provider-api-key" | put_request
    unset secret
    printf '%s/%s-api-key written (SecureString)\n' "$PREFIX" "$provider"
    ;;
  show)
    [[ $# -eq 0 ]] || usage
    aws ssm get-parameters-by-path --path "$PREFIX" --query 'Parameters[].[Name,Type,Version]' --output text |
      while IFS=$'\t' read -r name type version; do
        if [[ $type == SecureString ]]; then printf '%s  (SecureString, version %s)\n' "$name" "$version"
        else printf '%s  = %s  (version %s)\n' "$name" "$(aws ssm get-parameter --name "$name" --query Parameter.Value --output text)" "$version"; fi
      done
    ;;
  *) usage ;;
esac
