#ifndef OCDEDIT_CGSTAPP_H
#define OCDEDIT_CGSTAPP_H
/* appsrc/appsink, used by the element tests only. */
#include <gst/app/app.h>
#endif
