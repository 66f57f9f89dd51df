#ifndef OCDEDIT_CGSTPBUTILS_H
#define OCDEDIT_CGSTPBUTILS_H
/* GstDiscoverer, used by `ocdedit edit` to find an input's audio stream before building its pipeline. */
#include <gst/pbutils/pbutils.h>
#endif
