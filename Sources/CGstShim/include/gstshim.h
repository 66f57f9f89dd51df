#ifndef OCDEDIT_GSTSHIM_H
#define OCDEDIT_GSTSHIM_H
/* static inline wrappers for GStreamer/GLib function-like macros that Swift cannot import. */
#include <gst/gst.h>
#include <gst/base/gstaggregator.h>
#include <gst/video/video.h>
#endif
