#ifndef TOPIARY_QUANT_H
#define TOPIARY_QUANT_H
#include <stdint.h>
#include <stddef.h>
/* Dequantization of ggml block formats to fp32 (implemented in quant.c).
   `type` is the ggml type number; `n` a multiple of the type's block size.
   Returns 0 on success, -1 for a type it does not know. */
int tq_dequantize(uint32_t type, const void *src, float *dst, long n);
/* Quantization of fp32 to Q8_0 / Q4_0 / Q4_1 / F16 (for export). Returns 0 or -1. */
int tq_quantize(uint32_t type, const float *src, void *dst, long n);
float tq_f16_to_f32(uint16_t h);
uint16_t tq_f32_to_f16(float f);
#endif
