#!/usr/bin/env bash
# Live preview: a live source through ocdedit in live mode to a display. The element answers the latency query
# with the window plus a processing budget (processing-latency); a window whose edit would miss that deadline is
# passed through (late-policy) and reported as a QoS message, so the picture never stalls however slow the model.
# Ctrl-C ends it cleanly (-e: EOS, which in live mode cancels the running edit and pushes what is owed).
#   Pipelines/live-preview.sh [extra ocdedit properties...]
#   e.g. Pipelines/live-preview.sh                                   # test pattern, Models/shapes-sd, a window
#        DEVICE=/dev/video0 PROMPT="a person in a red jacket" MODEL=/models/sd15 Pipelines/live-preview.sh \
#          processing-size=256 processing-latency=30000 late-policy=last-edited
#        HEADLESS=1 FRAMES=100 MODEL=Tests/Fixtures/tiny-sd1 Pipelines/live-preview.sh steps=200 processing-size=64
# DEVICE: a V4L2 camera (default: videotestsrc is-live=true, a moving ball); WIDTH×HEIGHT (default 128×128) and FPS
# (default 25/1, test source only) the frames edited; FRAMES stops after that many (default: until Ctrl-C);
# HEADLESS=1, or no DISPLAY/WAYLAND_DISPLAY, renders to fakesink (synced to the clock, as a display would be)
# instead of autovideosink. MODEL, PROMPT, SOURCE_PROMPT, WINDOW (default 4) and BUDGET (processing-latency in ms,
# default 1000) as in the other scripts. No mask is linked: the whole frame is edited (link one as in
# file-to-file.sh, from a live source, to edit an object).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
model="${MODEL:-$root/Models/shapes-sd}"
source_prompt="${SOURCE_PROMPT:-a red circle on a brown textured background}"
prompt="${PROMPT:-a yellow circle on a brown textured background}"
window="${WINDOW:-4}"
budget="${BUDGET:-1000}"
width="${WIDTH:-128}"
height="${HEIGHT:-128}"
fps="${FPS:-25/1}"
export GST_PLUGIN_PATH="$root/Plugin/lib${GST_PLUGIN_PATH:+:$GST_PLUGIN_PATH}"
export GST_REGISTRY="${GST_REGISTRY:-$root/out/gst-registry.bin}"
frames=()
[ -n "${FRAMES:-}" ] && frames=(num-buffers="$FRAMES")
if [ -n "${DEVICE:-}" ]; then
  source=(v4l2src device="$DEVICE" "${frames[@]}" ! videoconvert ! videoscale
          ! "video/x-raw,format=RGB,width=$width,height=$height")
else
  source=(videotestsrc is-live=true pattern=ball "${frames[@]}"
          ! "video/x-raw,format=RGB,width=$width,height=$height,framerate=$fps")
fi
if [ -n "${HEADLESS:-}" ] || [ -z "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ]; then
  sink=(fakesink sync=true)
else
  sink=(videoconvert ! autovideosink)
fi
# -m prints every bus message; sed keeps the windows, the late ones (QoS) and any error or warning.
gst-launch-1.0 -e -m \
  "${source[@]}" \
  ! ocdedit name=e window-size="$window" model="$model" prompt="$prompt" source-prompt="$source_prompt" \
      processing-size=128 processing-latency="$budget" "$@" \
  ! "${sink[@]}" \
  | sed -n -u -e 's/^Got message .*(element): progress, \(.*\);$/window progress: \1/p' \
      -e 's/^Got message .*(qos): GstMessageQOS, \(.*\);$/late window: \1/p' \
      -e '/^Progress: \|^ERROR\|^WARNING\|^Additional debug info\|^EOS/p'
