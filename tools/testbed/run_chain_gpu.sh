#!/usr/bin/env bash
# The next CHAIN_RUNS runs of chain $CHAIN (config "chains") on every GPU here, through run_gpu.sh, with $OUT
# kept to what the device tool brings back (at most 8 files): the training log, the training script's
# evaluation, the checkpoint, the engine eval's raw runs, and the exported model only with KEEP_MODEL=1.
# Prints the tables and the log's key lines. Run with `.testbed` carried (data + the chain's checkpoint):
#   CHAIN=road CHAIN_RUNS=2 ENGINE_EVAL=0 bash tools/testbed/run_chain_gpu.sh       (two runs, no engine eval)
#   CHAIN=road TRAIN_BUDGET=450 ENGINE_SAMPLES=12 ENGINE_TIMEOUT=240 KEEP_MODEL=1 bash tools/testbed/run_chain_gpu.sh
# then copy $OUT/checkpoint/ckpt.pt into .testbed/checkpoint/ for the next run.
set -uo pipefail
cd "$(dirname "$0")/../.."
export OUT="${OUT:-$PWD/.testbed/out}"
mkdir -p "$OUT"
nvidia-smi --query-gpu=name --format=csv,noheader | sort | uniq -c
export PYTHONUNBUFFERED=1
bash tools/testbed/run_gpu.sh > "$OUT/run_gpu.txt" 2>&1; echo "run_gpu rc $?"
[ "${KEEP_MODEL:-0}" = 1 ] || rm -rf "$OUT/model"
grep -E "^\|" "$OUT/run_gpu.txt" | head -14
grep -E "training run|quick eval|training done|SUMMARY|chain " "$OUT/train_log.txt" | cut -c1-330
tail -3 "$OUT/run_gpu.txt" | cut -c1-300
[ -f "$OUT/engine_eval.txt" ] && grep -v "^eval \[" "$OUT/engine_eval.txt" | head -45
# at most 8 files come back: with the model (4 files) drop the two text files whose content is printed above
[ "${KEEP_MODEL:-0}" = 1 ] && rm -f "$OUT/run_gpu.txt" "$OUT/engine_eval.txt"
ls -R "$OUT" | head -20
