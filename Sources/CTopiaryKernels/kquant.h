#ifndef TOPIARY_KQUANT_H
#define TOPIARY_KQUANT_H
/* K-quant quantizers (kquant.c), reached through tq_quantize: `nblocks` super-blocks of 256 weights each. */
void tq_quantize_q4_K(const float *x, void *dst, long nblocks);
void tq_quantize_q5_K(const float *x, void *dst, long nblocks);
void tq_quantize_q6_K(const float *x, void *dst, long nblocks);
/* Q5_0 and Q5_1: `nblocks` blocks of 32. */
void tq_quantize_q5_0(const float *x, void *dst, long nblocks);
void tq_quantize_q5_1(const float *x, void *dst, long nblocks);
#endif
