#ifndef TOPIARY_KERNELS_H
#define TOPIARY_KERNELS_H
#include <stddef.h>
#include <stdint.h>
/* Element-wise and row-wise fp32 kernels (vectorised by the C compiler). Implemented in kernels.c. */
float tk_sum(const float *x, long n);
#endif
