#!/usr/bin/env bash
# CPU smoke test of the whole pipeline at a tiny size (~1.5 min on 2 cores, Debian's python3-torch):
# unit tests, fresh run, resume from its checkpoint with data workers, export, eval, a two-run chain, a run on two
# processes, C++ loader check.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY="${PYTHON:-/usr/bin/python3}"
D="${SMOKE_DIR:-/tmp/testbed-smoke}"
rm -rf "$D"; mkdir -p "$D/ckpt"
"$PY" tools/testbed/test_tasks.py | tail -1
"$PY" tools/testbed/train.py --preset smoke --out "$D/run1" --ckpt-dir "$D/none" \
  --train-budget 30 --total-budget 90 --eval-reserve 20 | tail -12
cp "$D/run1/checkpoint/ckpt.pt" "$D/ckpt/"
"$PY" tools/testbed/train.py --preset smoke --out "$D/run2" --ckpt-dir "$D/ckpt" --workers 2 \
  --train-budget 15 --total-budget 60 --eval-reserve 10 | grep -E "resuming|training done|SUMMARY"
# The chain: its first run from scratch, its second resumed (config smoke.train.chains.scratch).
"$PY" tools/testbed/train.py --preset smoke --chain scratch --out "$D/chain1" --ckpt-dir "$D/none" \
  --train-budget 10 --total-budget 60 --eval-reserve 20 | grep -E "chain|training done"
mkdir -p "$D/chain-ckpt" && cp "$D/chain1/checkpoint/ckpt.pt" "$D/chain-ckpt/"
"$PY" tools/testbed/train.py --preset smoke --chain scratch --out "$D/chain2" --ckpt-dir "$D/chain-ckpt" \
  --train-budget 10 --total-budget 60 --eval-reserve 20 | grep -E "chain|training run|training done"
# Two processes, as torchrun starts them on a GPU host (launched by hand: Debian's torchrun fails under Python
# 3.11; gloo on the CPU): a fresh chain run, the tokenizer handed from rank 0, gradients averaged, weights checked
# equal at the end (train.py exits otherwise).
pids=()
port=$(( 29500 + RANDOM % 2000 ))
for r in 0 1; do
  MASTER_ADDR=127.0.0.1 MASTER_PORT=$port WORLD_SIZE=2 RANK=$r LOCAL_RANK=$r \
    "$PY" tools/testbed/train.py --preset smoke --chain scratch --out "$D/ddp" --ckpt-dir "$D/none" --skip-eval \
    --train-budget 16 --total-budget 60 --eval-reserve 10 > "$D/ddp-$r.log" 2>&1 &
  pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid" || { tail -5 "$D"/ddp-*.log; exit 1; }; done
grep -E "training run|training done" "$D/ddp-0.log"
for exe in build-cli/tools/shadowkv build/tools/shadowkv; do
  if [ -x "$exe" ]; then "$exe" info --model "$D/run2/model" | head -6; break; fi
done
echo "smoke: OK"
