#!/usr/bin/env bash
# Sets everything up (see setup.sh) and runs the test suite with CTest. Extra arguments go to ctest
# (e.g. -L cpu, -R tokenizer).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/setup.sh"
build="${SKV_BUILD_DIR:-$root/build}"
cd "$build"
ctest --output-on-failure -j"$(nproc)" --timeout 900 "$@"
