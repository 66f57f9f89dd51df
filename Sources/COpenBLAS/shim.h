#ifndef OCDEDIT_COPENBLAS_H
#define OCDEDIT_COPENBLAS_H
#include <cblas.h>
/* Declared by OpenBLAS; used to pin its thread count next to our own Dispatch threads. */
void openblas_set_num_threads(int num_threads);
int openblas_get_num_threads(void);
#endif
