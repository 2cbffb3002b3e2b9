#!/usr/bin/env bash
# Whole models on the GPU (H100/H200): configure -DSKV_CUDA=ON in build-gpu, build the CLI and every CUDA test,
# run `ctest -L cuda`, a compute-sanitizer memcheck of the op, fused-op and graph tests, stories15M greedy on CUDA
# in the exact mode (f32 weights + f32 KV) against the CPU backend, and benchmark Llama-3.1-8B (its published
# config, random bf16 weights generated on the device) at 32K and 122K tokens with batch 1 and the largest that
# fits, CUDA graphs on and off, programmatic dependent launch (PDL) on and off, and the op benchmarks of the
# decode path (bench_linear, bench_attention_decode: PDL off/on). With nsys on the machine and time left, a
# profile of 32K batch-1 decode steps gives the time of every kernel (kernels.txt). Every step is logged and timed; a failing step is recorded and the script goes
# on. Everything lands in ONE tarball $OUT/gpu-model-logs.tar.gz plus $OUT/summary.txt and $OUT/bench.md.
# About 8 minutes with 16 cores.
#
#   OUT=/tmp/out scripts/gpu_model_check.sh       # JOBS=16 BUILD_DIR=build-gpu are the defaults
#
# stories15M: STORIES_DIR, else .gpu-carry/stories15M-bf16 (scripts/make_bf16_copy.py: the f32 original does
# not fit the 64 MiB transfer beside the tree), else models/stories15M. The golden llama2.c tokens:
# .gpu-carry/shared/data, shared/data or ../shared/data.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
export PATH="$PATH:/usr/local/cuda/bin"
export SKV_REQUIRE_CUDA=1
OUT=${OUT:-$ROOT/gpu-out}
BUILD=${BUILD_DIR:-$ROOT/build-gpu}
JOBS=${JOBS:-16}
LOGS=$(mktemp -d)
mkdir -p "$OUT"
: > "$LOGS/steps.txt"
START=$(date +%s)

# step NAME TIMEOUT_S CMD...: runs CMD with a time limit, output tee'd to $LOGS/NAME.log; records the status.
step() {
  local name=$1 limit=$2
  shift 2
  echo "=== $name: $*" | tee "$LOGS/$name.log"
  local t0=$(date +%s)
  timeout --kill-after=10 "$limit" "$@" 2>&1 | tee -a "$LOGS/$name.log"
  local rc=${PIPESTATUS[0]}
  echo "$name rc=$rc ${limit}s-limit $(( $(date +%s) - t0 ))s" | tee -a "$LOGS/steps.txt"
  return "$rc"
}
skip() { echo "$1 rc=skipped ($2)" | tee -a "$LOGS/steps.txt"; }

{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "commit: $(git -C "$ROOT" rev-parse HEAD 2>/dev/null) (working tree may differ)"
  git -C "$ROOT" status --short 2>/dev/null | head -60
  nvidia-smi 2>&1 | head -20
  nvcc --version 2>&1 | tail -2
  cmake --version | head -1
} > "$LOGS/machine.txt" 2>&1

SHARED=()
for d in "$ROOT/.gpu-carry/shared/data" "$ROOT/shared/data"; do
  if [ -f "$d/stories15M-greedy-from-bos.txt" ]; then SHARED=(-DSKV_SHARED_DATA_DIR="$d"); break; fi
done
STORIES=${STORIES_DIR:-}
if [ -z "$STORIES" ]; then
  for d in "$ROOT/.gpu-carry/stories15M-bf16" "$ROOT/models/stories15M"; do
    if [ -f "$d/config.json" ]; then STORIES=$d; break; fi
  done
fi
export SKV_STORIES15M_DIR=${STORIES:-$ROOT/models/stories15M}
GEN=()
command -v ninja > /dev/null && GEN=(-G Ninja)
step configure 120 cmake -S "$ROOT" -B "$BUILD" "${GEN[@]}" -DCMAKE_BUILD_TYPE=Release -DSKV_CUDA=ON \
  -DSKV_BENCH=ON -DSKV_TESTS=ON "${SHARED[@]}"
step build 330 cmake --build "$BUILD" -j "$JOBS" --target shadowkv test_model_cuda test_ops_cuda test_memory_plan \
  test_fused_ops_cuda test_decode_graphs_cuda bench_linear bench_attention_decode
SKV="$BUILD/shadowkv"
echo "stories15M: $SKV_STORIES15M_DIR"

step ctest_cuda 200 ctest --test-dir "$BUILD" -L cuda --output-on-failure --timeout 150
# The printed numbers of the model tests (match length, bf16 error, bf16 tokens), straight from the binaries.
[ -x "$BUILD/tests/model/test_model_cuda" ] && step model_cuda_verbose 90 "$BUILD/tests/model/test_model_cuda"
[ -x "$BUILD/tests/model/test_decode_graphs_cuda" ] &&
  step graphs_verbose 60 "$BUILD/tests/model/test_decode_graphs_cuda"

# memcheck: the fused ops, the graphs, and the op tests' smaller cases (the generic attention kernels included);
# not DeviceBasics, whose deliberate 1 PiB allocation memcheck counts as an error.
if command -v compute-sanitizer > /dev/null; then
  step memcheck_fused 120 compute-sanitizer --tool memcheck --error-exitcode 9 "$BUILD/tests/ops/test_fused_ops_cuda"
  [ "${MEMCHECK_OPS:-1}" = 1 ] && step memcheck_ops 200 compute-sanitizer --tool memcheck --error-exitcode 9 "$BUILD/tests/ops/test_ops_cuda" \
    --gtest_filter='OpsCuda.Embedding*:OpsCuda.RmsNorm*:OpsCuda.Rope*:OpsCuda.Swiglu*:OpsCuda.AttentionDecodeBatchInvalid*:OpsCuda.AttentionDecodeMatches*:OpsCuda.SampleTokens*:OpsCuda.*Generic*:OpsCuda.Linear*'
  step memcheck_graphs 150 compute-sanitizer --tool memcheck --error-exitcode 9 \
    "$BUILD/tests/model/test_decode_graphs_cuda" --gtest_filter='*HeadDim64*'
fi

# stories15M in the exact mode (f32 weights, f32 KV) on CUDA vs the CPU backend: 200 greedy tokens from BOS.
if [ -f "$SKV_STORIES15M_DIR/config.json" ]; then
  step stories_cpu 60 "$SKV" generate --device cpu --model "$SKV_STORIES15M_DIR" --prompt "" --max-tokens 200 --json
  step stories_cuda_f32 60 "$SKV" generate --device cuda --weight-dtype f32 --kv-dtype f32 \
    --model "$SKV_STORIES15M_DIR" --prompt "" --max-tokens 200 --json
  step stories_cuda_bf16 60 "$SKV" generate --device cuda --model "$SKV_STORIES15M_DIR" --prompt "" \
    --max-tokens 200 --json
fi
step generate_testbed_cuda 60 "$SKV" generate --device cuda --model "$ROOT/models/testbed" \
  --prompt "The special magic number for quiet river is: 4417321." --max-tokens 40 --json

# Llama-3.1-8B's published config.json (bench/configs), weights random on the device.
L8B="$ROOT/bench/configs/llama-3.1-8b"
step plan_8b 30 "$SKV" plan --device cuda --model "$L8B" --context 122k
step bench_8b 200 "$SKV" bench --device cuda --model "$L8B" --random-weights --context 32k,122k --batch 1,auto
step bench_8b_nographs 90 "$SKV" bench --device cuda --model "$L8B" --random-weights --context 32k --batch 1,4 \
  --cuda-graphs off
step bench_8b_nopdl 120 "$SKV" bench --device cuda --model "$L8B" --random-weights --context 32k,122k --batch 1 \
  --pdl off
step bench_linear 90 "$BUILD/bench/bench_linear"
step bench_attention_decode 90 "$BUILD/bench/bench_attention_decode"
if command -v nsys > /dev/null && [ $(( $(date +%s) - START )) -lt 450 ]; then
  step nsys_decode 100 nsys profile -o "$LOGS/decode32k" --force-overwrite true "$SKV" bench --device cuda \
    --model "$L8B" --random-weights --context 32k --batch 1 --steps 20
  step nsys_stats 60 nsys stats --report cuda_gpu_kern_sum --format csv --output "$LOGS/kernels" "$LOGS/decode32k.nsys-rep"
  # per kernel: time share, instances, average ns, name
  python3 - "$LOGS" > "$OUT/kernels.txt" 2>&1 <<'PYEOF'
import csv, glob, sys
f = (glob.glob(sys.argv[1] + "/kernels*.csv") or [None])[0]
if f:
    for r in list(csv.DictReader(open(f)))[:30]:
        print(r.get("Time (%)"), r.get("Instances"), r.get("Avg (ns)"), r.get("Name", "")[:110])
PYEOF
else
  skip nsys_decode "no nsys or no time left"
fi
{
  for b in bench_8b bench_8b_nographs bench_8b_nopdl; do
    echo "## $b"
    grep -hE "^\||^CUDA graphs|^device:" "$LOGS/$b.log" 2>/dev/null
  done
} > "$OUT/bench.md"

{
  echo "==== SUMMARY ($(( $(date +%s) - START ))s)"
  awk '{split($2, r, "="); printf "%-24s %s\n", $1, (r[2] == "0" ? "ok" : "FAILED/SKIPPED (" r[2] " " $3 ")")}' "$LOGS/steps.txt"
  grep -hE "tests passed|tests failed" "$LOGS/ctest_cuda.log" 2>/dev/null | sed 's/^/tests: /'
  grep -hE "^\s+[0-9]+ - .*\((Failed|Timeout|SEGFAULT|Subprocess aborted|Exception)\)" "$LOGS/ctest_cuda.log" 2>/dev/null | head -15
  grep -hE "^(f32|bf16|graphs:|pdl:)" "$LOGS/model_cuda_verbose.log" "$LOGS/graphs_verbose.log" 2>/dev/null | cut -c1-300
  grep -hE "ERROR SUMMARY" "$LOGS"/memcheck_*.log 2>/dev/null | sed 's/^/memcheck: /'
  # stories15M: the greedy ids of the CUDA runs against the CPU backend's
  [ -f "$LOGS/stories_cpu.log" ] && python3 - "$LOGS" <<'PYEOF' 2>&1 | head -4
import json, os, sys
def ids(name):
    try:
        t = open(os.path.join(sys.argv[1], name + ".log")).read()
        return json.loads(t[t.index("{"):t.rindex("}") + 1])["tokens"]
    except Exception as e:
        return None
cpu = ids("stories_cpu")
for g in ("stories_cuda_f32", "stories_cuda_bf16"):
    got = ids(g)
    if cpu is None or got is None:
        print(f"{g}: no tokens"); continue
    same = next((i for i, (a, b) in enumerate(zip(cpu, got)) if a != b), min(len(cpu), len(got)))
    print(f"{g}: {same}/{len(cpu)} greedy tokens equal the CPU backend's before the first difference"
          + (" (all)" if same == len(cpu) == len(got) else ""))
PYEOF
  grep -hE "prefill: .*tokens/s" "$LOGS"/generate_cuda_*.log 2>/dev/null
  grep -hE "^device:|^weights " "$LOGS"/bench_8b*.log 2>/dev/null | head -3
  cat "$OUT/bench.md" 2>/dev/null
  grep -hE "^(linear|decode attention|ceiling)" "$LOGS/bench_linear.log" "$LOGS/bench_attention_decode.log" 2>/dev/null
  grep -hE "^error:" "$LOGS"/*.log 2>/dev/null | head -10
} | tee "$LOGS/summary.txt"
cp "$LOGS/summary.txt" "$OUT/summary.txt"
FAILED=$(grep -E " rc=" "$LOGS/steps.txt" | grep -cvE " rc=0 ")
tar -C "$LOGS" -czf "$OUT/gpu-model-logs.tar.gz" . 2>/dev/null
rm -rf "$LOGS"
[ "$FAILED" -gt 0 ] && exit 1
exit 0
