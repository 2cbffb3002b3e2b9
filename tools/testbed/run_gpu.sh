#!/usr/bin/env bash
# One training run of the testbed model on the GPU machine (<= ~9.5 min wall clock, all included):
#   bash tools/testbed/run_gpu.sh          (run with `.testbed` carried: the data, and a checkpoint if any)
# Resumes from .testbed/checkpoint/ckpt.pt when present, else trains the tokenizer and starts fresh.
# Trains ~7.5 min (hard budget inside train.py), then exports the HF directory and evaluates at
# 4K/8K/16K/32K on held-out haystacks. Everything lands in $OUT (see train.py's docstring).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT="${OUT:-$PWD/.testbed/out}"
mkdir -p "$OUT"
if [ ! -f .testbed/data/kjv.train.txt ]; then
  echo "missing .testbed/data (run tools/testbed/prepare_data.py on the dev machine and carry .testbed)" >&2
  exit 2
fi
PY="${PYTHON:-python3}"
"$PY" - <<'PYEOF' || true
import torch, sys
print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
for m in ("transformers", "tokenizers", "safetensors"):
    try:
        print(m, __import__(m).__version__)
    except Exception as e:
        print(m, "MISSING", e)
PYEOF
"$PY" tools/testbed/test_tasks.py > "$OUT/test_tasks.txt" 2>&1 || { tail -20 "$OUT/test_tasks.txt"; exit 3; }
rm -f "$OUT/test_tasks.txt"
# Resume from a checkpoint carried in .testbed/checkpoint, else from the one committed beside the model.
ckpt_dir=.testbed/checkpoint
if [ ! -f "$ckpt_dir/ckpt.pt" ] && [ -f models/testbed/checkpoint/ckpt.pt ]; then ckpt_dir=models/testbed/checkpoint; fi
exec "$PY" tools/testbed/train.py --out "$OUT" --preset gpu --ckpt-dir "$ckpt_dir" \
  --train-budget "${TRAIN_BUDGET:-450}" --total-budget "${TOTAL_BUDGET:-555}" --eval-reserve "${EVAL_RESERVE:-80}"
