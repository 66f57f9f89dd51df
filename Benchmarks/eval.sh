#!/usr/bin/env bash
# `make eval`: ocdedit eval in every mode on the committed evaluation clips with the bundled trained model, and the
# previous defaults (step caching every 3 steps and the whole frame in the joint steps; before them no step caching;
# before those 20 steps, guidance 2), the reference preset (FateZero's
# configuration: 50 + 50 steps, guidance 7.5, whole frame), the default modes without cross-frame attention, with
# the empty negative prompt and with attention-reuse, as one Markdown table (the README's quality table).
#   Benchmarks/eval.sh [extra eval options...]     e.g. Benchmarks/eval.sh --steps 10
# MODEL and CLIPS override the model folder and the clips folder (e.g. clips of a fresh seed:
#   python3 Models/shapes-sd/train/world.py --seed 99 --clips 6 --out /tmp/clips99 && CLIPS=/tmp/clips99 make eval).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
ocdedit="$root/.build/release/ocdedit"
model="${MODEL:-$root/Models/shapes-sd}"
clips="${CLIPS:-$root/Benchmarks/eval-clips}"
runs=(
  "ocd|--mode ocd"
  "baseline|--mode baseline"
  "ocd, the previous defaults (deep-cache-interval=3 joint-margin=-1 decode-margin=2)|--mode ocd
    --deep-cache-interval 3 --joint-margin -1 --decode-margin 2"
  "ocd, no step caching, whole-frame joint steps (deep-cache-interval=1 joint-margin=-1)|--mode ocd
    --deep-cache-interval 1 --joint-margin -1"
  "blended (no mask given)|--mode blended"
  "tokenflow|--mode tokenflow"
  "ocd, steps=20 guidance-scale=2 (older defaults)|--mode ocd --steps 20 --guidance-scale 2 --deep-cache-interval 1
    --joint-margin -1 --decode-margin 2"
  "baseline, steps=20 guidance-scale=2|--mode baseline --steps 20 --guidance-scale 2 --deep-cache-interval 1
    --decode-margin 2"
  "reference preset (FateZero's configuration)|--preset reference"
  "ocd, cross-frame=none|--mode ocd --cross-frame none"
  "baseline, cross-frame=none|--mode baseline --cross-frame none"
  "ocd, empty negative prompt|--mode ocd --negative-from-source false"
  "baseline, empty negative prompt|--mode baseline --negative-from-source false"
  "baseline, attention-reuse=1|--mode baseline --attention-reuse 1"
)
rows=()
for run in "${runs[@]}"; do
  name="${run%%|*}"
  # shellcheck disable=SC2206
  args=(${run#*|})   # word splitting also joins a run's continuation line
  echo "eval: $name" >&2
  json=$("$ocdedit" eval --model "$model" --clips "$clips" "${args[@]}" "$@" | tail -n 1)
  rows+=("$(python3 - "$name" "$json" <<'PY'
import json, sys
name, j = sys.argv[1], json.loads(sys.argv[2])
def f(key, digits):
    return "–" if j[key] is None else f"{j[key]:.{digits}f}"
cells = [name, f"{j['clips']} / {j['frames']}", f("edit_accuracy", 3), f("background_exact", 4), f("warp_error", 2),
         f("boundary_warp_error", 2), f("mask_iou", 3), f("psnr", 1), f("seconds", 1)]
print("| " + " | ".join(cells) + " |")
PY
)")
done
echo
echo "| run | clips / frames | edit accuracy | background exact | warp error | boundary warp error | mask IoU" \
     "| PSNR dB | seconds |"
echo "|---|---|---|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
