/* All shim functions are static inline in include/gstshim.h; this file only gives the target a translation unit. */
#include "gstshim.h"
