#!/usr/bin/env bash
# Side-by-side preview, headless: the input (left) and ocdedit's edit (right) in one picture per frame. A tee feeds
# both sides of a compositor; ocdedit holds a whole window before its first frame leaves, so the queue on the other
# branch must buffer at least a window's duration (README, "Tees and windows"): it is sized from WINDOW here.
# Input: the demo clip (Pipelines/demo-clip: frames and the moving circle's mask); output: OUTDIR/side-NNN.png.
#   Pipelines/side-by-side.sh [OUTDIR] [extra ocdedit properties...]
#   e.g. MODEL=Tests/Fixtures/tiny-sd1 Pipelines/side-by-side.sh out/side steps=2 processing-size=64
# MODEL, CLIP, PROMPT, SOURCE_PROMPT and WINDOW (window-size, default 8) change the model folder, the input clip,
# the prompts and the window.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$root/out/side-by-side}"; shift || true
model="${MODEL:-$root/Models/shapes-sd}"
clip="${CLIP:-$root/Pipelines/demo-clip}"
source_prompt="${SOURCE_PROMPT:-a red circle on a brown textured background}"
prompt="${PROMPT:-a yellow circle on a brown textured background}"
window="${WINDOW:-8}"
fps=8
frames=$(ls "$clip"/frames/*.png | wc -l)
width=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['width'])" "$clip/clip.json")
export GST_PLUGIN_PATH="$root/Plugin/lib${GST_PLUGIN_PATH:+:$GST_PLUGIN_PATH}"
export GST_REGISTRY="${GST_REGISTRY:-$root/out/gst-registry.bin}"
mkdir -p "$out"
rm -f "$out"/side-*.png
png_frames() {  # multifilesrc over a PNG sequence at $fps, decoded to the given raw format
  echo "multifilesrc location=$1 index=0 stop-index=$((frames - 1)) caps=image/png,framerate=$fps/1 ! pngdec" \
       "! videoconvert ! video/x-raw,format=$2"
}
# The input branch's queue: a window and two frames more, in time and buffers (bytes unbounded).
frame_ns=$((1000000000 / fps))
input_queue="queue max-size-time=$(((window + 2) * frame_ns)) max-size-buffers=$((window + 2)) max-size-bytes=0"
# shellcheck disable=SC2046
gst-launch-1.0 -q \
  $(png_frames "$clip/frames/%04d.png" RGB) ! tee name=t \
  t. ! queue ! ocdedit name=e window-size="$window" model="$model" prompt="$prompt" \
      source-prompt="$source_prompt" processing-size=128 "$@" ! c.sink_1 \
  t. ! $input_queue ! c.sink_0 \
  compositor name=c sink_1::xpos="$width" ! videoconvert ! pngenc ! multifilesink location="$out/side-%03d.png" \
  $(png_frames "$clip/masks/%04d.png" GRAY8) ! e.mask
n=$(ls "$out"/side-*.png | wc -l)
echo "side-by-side: wrote $n frames to $out (side-NNN.png: input | edit)"
[ "$n" -eq "$frames" ]
