#!/usr/bin/env bash
# Whole models on the GPU (H100/H200): configure -DSKV_CUDA=ON in build-gpu, build shadowkv, test_model_cuda and
# test_ops_cuda, run `ctest -L cuda`, benchmark Llama-3.1-8B (its published config, random bf16 weights generated
# on the device) at 32K and 122K tokens with batch 1 and the largest that fits, and generate with stories15M on
# CUDA. stories15M (models/stories15M) must have travelled with the tree: without it, its steps are skipped.
# Every step is logged and timed; a failing step is recorded and the script goes on. Everything lands in ONE
# tarball $OUT/gpu-model-logs.tar.gz plus $OUT/summary.txt (and bench.md, the table). Under 8 minutes.
#
#   OUT=/tmp/out scripts/gpu_model_check.sh       # JOBS=16 BUILD_DIR=build-gpu are the defaults
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

# The golden llama2.c tokens: ../shared/data by default; shared/data inside the tree when it travelled there.
SHARED=()
[ -f "$ROOT/shared/data/stories15M-greedy-from-bos.txt" ] && SHARED=(-DSKV_SHARED_DATA_DIR="$ROOT/shared/data")
GEN=()
command -v ninja > /dev/null && GEN=(-G Ninja)
step configure 120 cmake -S "$ROOT" -B "$BUILD" "${GEN[@]}" -DCMAKE_BUILD_TYPE=Release -DSKV_CUDA=ON \
  -DSKV_BENCH=OFF -DSKV_TESTS=ON "${SHARED[@]}"
step build 300 cmake --build "$BUILD" -j "$JOBS" --target shadowkv test_model_cuda test_ops_cuda test_memory_plan
SKV="$BUILD/shadowkv"

HAVE_STORIES=0
if [ -f "$ROOT/models/stories15M/config.json" ] && [ -f "$ROOT/models/stories15M/model.safetensors" ]; then
  HAVE_STORIES=1
else
  echo "models/stories15M is missing: the stories15M tests will fail and its generate step is skipped" |
    tee -a "$LOGS/steps.txt"
fi

step ctest_cuda 150 ctest --test-dir "$BUILD" -L cuda --output-on-failure --timeout 150
# The printed numbers of the model tests (match length, bf16 error, bf16 tokens), straight from the binary.
[ -x "$BUILD/tests/model/test_model_cuda" ] &&
  step model_cuda_verbose 90 "$BUILD/tests/model/test_model_cuda" --gtest_filter='ModelCuda.Testbed*'

# The testbed model (committed, head_dim 64) runs on CUDA; stories15M (head_dim 48) does not yet.
step generate_cuda_bf16 60 "$SKV" generate --device cuda --model "$ROOT/models/testbed" \
  --prompt "The special magic number for quiet river is: 4417321." --max-tokens 40 --json
step generate_cuda_f32 60 "$SKV" generate --device cuda --weight-dtype f32 --model "$ROOT/models/testbed" \
  --prompt "The special magic number for quiet river is: 4417321." --max-tokens 40

# Llama-3.1-8B's published config.json (meta-llama/Llama-3.1-8B), weights random on the device.
L8B="$LOGS/llama-3.1-8b-config"
mkdir -p "$L8B"
cat > "$L8B/config.json" <<'JSON'
{"architectures": ["LlamaForCausalLM"], "attention_bias": false, "attention_dropout": 0.0, "bos_token_id": 128000,
 "eos_token_id": 128001, "hidden_act": "silu", "hidden_size": 4096, "initializer_range": 0.02,
 "intermediate_size": 14336, "max_position_embeddings": 131072, "mlp_bias": false, "model_type": "llama",
 "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8, "pretraining_tp": 1,
 "rms_norm_eps": 1e-05, "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
 "original_max_position_embeddings": 8192, "rope_type": "llama3"}, "rope_theta": 500000.0,
 "tie_word_embeddings": false, "torch_dtype": "bfloat16", "use_cache": true, "vocab_size": 128256}
JSON
step plan_8b 30 "$SKV" plan --device cuda --model "$L8B" --context 122k
step bench_8b 200 "$SKV" bench --device cuda --model "$L8B" --random-weights --context 32k,122k --batch 1,auto
# If the 122K prefill ran out of time, the 32K row alone still gives numbers.
if ! grep -q "^| 32768" "$LOGS/bench_8b.log" 2>/dev/null; then
  step bench_8b_32k 90 "$SKV" bench --device cuda --model "$L8B" --random-weights --context 32k --batch 1,auto
fi
grep -hE "^\|" "$LOGS"/bench_8b*.log > "$OUT/bench.md" 2>/dev/null

{
  echo "==== SUMMARY ($(( $(date +%s) - START ))s)"
  awk '{split($2, r, "="); printf "%-24s %s\n", $1, (r[2] == "0" ? "ok" : "FAILED/SKIPPED (" r[2] " " $3 ")")}' "$LOGS/steps.txt"
  grep -hE "tests passed|tests failed" "$LOGS/ctest_cuda.log" 2>/dev/null | sed 's/^/tests: /'
  grep -hE "^\s+[0-9]+ - .*\((Failed|Timeout|SEGFAULT|Subprocess aborted|Exception)\)" "$LOGS/ctest_cuda.log" 2>/dev/null | head -15
  grep -hE "^(f32 CUDA|bf16 CUDA)" "$LOGS/model_cuda_verbose.log" 2>/dev/null | cut -c1-400
  grep -hE "prefill: .*tokens/s" "$LOGS"/generate_cuda_*.log 2>/dev/null
  grep -hE "^device:|^weights " "$LOGS"/bench_8b*.log 2>/dev/null | head -3
  cat "$OUT/bench.md" 2>/dev/null
  grep -hE "^error:" "$LOGS"/*.log 2>/dev/null | head -10
} | tee "$LOGS/summary.txt"
cp "$LOGS/summary.txt" "$OUT/summary.txt"
FAILED=$(grep -E " rc=" "$LOGS/steps.txt" | grep -cvE " rc=0 ")
tar -C "$LOGS" -czf "$OUT/gpu-model-logs.tar.gz" . 2>/dev/null
rm -rf "$LOGS"
[ "$FAILED" -gt 0 ] && exit 1
exit 0
