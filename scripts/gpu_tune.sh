#!/usr/bin/env bash
# Tuning sweeps on the GPU machine (H100/H200), output in $OUT/tune.txt:
#   1. bench_attention_decode: the decode-attention split plan's target CTA count at batch 1 and 8;
#   2. shadowkv bench: the 32K prefill of Llama-3.1-8B (random bf16 weights) at prefill chunks 512-8192.
# About 4 minutes with 16 cores.   OUT=/tmp/out scripts/gpu_tune.sh
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export PATH="$PATH:/usr/local/cuda/bin"
OUT=${OUT:-$ROOT/gpu-out}
BUILD=${BUILD_DIR:-$ROOT/build-gpu}
mkdir -p "$OUT"
LOG="$OUT/tune.txt"
GEN=()
command -v ninja > /dev/null && GEN=(-G Ninja)
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ) commit: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null) (tree may differ)"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  cmake -S "$ROOT" -B "$BUILD" "${GEN[@]}" -DCMAKE_BUILD_TYPE=Release -DSKV_CUDA=ON -DSKV_BENCH=ON -DSKV_TESTS=OFF \
    > "$OUT/configure.log" 2>&1 || { echo "configure failed"; tail -20 "$OUT/configure.log"; }
  cmake --build "$BUILD" -j "${JOBS:-16}" --target bench_attention_decode shadowkv > "$OUT/build.log" 2>&1 ||
    { echo "build failed"; grep -E "error" "$OUT/build.log" | head -20; }
  echo "== decode attention split sweep"
  timeout 240 "$BUILD/bench/bench_attention_decode" --sweep 2>&1 | grep -vE "^RESULT"
  echo "== 32K prefill by chunk size (Llama-3.1-8B shape, random bf16 weights)"
  for chunk in 512 1024 2048 4096 8192; do
    echo "-- prefill chunk $chunk"
    timeout 90 "$BUILD/shadowkv" bench --device cuda --model "$ROOT/bench/configs/llama-3.1-8b" --random-weights --context 32k --batch 1 \
      --steps 10 --prefill-chunk "$chunk" 2>&1 | grep -E "^\| 32768|error"
  done
} 2>&1 | tee "$LOG"
rm -f "$OUT/configure.log"
gzip -f "$OUT/build.log"
