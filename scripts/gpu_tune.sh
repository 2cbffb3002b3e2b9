#!/usr/bin/env bash
# Tuning sweeps on the GPU machine (H100/H200), output in $OUT/tune.txt (about 4 minutes with 16 cores):
#   1. test_ops_cuda's linear and decode-attention tests (every GEMV CTA shape against the CPU);
#   2. bench_linear: the decode GEMV's CTA shapes (linear.cu's kGemvShapes*) at n = 1, 4, 8, PDL off/on;
#   3. bench_attention_decode: the default split plan, PDL off/on (SPLIT_SWEEP=1: also the split-size sweep);
#   4. shadowkv bench, Llama-3.1-8B shape (random bf16 weights), 32K, batch 1 and 4, once per GEMV shape
#      (SKV_GEMV_SHAPE), then the default at 122K batch 1;
#   5. PREFILL_SWEEP=1: the 32K prefill at prefill chunks 512-8192.
# GEMV_SWEEP=0 skips the GEMV shapes (steps 2 and 4); CUDA_TESTS=1 also builds the other CUDA tests and runs
# ctest -L cuda first. (The decode-attention variants of commit e318bdf had a DECODE_VARIANTS=1 step here.)
#   OUT=/tmp/out scripts/gpu_tune.sh
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export PATH="$PATH:/usr/local/cuda/bin"
OUT=${OUT:-$ROOT/gpu-out}
BUILD=${BUILD_DIR:-$ROOT/build-gpu}
mkdir -p "$OUT"
LOG="$OUT/tune.txt"
L8B="$ROOT/bench/configs/llama-3.1-8b"
GEN=()
command -v ninja > /dev/null && GEN=(-G Ninja)
# As scripts/gpu_model_check.sh: llama2.c's golden tokens and stories15M (bf16 copy) for the model tests.
SHARED=()
for d in "$ROOT/.gpu-carry/shared/data" "$ROOT/shared/data"; do
  if [ -f "$d/stories15M-greedy-from-bos.txt" ]; then SHARED=(-DSKV_SHARED_DATA_DIR="$d"); break; fi
done
for d in "$ROOT/.gpu-carry/stories15M-bf16" "$ROOT/models/stories15M"; do
  if [ -f "$d/config.json" ]; then export SKV_STORIES15M_DIR=$d; break; fi
done
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ) commit: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null) (tree may differ)"
  git -C "$ROOT" status --short 2>/dev/null | head -20
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  cmake -S "$ROOT" -B "$BUILD" "${GEN[@]}" -DCMAKE_BUILD_TYPE=Release -DSKV_CUDA=ON -DSKV_BENCH=ON -DSKV_TESTS=ON \
    "${SHARED[@]}" > "$OUT/configure.log" 2>&1 || { echo "configure failed"; tail -20 "$OUT/configure.log"; }
  TARGETS=(bench_attention_decode bench_linear shadowkv test_ops_cuda)
  [ "${CUDA_TESTS:-0}" = 1 ] && TARGETS+=(test_model_cuda test_memory_plan test_fused_ops_cuda test_decode_graphs_cuda)
  cmake --build "$BUILD" -j "${JOBS:-16}" --target "${TARGETS[@]}" \
    > "$OUT/build.log" 2>&1 || { echo "build failed"; grep -E "error" "$OUT/build.log" | head -20; }
  if [ "${CUDA_TESTS:-0}" = 1 ]; then
    echo "== ctest -L cuda"
    (cd "$BUILD" && SKV_REQUIRE_CUDA=1 timeout 400 ctest -L cuda -j 4 --timeout 300 2>&1 | grep -E "tests passed|Failed|\*\*\*" | head -20)
  fi
  echo "== test_ops_cuda (linear, decode attention)"
  SKV_REQUIRE_CUDA=1 timeout 200 "$BUILD/tests/ops/test_ops_cuda" --gtest_filter='OpsCuda.Linear*:OpsCuda.AttentionDecode*' \
    2>&1 | grep -E "^\[  (PASSED|FAILED) |Failure|error" | head -20
  if [ "${GEMV_SWEEP:-1}" = 1 ]; then
    echo "== decode GEMV shapes"
    timeout 120 "$BUILD/bench/bench_linear" 2>&1 | grep -vE "^RESULT"
  fi
  echo "== decode attention"
  if [ "${SPLIT_SWEEP:-0}" = 1 ]; then SWEEP=(--sweep); else SWEEP=(); fi
  timeout 240 "$BUILD/bench/bench_attention_decode" "${SWEEP[@]}" 2>&1 | grep -vE "^RESULT"
  [ "${GEMV_SWEEP:-1}" = 1 ] || exit 0
  echo "== whole decode step per GEMV shape (32K, batch 1 and 4)"
  for shape in 0 1 2 3 4; do
    echo "-- SKV_GEMV_SHAPE=$shape"
    SKV_GEMV_SHAPE=$shape timeout 90 "$BUILD/shadowkv" bench --device cuda --model "$L8B" --random-weights \
      --context 32k --batch 1,4 --steps 20 2>&1 | grep -E "^\| 32768|error"
  done
  echo "-- default shape, 122K batch 1"
  timeout 120 "$BUILD/shadowkv" bench --device cuda --model "$L8B" --random-weights --context 122k --batch 1 \
    --steps 20 2>&1 | grep -E "^\| 124928|error"
  if [ "${PREFILL_SWEEP:-0}" = 1 ]; then
    echo "== 32K prefill by chunk size (Llama-3.1-8B shape, random bf16 weights)"
    for chunk in 512 1024 2048 4096 8192; do
      echo "-- prefill chunk $chunk"
      timeout 90 "$BUILD/shadowkv" bench --device cuda --model "$L8B" --random-weights --context 32k --batch 1 \
        --steps 10 --prefill-chunk "$chunk" 2>&1 | grep -E "^\| 32768|error"
    done
  fi
} 2>&1 | tee "$LOG"
rm -f "$OUT/configure.log"
gzip -f "$OUT/build.log"
