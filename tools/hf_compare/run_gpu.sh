#!/usr/bin/env bash
# shadowkv against Hugging Face transformers on the GPU machine (issue 4), under one time budget, in priority order:
#   1. build shadowkv and skv_dump_logits with -DSKV_CUDA=ON (only those targets);              ~60-120 s
#   2. compare_hf.py on Llama-3.1-8B (random, better-conditioned weights, published config):     ~190 s
#      HF bf16 and fp32 (chunked prefill) at 1K and 32K with 32 greedy steps; ours bf16 logits and greedy,
#      ours all-f32 (--weight-dtype f32 --kv-dtype f32) at 1K and 32K; each optional step only when it fits
#      (the 32K fp32 ones first to go); its model directory is kept for
#   3. bench_torch.py: PyTorch (transformers eager, SDPA) prefill at 32K and decode at contexts 32K and 8K, ~90 s
#      batch 1,4,16 where they fit, next to `shadowkv bench --device cuda` on the same model directory;
#   4. compare_hf.py on Qwen2-7B and Mistral-7B with the time that is left (a model needs >= 90 s to start;
#      each ~175 s in full). `compare_hf.py --plan` prints the per-step estimates (also put in summary.txt).
# A step that would not fit in what is left of the budget is skipped with the reason in steps.txt; compare_hf.py
# and bench_torch.py get deadlines inside their limits and skip their optional parts with the reason recorded.
# Outputs ($OUT, 4 files): summary.txt, compare_hf.jsonl (one JSON object per result), torch_vs_shadowkv.md,
# hf-compare-logs.tar.gz.
#
#   OUT=/tmp/out tools/hf_compare/run_gpu.sh
# Environment: BUDGET_S (total seconds, default 560), STEPS (default build,llama,bench,others), JOBS (16),
#   BUILD_DIR (build-gpu), WORK (model directories, default /tmp/skv-hf-compare), PYTHON (python3),
#   LENGTHS (1024,32768), GREEDY_LENGTHS (1024,32768), F32_LENGTHS (1024,32768), BENCH_CONTEXTS (32768,8192),
#   BATCHES (1,4,16), BENCH_S (seconds kept for the benchmark after the Llama comparison, default 120).
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HERE="$ROOT/tools/hf_compare"
export PATH="$PATH:/usr/local/cuda/bin"
export PYTHONDONTWRITEBYTECODE=1
OUT=${OUT:-$ROOT/gpu-out}
BUILD=${BUILD_DIR:-$ROOT/build-gpu}
JOBS=${JOBS:-16}
WORK=${WORK:-/tmp/skv-hf-compare}
BUDGET_S=${BUDGET_S:-560}
STEPS=${STEPS:-build,llama,bench,others}
LENGTHS=${LENGTHS:-1024,32768}
GREEDY_LENGTHS=${GREEDY_LENGTHS-1024,32768}
F32_LENGTHS=${F32_LENGTHS-1024,32768}
BENCH_CONTEXTS=${BENCH_CONTEXTS:-32768,8192}
BATCHES=${BATCHES:-1,4,16}
BENCH_S=${BENCH_S:-120}
START=$(date +%s)
END=$((START + BUDGET_S))
LOGS=$(mktemp -d)
mkdir -p "$OUT" "$WORK"
: > "$LOGS/steps.txt"
JSONL="$OUT/compare_hf.jsonl"
: > "$JSONL"

left() { echo $((END - $(date +%s))); }
want() { [[ ",$STEPS," == *",$1,"* ]]; }
# step NAME TIMEOUT_S CMD...: runs CMD with a time limit (cut to the budget), output tee'd to $LOGS/NAME.log.
step() {
  local name=$1 limit=$2
  shift 2
  local l
  l=$(left)
  [ "$limit" -gt "$((l - 5))" ] && limit=$((l - 5))
  if [ "$limit" -lt 20 ]; then
    echo "$name rc=skipped (only ${l}s of the budget left)" | tee -a "$LOGS/steps.txt"
    return 1
  fi
  echo "=== $name (limit ${limit}s, ${l}s left): $*" | tee "$LOGS/$name.log"
  local t0
  t0=$(date +%s)
  timeout --kill-after=10 "$limit" "$@" 2>&1 | tee -a "$LOGS/$name.log"
  local rc=${PIPESTATUS[0]}
  echo "$name rc=$rc ${limit}s-limit $(($(date +%s) - t0))s" | tee -a "$LOGS/steps.txt"
  return "$rc"
}

{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "commit: $(git -C "$ROOT" rev-parse HEAD 2>/dev/null) (working tree may differ)"
  git -C "$ROOT" status --short 2>/dev/null | head -40
  nvidia-smi 2>&1 | head -20
  nvcc --version 2>&1 | tail -2
  cmake --version | head -1
  df -h "$WORK" /tmp 2>&1
  free -g 2>&1
} > "$LOGS/machine.txt" 2>&1

# A Python with torch + transformers.
PY=${PYTHON:-}
if [ -z "$PY" ]; then
  for p in python3 python3.12 python /usr/bin/python3; do
    if command -v "$p" > /dev/null && "$p" -c "import torch, transformers" > /dev/null 2>&1; then PY=$p; break; fi
  done
fi
if [ -z "$PY" ]; then
  echo "python rc=missing (no python with torch and transformers found: the Python steps will fail)" | tee -a "$LOGS/steps.txt"
  PY=python3
fi
"$PY" -c "import sys, torch, transformers; print(sys.version.split()[0], 'torch', torch.__version__, 'transformers', transformers.__version__, 'cuda', torch.cuda.is_available())" \
  >> "$LOGS/machine.txt" 2>&1

SKV="$BUILD/shadowkv"
DUMP="$BUILD/tests/reference/skv_dump_logits"
if want build; then
  GEN=()
  command -v ninja > /dev/null && GEN=(-G Ninja)
  step configure 120 cmake -S "$ROOT" -B "$BUILD" "${GEN[@]}" -DCMAKE_BUILD_TYPE=Release -DSKV_CUDA=ON \
    -DSKV_BENCH=OFF -DSKV_TESTS=ON
  step build 330 cmake --build "$BUILD" -j "$JOBS" --target shadowkv skv_dump_logits
fi
[ -x "$DUMP" ] || DUMP=$(find "$BUILD" -name skv_dump_logits -type f -perm -u+x 2>/dev/null | head -1)
[ -n "$DUMP" ] || DUMP="$BUILD/tests/reference/skv_dump_logits"

LLAMA_DIR="$WORK/llama31_8b/model"
{
  echo "plan (estimates, one H100/H200; ${BUDGET_S}s budget, $(left)s left after the build; priority: llama, bench, others):"
  "$PY" "$HERE/compare_hf.py" --plan --lengths "$LENGTHS" --greedy-lengths "$GREEDY_LENGTHS" \
    --f32-lengths "$F32_LENGTHS" 2>&1 | sed 's/^/  /'
  echo "  bench: ~90 s (PyTorch load ~20, prefill ~10, decode ~20; shadowkv bench ~40); ${BENCH_S}s kept for it"
} | tee "$LOGS/plan.txt"
if want llama; then
  l=$(left)
  lim=$((l - 20))
  want bench && lim=$((l - BENCH_S - 10))
  [ "$lim" -gt 360 ] && lim=360
  step compare_llama "$lim" "$PY" "$HERE/compare_hf.py" --models llama31_8b --lengths "$LENGTHS" \
    --greedy-lengths "$GREEDY_LENGTHS" --f32-lengths "$F32_LENGTHS" --shadowkv "$SKV" --dump-logits "$DUMP" \
    --work "$WORK" --keep llama31_8b --deadline $(($(date +%s) + lim - 15)) --json-out "$JSONL"
fi
if want bench; then
  l=$(left)
  lim=$((l - 15)); [ "$lim" -gt 200 ] && lim=200
  want others && [ "$lim" -gt 150 ] && lim=150
  step bench "$lim" "$PY" "$HERE/bench_torch.py" --model-dir "$LLAMA_DIR" --config llama31_8b --shadowkv "$SKV" \
    --contexts "$BENCH_CONTEXTS" --batch "$BATCHES" --steps 20 --deadline $(($(date +%s) + lim - 10)) \
    --md "$OUT/torch_vs_shadowkv.md"
fi
rm -rf "$WORK/llama31_8b"
if want others; then
  l=$(left)
  step compare_others "$((l - 15))" "$PY" "$HERE/compare_hf.py" --models qwen2_7b,mistral_7b --lengths "$LENGTHS" \
    --greedy-lengths "$GREEDY_LENGTHS" --f32-lengths "$F32_LENGTHS" --shadowkv "$SKV" --dump-logits "$DUMP" \
    --work "$WORK" --deadline $((END - 30)) --json-out "$JSONL"
fi
rm -rf "$WORK"

{
  echo "==== SUMMARY ($(($(date +%s) - START))s of a ${BUDGET_S}s budget)"
  cat "$LOGS/plan.txt" 2>/dev/null
  awk '{split($2, r, "="); printf "%-16s %s\n", $1, (r[2] == "0" ? "ok" : "FAILED/SKIPPED (" substr($0, index($0, $2)) ")")}' "$LOGS/steps.txt"
  grep -m1 -E "torch .* transformers" "$LOGS/machine.txt"
  grep -m1 -E "H100|H200" "$LOGS/machine.txt"
  grep -hE "error" "$LOGS/build.log" 2>/dev/null | head -5
  "$PY" "$HERE/compare_hf.py" --summarize "$JSONL" 2>&1 || /usr/bin/python3 "$HERE/compare_hf.py" --summarize "$JSONL"
  echo
  grep -E "^\||^- device" "$OUT/torch_vs_shadowkv.md" 2>/dev/null
} | tee "$LOGS/summary.txt"
cp "$LOGS/summary.txt" "$OUT/summary.txt"
FAILED=$(grep -E " rc=" "$LOGS/steps.txt" | grep -cvE " rc=0 ")
tar -C "$LOGS" -czf "$OUT/hf-compare-logs.tar.gz" . 2>/dev/null
rm -rf "$LOGS"
[ "${FAILED:-0}" -gt 0 ] && exit 1
exit 0
