#!/usr/bin/env bash
# Runs ocdedit on generated video (videotestsrc) with a generated moving-disc mask (videotestsrc pattern=ball as
# GRAY8) and writes the edited frames as PNG files plus a WebM clip.
#   Pipelines/demo.sh [OUTDIR] [extra ocdedit properties...]
#   e.g. Pipelines/demo.sh out/demo mode=baseline inversion-iterations=3 blend-step=0.5 context-margin=1
#        Pipelines/demo.sh out/demo-flow mode=tokenflow keyframe-interval=4
#        Pipelines/demo.sh out/demo-blended mode=blended blend-threshold=0.9
# With the bundled tiny model (Models/tiny-sd, random weights) the edit is noise-like inside the disc: it shows the
# whole path (inversion, object-centric sampling, compositing) running, not a pretty picture. Point MODEL at a real
# Stable Diffusion 1.5 diffusers folder for a real edit.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$root/out/demo}"; shift || true
model="${MODEL:-$root/Models/tiny-sd}"
prompt="${PROMPT:-a red ball}"
frames="${FRAMES:-16}"
size="${SIZE:-width=128,height=96}"
export GST_PLUGIN_PATH="$root/Plugin/lib${GST_PLUGIN_PATH:+:$GST_PLUGIN_PATH}"
export GST_REGISTRY="${GST_REGISTRY:-$root/out/gst-registry.bin}"
mkdir -p "$out"
rm -f "$out"/frame-*.png
model_props=()
if [ -d "$model/unet" ]; then
  model_props=(model="$model" prompt="$prompt" source-prompt="a ball" processing-size=128 steps="${STEPS:-10}")
else
  echo "demo: no model at $model; showing the mask alignment with preview-mask=true" >&2
  model_props=(preview-mask=true)
fi
gst-launch-1.0 -e \
  videotestsrc num-buffers="$frames" pattern=smpte ! "video/x-raw,format=RGB,$size,framerate=8/1" \
  ! ocdedit name=e window-size=8 "${model_props[@]}" "$@" \
  ! tee name=t \
  t. ! queue ! videoconvert ! pngenc ! multifilesink location="$out/frame-%03d.png" \
  t. ! queue ! videoconvert ! vp8enc deadline=1 ! webmmux ! filesink location="$out/demo.webm" \
  videotestsrc pattern=ball num-buffers="$frames" ! "video/x-raw,format=GRAY8,width=64,height=48,framerate=8/1" ! e.mask
n=$(ls "$out"/frame-*.png | wc -l)
echo "demo: wrote $n frames to $out (frame-NNN.png, demo.webm)"
[ "$n" -eq "$frames" ]
