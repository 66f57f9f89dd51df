#ifndef OCDEDIT_GSTSHIM_H
#define OCDEDIT_GSTSHIM_H
/* static inline wrappers for GStreamer/GLib function-like macros that Swift cannot import. Nothing else. */
#include <gst/gst.h>
#include <gst/base/gstaggregator.h>
#include <gst/video/video.h>

static inline GType ocd_aggregator_pad_type(void) { return GST_TYPE_AGGREGATOR_PAD; }
static inline GType ocd_aggregator_type(void) { return GST_TYPE_AGGREGATOR; }

/* GST_ELEMENT_ERROR / GST_ELEMENT_WARNING: text is copied (the message takes ownership of a g_strdup). */
static inline void ocd_post_message(GstElement *element, GstMessageType type, GQuark domain, gint code,
                                    const gchar *text, const gchar *debug) {
  gst_element_message_full(element, type, domain, code, g_strdup(text), debug ? g_strdup(debug) : NULL,
                           __FILE__, "ocdedit", __LINE__);
}

static inline guint8 *ocd_video_frame_plane_data(GstVideoFrame *frame, guint plane) {
  return (guint8 *)GST_VIDEO_FRAME_PLANE_DATA(frame, plane);
}
static inline gint ocd_video_frame_plane_stride(GstVideoFrame *frame, guint plane) {
  return GST_VIDEO_FRAME_PLANE_STRIDE(frame, plane);
}
static inline GstVideoFormat ocd_video_info_format(const GstVideoInfo *info) { return GST_VIDEO_INFO_FORMAT(info); }

static inline gboolean ocd_pad_is_linked(GstPad *pad) { return GST_PAD_IS_LINKED(pad); }
static inline GstBuffer *ocd_buffer_copy_deep(GstBuffer *buffer) { return gst_buffer_copy_deep(buffer); }
#endif
