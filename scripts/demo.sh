#!/usr/bin/env bash
# Sets everything up (see setup.sh) and runs the main job: shadowkv generating a story with the embedded
# default model, stories15M. Extra arguments go to `shadowkv generate`.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/setup.sh"
build="${SKV_BUILD_DIR:-$root/build}"
if (($#)); then
  exec "$build/shadowkv" generate "$@"
fi
exec "$build/shadowkv" generate --prompt "Once upon a time, there was a little robot" --max-tokens 200 \
  --temperature 0.8 --top-p 0.95 --seed 42
