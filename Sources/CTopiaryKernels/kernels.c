#include "topiary_kernels.h"
float tk_sum(const float *x, long n) { double s = 0; for (long i = 0; i < n; i++) s += x[i]; return (float)s; }
