#ifndef TK_EXPF_H
#define TK_EXPF_H
#include <stdint.h>

/* exp for float, branch-free so loops vectorise: range reduction x = n ln2 + r, degree-6 polynomial.
   Relative error ~2e-7 over [-87, 88]; inputs below -87 give ~0, above 88 are clamped. */
static inline float tk_expf(float x) {
    x = x < -87.3f ? -87.3f : (x > 88.3f ? 88.3f : x);
    float n = __builtin_roundf(x * 1.44269504088896341f);
    float r = x - n * 0.693359375f;
    r = r + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    int32_t e = (int32_t)n + 127;
    union { int32_t i; float f; } u;
    u.i = e << 23;
    return p * u.f;
}

#endif
