#!/usr/bin/env bash
# Mask from a PNG sequence: a video file in, its mask as numbered PNG frames (any colour: converted to GRAY8, 0 keeps a
# pixel, 255 edits it) on the element's mask pad, the edited video out (VP8/WebM). Masks are matched to frames by
# running time, so the PNG sequence plays at the video's rate (MASK_FPS) from time 0.
#   Pipelines/mask-from-png.sh [OUTDIR] [extra ocdedit properties...]
#   e.g. INPUT=my.mp4 MASKS='my-masks/%05d.png' MASK_FPS=30000/1001 PROMPT="a red car" SOURCE_PROMPT="a car" \
#          Pipelines/mask-from-png.sh out/car
#        MODEL=Tests/Fixtures/tiny-sd1 Pipelines/mask-from-png.sh out/masks steps=2 processing-size=64
# MASKS is a printf pattern of the PNG files (default: the demo clip's, Pipelines/demo-clip/masks/%04d.png), read from
# MASK_START (default 0) to the last consecutive file. Without INPUT, the demo clip's frames are first encoded to
# OUTDIR/input.webm. MODEL, PROMPT, SOURCE_PROMPT and WINDOW (window-size, default 8) as in file-to-file.sh (which
# takes the mask as a second video). Output: OUTDIR/edited.webm.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$root/out/mask-from-png}"; shift || true
model="${MODEL:-$root/Models/shapes-sd}"
source_prompt="${SOURCE_PROMPT:-a red circle on a brown textured background}"
prompt="${PROMPT:-a yellow circle on a brown textured background}"
window="${WINDOW:-8}"
masks="${MASKS:-$root/Pipelines/demo-clip/masks/%04d.png}"
mask_start="${MASK_START:-0}"
mask_fps="${MASK_FPS:-8/1}"
export GST_PLUGIN_PATH="$root/Plugin/lib${GST_PLUGIN_PATH:+:$GST_PLUGIN_PATH}"
export GST_REGISTRY="${GST_REGISTRY:-$root/out/gst-registry.bin}"
mkdir -p "$out"
rm -f "$out/edited.webm"

input="${INPUT:-}"
if [ -z "$input" ]; then
  clip="$root/Pipelines/demo-clip"
  frames=$(ls "$clip"/frames/*.png | wc -l)
  gst-launch-1.0 -q multifilesrc location="$clip/frames/%04d.png" index=0 stop-index=$((frames - 1)) \
    caps=image/png,framerate=8/1 ! pngdec ! videoconvert ! vp8enc deadline=1 end-usage=cq cq-level=4 \
    target-bitrate=20000000 ! webmmux ! filesink location="$out/input.webm"
  input="$out/input.webm"
fi
# The last mask: multifilesrc stops at stop-index (without one it would fail at the first missing file).
last=$mask_start
# shellcheck disable=SC2059
while [ -f "$(printf "$masks" $((last + 1)))" ]; do last=$((last + 1)); done
# shellcheck disable=SC2059
[ -f "$(printf "$masks" "$mask_start")" ] || { echo "mask-from-png: no $(printf "$masks" "$mask_start")" >&2; exit 1; }

gst-launch-1.0 -m \
  filesrc location="$input" ! decodebin ! videoconvert ! video/x-raw,format=RGB \
  ! ocdedit name=e window-size="$window" model="$model" prompt="$prompt" source-prompt="$source_prompt" \
      processing-size=128 "$@" \
  ! videoconvert ! vp8enc deadline=1 end-usage=cq cq-level=10 target-bitrate=20000000 ! webmmux \
  ! filesink location="$out/edited.webm" \
  multifilesrc location="$masks" index="$mask_start" stop-index="$last" caps="image/png,framerate=$mask_fps" \
  ! pngdec ! videoconvert ! video/x-raw,format=GRAY8 ! e.mask \
  | sed -n -u -e 's/^Got message .*(element): progress, \(.*\);$/window progress: \1/p' \
      -e '/^Progress: \|^ERROR\|^WARNING\|^Additional debug info\|^EOS/p'
echo "mask-from-png: $((last - mask_start + 1)) masks; wrote $out/edited.webm"
