#ifndef TOPIARY_QUANT_H
#define TOPIARY_QUANT_H
#include <stdint.h>
#include <stddef.h>
/* Dequantization of ggml block formats to fp32 (implemented in quant.c).
   `type` is the ggml type number; `n` a multiple of the type's block size.
   Returns 0 on success, -1 for a type it does not know. */
int tq_dequantize(uint32_t type, const void *src, float *dst, long n);
/* Quantization of fp32 to F16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K or Q6_K (for export); `n` a multiple
   of the block size. Returns 0 or -1 for a type it cannot write. */
int tq_quantize(uint32_t type, const float *src, void *dst, long n);
float tq_f16_to_f32(uint16_t h);
uint16_t tq_f32_to_f16(float f);
#endif
