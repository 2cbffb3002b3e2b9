#!/usr/bin/env bash
# The testbed model's full-attention accuracy on RULER's tasks at 4K-32K, measured by our engine on a GPU
# (shadowkv eval --device cuda, f32 weights + f32 KV: the CPU backend's numbers, faster), plus the CUDA graph and
# model tests and a batch-1 decode benchmark of the Llama-3.1-8B shape. Output in $OUT: eval.jsonl (every run),
# eval-summary.json, log.txt. 16 samples per task and length by default (the model card's record; the evaluation
# alone takes ~4.7 minutes on an H200, 8.8M tokens): with ONLY_EVAL=1 and a warm build directory the whole call
# fits the device tool's 10 minutes; the tests and the benchmark add ~3 minutes more.
#   OUT=/tmp/out scripts/gpu_eval_testbed.sh       # CONTEXTS=4k,8k,16k,32k SAMPLES=16 ONLY_EVAL=0
# MODEL_DIR: the model evaluated (default models/testbed; e.g. a training chain's exported $OUT/model, carried).
# The haystack: HAYSTACK, else .testbed/data/kjv.heldout.txt (carry .testbed: the held-out 8% of the KJV text the
# model never trained on; tools/testbed/prepare_data.py), else Debian's KJV (not installed on the GPU machines).
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export PATH="$PATH:/usr/local/cuda/bin" SKV_REQUIRE_CUDA=1
OUT=${OUT:-$ROOT/gpu-out}
BUILD=${BUILD_DIR:-$ROOT/build-gpu}
MODEL_DIR=${MODEL_DIR:-$ROOT/models/testbed}
mkdir -p "$OUT"
HAYSTACK=${HAYSTACK:-}
[ -z "$HAYSTACK" ] && [ -f "$ROOT/.testbed/data/kjv.heldout.txt" ] && HAYSTACK="$ROOT/.testbed/data/kjv.heldout.txt"
HAY=()
[ -n "$HAYSTACK" ] && HAY=(--haystack "$HAYSTACK")
TASKS=niah_single_1,niah_single_2,niah_single_3,niah_multikey_1,niah_multikey_2,niah_multikey_3,niah_multivalue,niah_multiquery,vt
GEN=()
command -v ninja > /dev/null && GEN=(-G Ninja)
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ) commit: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null) (tree may differ)"
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
  cmake -S "$ROOT" -B "$BUILD" "${GEN[@]}" -DCMAKE_BUILD_TYPE=Release -DSKV_CUDA=ON -DSKV_TESTS=ON > /dev/null 2>&1
  cmake --build "$BUILD" -j "${JOBS:-16}" --target shadowkv test_decode_graphs_cuda test_model_cuda 2>&1 | grep -E "error|FAILED" | head -20
  if [ "${ONLY_EVAL:-0}" != 1 ]; then
  echo "== tests"
  timeout 120 "$BUILD/tests/model/test_decode_graphs_cuda" 2>&1 | grep -E "graphs:|OK|FAILED|Failure|Expected|actual" | head -20
  timeout 150 "$BUILD/tests/model/test_model_cuda" --gtest_filter='ModelCuda.Testbed*' 2>&1 |
    grep -E "^testbed|OK|FAILED|Failure|actual" | head -20
  fi
  echo "== eval (full attention, f32 weights + f32 KV)"
  time timeout 400 "$BUILD/shadowkv" eval --device cuda --weight-dtype f32 --kv-dtype f32 --model "$MODEL_DIR" \
    --tasks "$TASKS" --context "${CONTEXTS:-4k,8k,16k,32k}" --samples "${SAMPLES:-16}" --attention full \
    "${HAY[@]}" --out "$OUT/eval.jsonl" 2> "$OUT/eval-progress.txt" > "$OUT/eval-table.txt"
  cat "$OUT/eval-table.txt"
  tail -c 300 "$OUT/eval-progress.txt" | tr '\r' '\n' | tail -3
  "$BUILD/shadowkv" eval --device cuda --weight-dtype f32 --kv-dtype f32 --model "$MODEL_DIR" \
    --tasks "$TASKS" --context "${CONTEXTS:-4k,8k,16k,32k}" --samples "${SAMPLES:-16}" --attention full \
    "${HAY[@]}" --out "$OUT/eval.jsonl" --json > "$OUT/eval-summary.json" 2> /dev/null
  [ "${ONLY_EVAL:-0}" = 1 ] && exit 0
  echo "== decode, Llama-3.1-8B shape, batch 1 (graphs on)"
  timeout 150 "$BUILD/shadowkv" bench --device cuda --model "$ROOT/bench/configs/llama-3.1-8b" --random-weights --context 32k,122k \
    --batch 1,4,auto 2>&1 | grep -E "^\||^CUDA graphs|^device"
} 2>&1 | tee "$OUT/log.txt"
