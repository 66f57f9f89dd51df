#!/usr/bin/env bash
# The main job: ocdedit recolours a moving object with the bundled trained model (Models/shapes-sd).
# Input: Pipelines/demo-clip, a shapes-world clip (16 PNG frames of a red circle moving over a panning textured
# background, made by `python3 Models/shapes-sd/train/world.py --seed 108 --clips 1 --max-objects 1 --png`) and
# the circle's mask on the element's `mask` pad. Output: the edited frames as PNG, a WebM clip, and strip.png
# (input | mask | output, frames 0, 5, 10, 15) made by GStreamer's compositor.
#   Pipelines/demo.sh [OUTDIR] [extra ocdedit properties...]
#   e.g. Pipelines/demo.sh out/demo mode=baseline
#        Pipelines/demo.sh out/demo-flow mode=tokenflow keyframe-interval=4
#        Pipelines/demo.sh out/demo-reuse mode=baseline attention-reuse=1 guidance-scale=7.5
#        Pipelines/demo.sh out/demo-nocache deep-cache-interval=1   (every edit step runs the whole UNet)
#        Pipelines/demo.sh out/demo-ddpm inversion=ddpm   (edit-friendly DDPM noise maps instead of DDIM inversion)
#        Pipelines/demo.sh out/demo-whole joint-margin=-1 decode-margin=2   (joint steps and decode as before)
#        Pipelines/demo.sh out/demo-fast deep-cache-inversion=true guidance-share=0.75 deep-cache-branch=0
#          (the three opt-in step savings together: 4.27x at equal steps, weaker edits; Benchmarks/RESULTS.md)
#        PROMPT="a green circle on a brown textured background" Pipelines/demo.sh out/demo-green
# MODEL may name any diffusers-layout SD 1.x folder; CLIP a folder with frames/%04d.png and masks/%04d.png.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$root/out/demo}"; shift || true
model="${MODEL:-$root/Models/shapes-sd}"
clip="${CLIP:-$root/Pipelines/demo-clip}"
source_prompt="${SOURCE_PROMPT:-a red circle on a brown textured background}"
prompt="${PROMPT:-a yellow circle on a brown textured background}"
frames=$(ls "$clip"/frames/*.png | wc -l)
export GST_PLUGIN_PATH="$root/Plugin/lib${GST_PLUGIN_PATH:+:$GST_PLUGIN_PATH}"
export GST_REGISTRY="${GST_REGISTRY:-$root/out/gst-registry.bin}"
mkdir -p "$out"
rm -f "$out"/frame-*.png "$out"/strip.png
png_frames() {  # multifilesrc over a PNG sequence at 8 fps, decoded to the given raw format
  echo "multifilesrc location=$1 index=0 stop-index=$((frames - 1)) caps=image/png,framerate=8/1 ! pngdec" \
       "! videoconvert ! video/x-raw,format=$2"
}
# shellcheck disable=SC2046
gst-launch-1.0 -e \
  $(png_frames "$clip/frames/%04d.png" RGB) \
  ! ocdedit name=e window-size=8 model="$model" prompt="$prompt" source-prompt="$source_prompt" \
      processing-size=128 "$@" \
  ! tee name=t \
  t. ! queue ! videoconvert ! pngenc ! multifilesink location="$out/frame-%03d.png" \
  t. ! queue ! videoconvert ! vp8enc deadline=1 ! webmmux ! filesink location="$out/demo.webm" \
  $(png_frames "$clip/masks/%04d.png" GRAY8) ! e.mask
n=$(ls "$out"/frame-*.png | wc -l)
echo "demo: wrote $n frames to $out (frame-NNN.png, demo.webm)"
[ "$n" -eq "$frames" ]

# strip.png: one row per shown frame, input | mask | output, 128 px tiles.
tiles=()
row=0
for f in 0 5 10 15; do
  [ "$f" -lt "$frames" ] || continue
  for col in 0 1 2; do
    case $col in
      0) src="$clip/frames/$(printf %04d "$f").png" ;;
      1) src="$clip/masks/$(printf %04d "$f").png" ;;
      2) src="$out/frame-$(printf %03d "$f").png" ;;
    esac
    tiles+=("filesrc location=$src ! pngdec ! videoconvert ! video/x-raw,format=RGBA ! imagefreeze num-buffers=1"
            "! c.sink_$((row * 3 + col))")
  done
  row=$((row + 1))
done
pads=()
for i in $(seq 0 $((row * 3 - 1))); do
  pads+=("sink_$i::xpos=$(( (i % 3) * 132 ))" "sink_$i::ypos=$(( (i / 3) * 132 ))")
done
# shellcheck disable=SC2068
gst-launch-1.0 -q compositor name=c background=white ${pads[@]} \
  ! "video/x-raw,width=$((3 * 132 - 4)),height=$((row * 132 - 4))" ! videoconvert ! pngenc \
  ! filesink location="$out/strip.png" ${tiles[@]}
echo "demo: $out/strip.png (input | mask | output)"
