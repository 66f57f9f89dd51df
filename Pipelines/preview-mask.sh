#!/usr/bin/env bash
# Checks mask alignment at full speed: tints the masked area (preview-mask=true) of a generated clip and writes PNGs.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$root/out/preview}"
export GST_PLUGIN_PATH="$root/Plugin/lib${GST_PLUGIN_PATH:+:$GST_PLUGIN_PATH}"
mkdir -p "$out"
gst-launch-1.0 -e \
  videotestsrc num-buffers=25 ! video/x-raw,format=I420,width=320,height=240,framerate=25/1 \
  ! ocdedit name=e preview-mask=true ! videoconvert ! pngenc ! multifilesink location="$out/frame-%03d.png" \
  videotestsrc pattern=ball num-buffers=25 ! video/x-raw,format=GRAY8,width=160,height=120,framerate=25/1 ! e.mask
echo "preview: wrote $(ls "$out"/frame-*.png | wc -l) frames to $out"
