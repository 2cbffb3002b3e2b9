#!/usr/bin/env bash
# The CUDA backend on a GPU machine (H100/H200, CUDA 13): configure with -DSKV_CUDA=ON in build-gpu, build the
# CUDA op tests and benchmarks, run `ctest -L cuda` (+ the CPU op tests), the benchmarks, then a compute-sanitizer
# memcheck pass over the smaller CUDA tests. $OUT (default ./gpu-out) receives three files: results.md, summary.txt and
# gpu-check-logs.tar.gz (one log per step, machine.txt, kernels.txt, steps.txt): at most 8 files come back from a run.
# A failing step is recorded and the script goes on (the benchmarks run even when a test fails); the exit code
# is non-zero when any step failed. Needs no model files. About 3-6 minutes with 16 cores.
#
#   OUT=/tmp/out scripts/gpu_check.sh            # JOBS=16 BUILD_DIR=build-gpu SANITIZE=1 are the defaults
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
export PATH="$PATH:/usr/local/cuda/bin"
export SKV_REQUIRE_CUDA=1  # test_ops_cuda fails (instead of skipping) when it sees no device
OUT=${OUT:-$ROOT/gpu-out}
BUILD=${BUILD_DIR:-$ROOT/build-gpu}
JOBS=${JOBS:-16}
SANITIZE=${SANITIZE:-1}
mkdir -p "$OUT"
: > "$OUT/steps.txt"
START=$(date +%s)

# step NAME TIMEOUT_S CMD...: runs CMD with a time limit, output tee'd to $OUT/NAME.log; records the status.
step() {
  local name=$1 limit=$2
  shift 2
  echo "=== $name: $*" | tee "$OUT/$name.log"
  local t0=$(date +%s)
  timeout --kill-after=10 "$limit" "$@" 2>&1 | tee -a "$OUT/$name.log"
  local rc=${PIPESTATUS[0]}
  local t1=$(date +%s)
  echo "$name rc=$rc ${limit}s-limit $((t1 - t0))s" | tee -a "$OUT/steps.txt"
  return "$rc"
}

{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "commit: $(git -C "$ROOT" rev-parse HEAD 2>/dev/null) (working tree may differ: git status below)"
  git -C "$ROOT" status --short 2>/dev/null | head -50
  nvidia-smi 2>&1 | head -20
  nvcc --version 2>&1 | tail -2
  cmake --version | head -1
} > "$OUT/machine.txt" 2>&1

GEN=()
command -v ninja > /dev/null && GEN=(-G Ninja)
step configure 120 cmake -S "$ROOT" -B "$BUILD" "${GEN[@]}" -DCMAKE_BUILD_TYPE=Release -DSKV_CUDA=ON \
  -DSKV_CUDA_PTXAS_VERBOSE=ON -DSKV_BENCH=ON -DSKV_TESTS=ON
TARGETS=(test_ops_cuda test_ops test_attention_decode_batch bench_attention_decode bench_attention_prefill bench_linear)
step build 360 cmake --build "$BUILD" -j "$JOBS" --target "${TARGETS[@]}"

# Registers, spills and tensor-core instructions of the kernels (ptxas -v output is in build.log).
{
  echo "--- ptxas: registers / stack / spills of the op kernels (sm_90a)"
  awk '/Compiling entry function/ { split($0, q, "'"'"'"); name = q[2] }
       /bytes stack frame/ { sub(/^[ \t]+/, ""); stack = $0 }
       /Used [0-9]+ registers/ { match($0, /Used [0-9]+ registers/); print substr($0, RSTART + 5, RLENGTH - 15) " regs | " stack " | " name }' \
    "$OUT/build.log" | c++filt | grep -E "prefill_kernel|prefill_wgmma|decode_split_kernel|decode_combine|gemv_small_n|walk_kernel|rms_norm" |
    sed -E 's/skv::cuda::\(anonymous namespace\):://g; s/\(skv::cuda::.*$//; s/\(__nv_bfloat16 const\*.*$//' | sort -u | head -40
  LIB=$(find "$BUILD" -name 'libskv_ops.a' | head -1)
  if [ -n "$LIB" ] && command -v cuobjdump > /dev/null; then
    echo "--- SASS: HMMA instructions per kernel"
    cuobjdump -sass "$LIB" 2>/dev/null | awk '/Function :/ {f=$3} /HMMA/ {n[f]++} END {for (k in n) print n[k], k}' |
      grep -E "prefill|decode" | head -20
  fi
} > "$OUT/kernels.txt" 2>&1

TESTS_DIR="$BUILD/tests/ops"
step ctest_cuda 240 ctest --test-dir "$BUILD" -L cuda --output-on-failure --timeout 200
step ctest_cpu_ops 120 ctest --test-dir "$BUILD" -R "^(Ops\.|AttentionDecodeBatch\.|SampleTokens\.|CudaDispatch\.)" \
  --output-on-failure --timeout 100
for b in bench_attention_decode bench_attention_prefill bench_linear; do
  if [ -x "$BUILD/bench/$b" ]; then
    step "$b" 150 "$BUILD/bench/$b"
  else
    echo "$b rc=missing" >> "$OUT/steps.txt"
  fi
done
if [ "$SANITIZE" = 1 ] && command -v compute-sanitizer > /dev/null && [ -x "$TESTS_DIR/test_ops_cuda" ]; then
  # memcheck over the smaller cases (the 32K decode and 4K prefill cases are covered unsanitized above). Not
  # DeviceBasics: it asks for 1 PiB on purpose, which memcheck counts as an error (the 2 errors of 2026-11-26).
  step memcheck 150 compute-sanitizer --tool memcheck --error-exitcode 9 "$TESTS_DIR/test_ops_cuda" \
    --gtest_filter='OpsCuda.Embedding*:OpsCuda.RmsNorm*:OpsCuda.Rope*:OpsCuda.Swiglu*:OpsCuda.AttentionDecodeBatchInvalid*:OpsCuda.AttentionDecodeMatches*:OpsCuda.SampleTokens*'
fi

# ---- results.md and the short summary
{
  echo "# CUDA op check $(date -u +%Y-%m-%d)"
  echo
  echo '```'
  cat "$OUT/machine.txt" | grep -E "^date|^commit|NVIDIA|Driver|release" | head -8
  echo '```'
  echo
  echo "## Steps"
  echo
  echo "| step | status | time |"
  echo "|---|---|---|"
  awk '{split($2, r, "="); print "| " $1 " | " (r[2] == "0" ? "ok" : "FAILED (" r[2] ")") " | " $4 " |"}' "$OUT/steps.txt"
  echo
  echo "## Tests"
  echo
  echo '```'
  grep -hE "tests passed|tests failed|\*\*\*Failed|Failed|Timeout" "$OUT/ctest_cuda.log" "$OUT/ctest_cpu_ops.log" 2>/dev/null | head -40
  grep -hE "ERROR SUMMARY" "$OUT/memcheck.log" 2>/dev/null
  echo '```'
  echo
  echo "## Benchmarks (fraction = of the ceiling measured in the same run)"
  echo
  echo "| result | value | unit | fraction | of |"
  echo "|---|---|---|---|---|"
  cat "$OUT"/bench_*.log 2>/dev/null | awk '$1 == "RESULT" {print "| " $2 " | " $3 " | " $4 " | " $5 " | " $6 " |"}'
  echo
  echo "## Kernels"
  echo
  echo '```'
  cat "$OUT/kernels.txt"
  echo '```'
} > "$OUT/results.md"

{
  echo "==== SUMMARY ($(( $(date +%s) - START ))s; logs and results.md in $OUT)"
  awk '{split($2, r, "="); printf "%-24s %s\n", $1, (r[2] == "0" ? "ok" : "FAILED (rc " r[2] ")")}' "$OUT/steps.txt"
  grep -hE "tests passed" "$OUT/ctest_cuda.log" "$OUT/ctest_cpu_ops.log" 2>/dev/null | sed 's/^/tests: /'
  echo "skipped cuda tests: $(grep -c "(Skipped)" "$OUT/ctest_cuda.log" 2>/dev/null)"
  grep -hE "^\s+[0-9]+ - .*\((Failed|Timeout|SEGFAULT|Subprocess aborted|Exception)\)" "$OUT/ctest_cuda.log" "$OUT/ctest_cpu_ops.log" 2>/dev/null | head -15 | sed 's/^/  /'
  grep -hE "ERROR SUMMARY" "$OUT/memcheck.log" 2>/dev/null | sed 's/^/memcheck: /'
  cat "$OUT"/bench_*.log 2>/dev/null | grep -E "^ceiling:|^decode attention|^prefill attention|^linear " | head -60
} | tee "$OUT/summary.txt"

# One tarball for every log (only 8 files come back from the GPU machine).
FAILED=$(grep -cvE "rc=0 " "$OUT/steps.txt")
(cd "$OUT" && tar -czf gpu-check-logs.tar.gz ./*.log machine.txt kernels.txt steps.txt 2>/dev/null &&
  rm -f ./*.log machine.txt kernels.txt steps.txt)
[ "$FAILED" -gt 0 ] && exit 1
exit 0
