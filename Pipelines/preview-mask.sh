#!/usr/bin/env bash
# Checks mask alignment at full speed: tints the masked area (preview-mask=true: no model runs) of a generated clip
# (a 320×240 test pattern, its mask a moving ball at 160×120, scaled by the element) and writes PNGs.
#   Pipelines/preview-mask.sh [OUTDIR] [extra ocdedit properties...]
#   e.g. Pipelines/preview-mask.sh out/preview mask-threshold=200
# FRAMES (default 25) sets the clip's length. To check your own mask, put your video and mask sources in place of
# the two videotestsrc (as in file-to-file.sh or mask-from-png.sh) and keep preview-mask=true.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$root/out/preview}"; shift || true
frames="${FRAMES:-25}"
export GST_PLUGIN_PATH="$root/Plugin/lib${GST_PLUGIN_PATH:+:$GST_PLUGIN_PATH}"
export GST_REGISTRY="${GST_REGISTRY:-$root/out/gst-registry.bin}"
mkdir -p "$out"
rm -f "$out"/frame-*.png
gst-launch-1.0 -e \
  videotestsrc num-buffers="$frames" ! video/x-raw,format=I420,width=320,height=240,framerate=25/1 \
  ! ocdedit name=e preview-mask=true "$@" ! videoconvert ! pngenc ! multifilesink location="$out/frame-%03d.png" \
  videotestsrc pattern=ball num-buffers="$frames" ! video/x-raw,format=GRAY8,width=160,height=120,framerate=25/1 \
  ! e.mask
echo "preview: wrote $(ls "$out"/frame-*.png | wc -l) frames to $out"
