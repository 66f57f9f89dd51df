#!/usr/bin/env bash
# File to file: a video and its mask video in, the edited video out (VP8/WebM), with the element's progress shown
# from its bus messages: the model load (PROGRESS, code `loading`) and one `progress` message per window. This is
# the pipeline `ocdedit edit` builds for you (README, "Edit your own file"); here it is spelled out to adapt.
#   Pipelines/file-to-file.sh [OUTDIR] [extra ocdedit properties...]
#   e.g. INPUT=my.mp4 MASK=my-mask.mp4 PROMPT="a red car" SOURCE_PROMPT="a car" Pipelines/file-to-file.sh out/car
#        MODEL=Tests/Fixtures/tiny-sd1 Pipelines/file-to-file.sh out/f2f steps=2 processing-size=64
# Without INPUT, the demo clip (Pipelines/demo-clip) is first encoded to OUTDIR/input.webm and its masks to
# OUTDIR/mask.webm, as a file of your own would come. MASK is optional with INPUT (no mask: the whole frame is
# edited; mode=blended finds the area itself). MODEL, PROMPT, SOURCE_PROMPT and WINDOW (window-size, default 8)
# change the model folder, the prompts and the window. Output: OUTDIR/edited.webm.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$root/out/file-to-file}"; shift || true
model="${MODEL:-$root/Models/shapes-sd}"
source_prompt="${SOURCE_PROMPT:-a red circle on a brown textured background}"
prompt="${PROMPT:-a yellow circle on a brown textured background}"
window="${WINDOW:-8}"
export GST_PLUGIN_PATH="$root/Plugin/lib${GST_PLUGIN_PATH:+:$GST_PLUGIN_PATH}"
export GST_REGISTRY="${GST_REGISTRY:-$root/out/gst-registry.bin}"
mkdir -p "$out"
rm -f "$out/edited.webm"

input="${INPUT:-}"
mask="${MASK:-}"
if [ -z "$input" ]; then
  clip="$root/Pipelines/demo-clip"
  frames=$(ls "$clip"/frames/*.png | wc -l)
  for part in frames masks; do
    gst-launch-1.0 -q multifilesrc location="$clip/$part/%04d.png" index=0 stop-index=$((frames - 1)) \
      caps=image/png,framerate=8/1 ! pngdec ! videoconvert ! vp8enc deadline=1 end-usage=cq cq-level=4 \
      target-bitrate=20000000 ! webmmux ! filesink location="$out/$part.webm"
  done
  mv "$out/frames.webm" "$out/input.webm"
  mv "$out/masks.webm" "$out/mask.webm"
  input="$out/input.webm"
  mask="$out/mask.webm"
fi

mask_branch=()
if [ -n "$mask" ]; then
  mask_branch=(filesrc location="$mask" ! decodebin ! videoconvert ! video/x-raw,format=GRAY8 ! e.mask)
fi
# gst-launch-1.0 -m prints every bus message; sed keeps the model load, the windows and any error or warning.
gst-launch-1.0 -m \
  filesrc location="$input" ! decodebin ! videoconvert ! video/x-raw,format=RGB \
  ! ocdedit name=e window-size="$window" model="$model" prompt="$prompt" source-prompt="$source_prompt" \
      processing-size=128 "$@" \
  ! videoconvert ! vp8enc deadline=1 end-usage=cq cq-level=10 target-bitrate=20000000 ! webmmux \
  ! filesink location="$out/edited.webm" \
  "${mask_branch[@]}" \
  | sed -n -u -e 's/^Got message .*(element): progress, \(.*\);$/window progress: \1/p' \
      -e '/^Progress: \|^ERROR\|^WARNING\|^Additional debug info\|^EOS/p'
if command -v gst-discoverer-1.0 >/dev/null; then
  echo "input:  $(gst-discoverer-1.0 "$input" | grep -m1 Duration)"
  echo "edited: $(gst-discoverer-1.0 "$out/edited.webm" | grep -m1 Duration)"
fi
echo "file-to-file: wrote $out/edited.webm"
