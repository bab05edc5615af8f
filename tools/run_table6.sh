#!/usr/bin/env bash
# Trains and evaluates the runs of the paper's Table 6 ablation (docs/results.md).
# usage: tools/run_table6.sh [RUN ...]   (default: all ten, configs in tools/configs/table6/)
#        CONFIGS=tools/configs/long RUNS_DIR=build-data/runs/long tools/run_table6.sh martinez_sh
# (each config's out_dir must be RUNS_DIR/RUN).
# Needs build-cpu/dofpose and the imported dataset (build-data/h36m, see docs/data.md).
# A run that was interrupted resumes from its last checkpoint; a finished run is only re-evaluated.
# Last, RUNS_DIR/curves_sh.svg and curves_gt.svg: the validation curves of the runs there
# (tools/plot_runs.py).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${DOFPOSE_BIN:-./build-cpu/dofpose}
DATA=${H36M_DIR:-../shared/data/h36m}
CONFIGS=${CONFIGS:-tools/configs/table6}
RUNS_DIR=${RUNS_DIR:-build-data/runs/table6}
RUNS=("$@")
if [ ${#RUNS[@]} -eq 0 ]; then
  RUNS=(progressive_attr_gt_sh progressive_sh two_block_sh progressive_attr_noisy_sh
        martinez_gt two_block_gt progressive_gt progressive_attr_gt_gt progressive_attr_noisy_gt
        martinez_sh)
fi
for run in "${RUNS[@]}"; do
  cfg=$CONFIGS/$run.json
  [ -f "$cfg" ] || { echo "run_table6: no config $cfg" >&2; exit 2; }
  out=$RUNS_DIR/$run
  input=${run##*_}
  case $run in
    *attr_gt*) attrs=gt ;;
    *attr_noisy*) attrs=noisy:0.84 ;;
    *) attrs=none ;;
  esac
  mkdir -p "$out"
  if [ ! -f "$out/model.safetensors" ]; then
    resume=()
    [ -f "$out/checkpoint.safetensors" ] && resume=(--resume)
    start=$(date +%s)
    "$BIN" train --config "$cfg" "${resume[@]}" 2> "$out/train.progress" | tee "$out/train.txt"
    echo "$(( $(date +%s) - start ))" > "$out/train_seconds"
  fi
  "$BIN" eval --model "$out/model.safetensors" --data "$DATA" --subjects S9 --input "$input" \
      --attributes "$attrs" --quiet > "$out/eval_S9.txt"
  "$BIN" eval --model "$out/model.safetensors" --data "$DATA" --subjects S9 --input "$input" \
      --attributes "$attrs" --quiet --json > "$out/eval_S9.json"
  echo "== $run: $(grep -m1 -i average "$out/eval_S9.txt" || true)"
done
for input in sh gt; do
  logs=()
  for d in "$RUNS_DIR"/*_"$input"; do [ -f "$d/log.csv" ] && logs+=("$d"); done
  [ ${#logs[@]} -eq 0 ] && continue
  "${PYTHON:-python3}" tools/plot_runs.py "${logs[@]}" --out "$RUNS_DIR/curves_$input.svg" \
      --title "S9 validation MPJPE per epoch, $input input" || echo "run_table6: no curves ($input)" >&2
done
