#!/usr/bin/env python3
"""Reads an environment's settings from samconfig.toml for scripts and the deploy workflow.

  python3 scripts/samconfig.py stack <env>              the environment's stack name
  python3 scripts/samconfig.py region <env>             its region
  python3 scripts/samconfig.py overrides <env> [Key...]  its parameter_overrides, one per line
                                                          (NUL-terminated with -0), with each
                                                          named Key taken from the environment
                                                          variable of the same name when set

`sam deploy --parameter-overrides` replaces an environment's whole list; `overrides` gives the
list with some values replaced or added, so a deploy that adds a secret (OriginVerifySecret)
still names the environment's Parameter Store paths. Every value comes out quoted the way
`sam deploy` reads it (Key="value", " escaped), so spaces, quotes and JSON survive; a value
with a backslash is refused.
"""

import os
import sys
import tomllib
from pathlib import Path

CONFIG = Path(__file__).resolve().parent.parent / "samconfig.toml"


def fail(message: str) -> None:
    sys.exit(f"samconfig: {message}")


def table(config: dict, env: str, command: str) -> dict:
    return config.get(env, {}).get(command, {}).get("parameters", {})


def setting(config: dict, env: str, command: str, key: str) -> str:
    # As sam does: the command's own table, then the environment's global one.
    for cmd in (command, "global"):
        value = table(config, env, cmd).get(key)
        if value is not None:
            return str(value)
    fail(f"{env}: no {key} in samconfig.toml")
    return ""


def quoted(key: str, value: str) -> str:
    # sam unescapes \" inside the quotes and leaves other backslashes alone, so a backslash
    # could end the value early or vanish: refused rather than guessed.
    if "\\" in value:
        fail(f"{key}: a value with a backslash can't be passed to sam deploy unchanged")
    escaped = value.replace('"', '\\"')
    return f'{key}="{escaped}"'


def overrides(config: dict, env: str, keys: list[str]) -> list[str]:
    listed = table(config, env, "deploy").get("parameter_overrides", [])
    if isinstance(listed, str):
        fail(f"{env}: write parameter_overrides as a list of Key=Value strings")
    values: dict[str, str] = {}
    for item in listed:
        key, sep, value = item.partition("=")
        if not sep or not key:
            fail(f"{env}: {item!r} is not Key=Value")
        values[key] = value
    for key in keys:
        value = os.environ.get(key, "")
        if value:
            values[key] = value
    return [quoted(k, v) for k, v in values.items()]


def main(argv: list[str]) -> None:
    null = "-0" in argv
    args = [a for a in argv if a != "-0"]
    if len(args) < 2 or args[0] not in ("stack", "region", "overrides"):
        sys.exit(__doc__)
    command, env, keys = args[0], args[1], args[2:]
    with CONFIG.open("rb") as f:
        config = tomllib.load(f)
    if env not in config or env == "version":
        fail(f"no environment {env!r} in samconfig.toml")
    if command == "stack":
        print(setting(config, env, "deploy", "stack_name"))
    elif command == "region":
        print(setting(config, env, "deploy", "region"))
    else:
        end = "\0" if null else "\n"
        sys.stdout.write("".join(item + end for item in overrides(config, env, keys)))


if __name__ == "__main__":
    main(sys.argv[1:])
