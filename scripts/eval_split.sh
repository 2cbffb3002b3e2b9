#!/usr/bin/env bash
# Runs one `shadowkv eval` as several processes, one per task, and merges their results: the CPU backend's long
# evaluations spread over a many-core machine, each task resumable on its own. Arguments are those of
# `shadowkv eval`; --tasks (a list, not "all") and --out are required. Each task runs with THREADS OpenMP
# threads (default: cores / tasks, at least 1) and writes OUT.<task>.jsonl and OUT.<task>.txt (its table and
# any --report output); at the end every result line goes to OUT (settings once; runs already in OUT are kept,
# so a rerun resumes each task where it stopped), and the merged table is printed by `shadowkv eval --out OUT`
# with nothing left to run.
#   scripts/eval_split.sh --model models/testbed --tasks niah_single_1,vt --context 32k --samples 8 \
#     --attention shadowkv --sparse-budget 512 --rank 64 --report --out results.jsonl
# SHADOWKV: the binary (default build/shadowkv). OPENBLAS_NUM_THREADS defaults to 1 (a pthread OpenBLAS would
# otherwise spin its own workers against every process's OpenMP threads).
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${SHADOWKV:-$ROOT/build/shadowkv}
# --tasks and --out are read here; every other argument goes to each task's eval (base).
args=("$@") tasks="" out="" base=()
for ((i = 0; i < ${#args[@]}; ++i)); do
  case "${args[i]}" in
    --tasks) tasks=${args[i + 1]:-}; ((++i)) ;;
    --tasks=*) tasks=${args[i]#--tasks=} ;;
    --out) out=${args[i + 1]:-}; ((++i)) ;;
    --out=*) out=${args[i]#--out=} ;;
    -h | --help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
    *) base+=("${args[i]}") ;;
  esac
done
if [ -z "$tasks" ] || [ "$tasks" = all ] || [ -z "$out" ]; then
  echo "eval_split.sh: give --tasks as a comma-separated list and --out (see --help)" >&2
  exit 2
fi
[ -x "$BIN" ] || { echo "eval_split.sh: no binary at $BIN (build it, or set SHADOWKV)" >&2; exit 2; }
IFS=, read -r -a task_list <<< "$tasks"
n=${#task_list[@]}
threads=${THREADS:-$(( $(nproc) / n ))}
(( threads < 1 )) && threads=1
echo "eval_split.sh: $n task(s), $threads thread(s) each, $(nproc) cores; parts beside $out" >&2
pids=()
for t in "${task_list[@]}"; do
  # A part that OUT already holds results of starts from them (the eval resumes on its own file).
  if [ -f "$out" ] && [ ! -f "$out.$t.jsonl" ]; then
    grep -E '"type":"settings"' "$out" > "$out.$t.jsonl"
    grep -E "\"task\":\"$t\"" "$out" >> "$out.$t.jsonl"
  fi
  OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1} OMP_WAIT_POLICY=passive \
    "$BIN" eval "${base[@]}" --tasks "$t" --out "$out.$t.jsonl" > "$out.$t.txt" 2> "$out.$t.log" &
  pids+=($!)
done
status=0
for i in "${!pids[@]}"; do
  if ! wait "${pids[i]}"; then
    echo "eval_split.sh: task ${task_list[i]} failed: $(tail -c 400 "$out.${task_list[i]}.log")" >&2
    status=1
  fi
done
# Merge: the settings lines first (each distinct one once: a part records only the settings its task uses, e.g.
# the haystack, and the eval reads several lines as one set), then every part's results (a part resumed from OUT
# repeats OUT's, so OUT is rebuilt, not appended to).
merged=$(mktemp)
parts=()
for t in "${task_list[@]}"; do [ -f "$out.$t.jsonl" ] && parts+=("$out.$t.jsonl"); done
[ -f "$out" ] && parts=("$out" "${parts[@]}")
cat "${parts[@]}" | grep -E '"type":"settings"' | awk '!seen[$0]++' > "$merged"
for t in "${task_list[@]}"; do
  [ -f "$out.$t.jsonl" ] && grep -vE '"type":"settings"' "$out.$t.jsonl" >> "$merged"
done
if [ -f "$out" ]; then  # keep OUT's results of tasks not run now
  pattern=$(printf '"task":"%s"|' "${task_list[@]}")
  grep -vE '"type":"settings"' "$out" | grep -vE "${pattern%|}" >> "$merged" || true
fi
mv "$merged" "$out"
if [ "$status" != 0 ]; then
  echo "eval_split.sh: results so far merged into $out; rerun the same command to resume" >&2
  exit $status
fi
# Every run is in OUT now, so this eval runs nothing: it prints the merged table (and drops --report).
report=()
for a in "${base[@]}"; do [ "$a" = --report ] || report+=("$a"); done
"$BIN" eval "${report[@]}" --tasks "$tasks" --out "$out"
