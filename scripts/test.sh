#!/usr/bin/env bash
# Sets everything up (see setup.sh) and runs the test suite with CTest. Extra arguments go to ctest
# (e.g. -L cpu, -R tokenizer).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/setup.sh"
build="${SKV_BUILD_DIR:-$root/build}"
cd "$build"
# ctest runs two test programs at once on two cores: OpenMP threads that spin while waiting would then steal
# each other's cores and slow the suite by an order of magnitude, so waiting threads sleep.
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}"
ctest --output-on-failure -j"$(nproc)" --timeout 900 "$@"
