#ifndef OCDEDIT_CGSTREAMER_H
#define OCDEDIT_CGSTREAMER_H
#include <gst/gst.h>
#include <gst/base/gstaggregator.h>
#include <gst/video/video.h>
#endif
