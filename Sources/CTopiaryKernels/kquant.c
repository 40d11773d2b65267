/* K-quant quantizers: ggml's Q4_K, Q5_K and Q6_K super-blocks of 256 weights, in the byte layouts that
   ggml (and quant.c's dequantizers) read; and Q5_0 / Q5_1, which llama.cpp stores instead of Q4_K / Q5_K
   when a row does not hold whole super-blocks.

   The searches follow the reference quantizers of ggml-quants.c (quantize_row_q{4,5,6}_K_ref, the ones
   llama.cpp's `quantize` uses without an importance matrix):
   - Q4_K / Q5_K: eight sub-blocks of 32 with a scale and a min each. Every sub-block gets a weighted
     least-squares fit of x ≈ scale·q − min (weights |x| plus the sub-block's rms), tried over a sweep of
     candidate scales; the eight scales and mins are then quantized to 6 bits against two fp16 super-scales
     (d, dmin), and the weights are rounded again with the scales as stored.
   - Q6_K: sixteen sub-blocks of 16 with a signed 8-bit scale each; every sub-block's scale is fitted by
     weighted least squares (weights x²) over a sweep of candidates, the scales are quantized against one
     fp16 super-scale, and the weights are rounded again with the scales as stored.

   Arithmetic here is kept exactly as written (no FMA contraction, no reassociation, whatever the kernel
   flags), so that a file quantized on one machine is byte-identical to one quantized on another. */
#include "kquant.h"
#include "topiary_quant.h"
#include <math.h>
#include <string.h>

#pragma clang fp contract(off)
#pragma clang fp reassociate(off)

enum { QK = 256 };
static const float tiny_group = 1e-15f; /* a sub-block whose largest |x| is below this is all zero */

/* Round to nearest, ties to even (the current rounding mode), as ggml's nearest_int. */
static inline int nearest(float v) { return (int)lrintf(v); }

static inline int clampi(int v, int lo, int hi) { return v < lo ? lo : (v > hi ? hi : v); }

static inline void put_f16(uint8_t *p, float v) {
    uint16_t h = tq_f32_to_f16(v);
    memcpy(p, &h, 2);
}

static inline float get_f16(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return tq_f16_to_f32(h);
}

/* Weighted fit of x[i] ≈ scale·L[i] + lo with L[i] in 0…nmax and lo ≤ 0. Starts from the range
   [min(x, 0), max(x)] and tries nstep+1 candidate inverse scales (nmax + rmin + rdelta·s)/(range), each
   followed by the closed-form least-squares scale and offset for the levels it gives; keeps the fit with
   the smallest weighted squared error. Returns the scale and writes −lo to *neg_lo. */
static float fit_scale_offset(int n, int nmax, const float *x, const float *w, uint8_t *L, float *neg_lo, float rmin,
                              float rdelta, int nstep) {
    float lo = x[0], hi = x[0], sum_w = w[0], sum_wx = w[0] * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < lo) lo = x[i];
        if (x[i] > hi) hi = x[i];
        sum_w += w[i];
        sum_wx += w[i] * x[i];
    }
    if (lo > 0) lo = 0;
    if (hi == lo) {
        memset(L, 0, (size_t)n);
        *neg_lo = -lo;
        return 0.0f;
    }
    float inv = nmax / (hi - lo), scale = 1 / inv, best = 0;
    for (int i = 0; i < n; i++) {
        L[i] = (uint8_t)clampi(nearest(inv * (x[i] - lo)), 0, nmax);
        float e = scale * L[i] + lo - x[i];
        best += w[i] * e * e;
    }
    uint8_t trial[32];
    for (int s = 0; s <= nstep; s++) {
        inv = (rmin + rdelta * s + nmax) / (hi - lo);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; i++) {
            int l = clampi(nearest(inv * (x[i] - lo)), 0, nmax);
            trial[i] = (uint8_t)l;
            sum_l += w[i] * l;
            sum_l2 += w[i] * l * l;
            sum_xl += w[i] * l * x[i];
        }
        float det = sum_w * sum_l2 - sum_l * sum_l;
        if (det <= 0) continue;
        float a = (sum_w * sum_xl - sum_wx * sum_l) / det, b = (sum_l2 * sum_wx - sum_l * sum_xl) / det;
        if (b > 0) {
            b = 0;
            a = sum_xl / sum_l2;
        }
        float err = 0;
        for (int i = 0; i < n; i++) {
            float e = a * trial[i] + b - x[i];
            err += w[i] * e * e;
        }
        if (err < best) {
            memcpy(L, trial, (size_t)n);
            best = err;
            scale = a;
            lo = b;
        }
    }
    *neg_lo = -lo;
    return scale;
}

/* The 12 bytes of eight 6-bit scales and mins (the inverse of quant.c's scale_min_k4). */
static void pack_scales_mins(uint8_t *q, const uint8_t *sc, const uint8_t *mn) {
    for (int j = 0; j < 4; j++) {
        q[j] = (uint8_t)((sc[j] & 63) | ((sc[j + 4] >> 4) << 6));
        q[j + 4] = (uint8_t)((mn[j] & 63) | ((mn[j + 4] >> 4) << 6));
        q[j + 8] = (uint8_t)((sc[j + 4] & 0xF) | ((mn[j + 4] & 0xF) << 4));
    }
}

/* Q4_K (nmax 15) and Q5_K (nmax 31): scales/mins of the eight sub-blocks and the weights' levels L,
   with d at b[0..1], dmin at b[2..3] and the packed scales at b[4..15]. */
static void scale_min_superblock(const float *x, uint8_t *b, uint8_t *L, int nmax, float rmin, float rdelta, int nstep) {
    float scales[8], mins[8], w[32], max_scale = 0, max_min = 0;
    for (int j = 0; j < 8; j++) {
        const float *xs = x + 32 * j;
        float sum_x2 = 0;
        for (int l = 0; l < 32; l++) sum_x2 += xs[l] * xs[l];
        float rms = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; l++) w[l] = rms + fabsf(xs[l]);
        scales[j] = fit_scale_offset(32, nmax, xs, w, L + 32 * j, &mins[j], rmin, rdelta, nstep);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    float inv_scale = max_scale > 0 ? 63.0f / max_scale : 0.0f, inv_min = max_min > 0 ? 63.0f / max_min : 0.0f;
    uint8_t ls[8], lm[8];
    for (int j = 0; j < 8; j++) {
        ls[j] = (uint8_t)clampi(nearest(inv_scale * scales[j]), 0, 63);
        lm[j] = (uint8_t)clampi(nearest(inv_min * mins[j]), 0, 63);
    }
    put_f16(b, max_scale / 63.0f);
    put_f16(b + 2, max_min / 63.0f);
    pack_scales_mins(b + 4, ls, lm);
    /* Round again with the scales as they are stored (fp16 super-scales, 6-bit sub-scales). */
    float d = get_f16(b), dmin = get_f16(b + 2);
    for (int j = 0; j < 8; j++) {
        float dj = d * ls[j];
        if (dj == 0) continue;
        float mj = dmin * lm[j];
        for (int l = 0; l < 32; l++) L[32 * j + l] = (uint8_t)clampi(nearest((x[32 * j + l] + mj) / dj), 0, nmax);
    }
}

void tq_quantize_q4_K(const float *x, void *dst, long nblocks) {
    uint8_t *b = (uint8_t *)dst, L[QK];
    for (long i = 0; i < nblocks; i++, x += QK, b += 144) {
        scale_min_superblock(x, b, L, 15, -1.0f, 0.1f, 20);
        uint8_t *q = b + 16;
        for (int j = 0; j < QK; j += 64, q += 32)
            for (int l = 0; l < 32; l++) q[l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 4));
    }
}

void tq_quantize_q5_K(const float *x, void *dst, long nblocks) {
    uint8_t *b = (uint8_t *)dst, L[QK];
    for (long i = 0; i < nblocks; i++, x += QK, b += 176) {
        scale_min_superblock(x, b, L, 31, -0.5f, 0.1f, 15);
        uint8_t *qh = b + 16, *ql = b + 48;
        memset(qh, 0, 32);
        for (int j = 0, bit = 0; j < QK; j += 64, bit += 2, ql += 32) {
            for (int l = 0; l < 32; l++) {
                int lo = L[j + l], hi = L[j + l + 32];
                qh[l] |= (uint8_t)(((lo >> 4) << bit) | ((hi >> 4) << (bit + 1)));
                ql[l] = (uint8_t)((lo & 0xF) | ((hi & 0xF) << 4));
            }
        }
    }
}

/* Signed scale for one Q6_K sub-block of 16: levels L[i] − 32 in −32…31, fitted by least squares weighted
   by x² over 19 candidate scales around −max/32 (max: the entry of largest magnitude). */
static float fit_signed_scale(const float *x, int8_t *L) {
    enum { n = 16, nmax = 32 };
    float amax = 0, max = 0;
    for (int i = 0; i < n; i++) {
        if (fabsf(x[i]) > amax) {
            amax = fabsf(x[i]);
            max = x[i];
        }
    }
    if (amax < tiny_group) {
        memset(L, 0, n);
        return 0.0f;
    }
    float inv = -nmax / max, sum_lx = 0, sum_l2 = 0;
    for (int i = 0; i < n; i++) {
        int l = clampi(nearest(inv * x[i]), -nmax, nmax - 1);
        L[i] = (int8_t)(l + nmax);
        float w = x[i] * x[i];
        sum_lx += w * x[i] * l;
        sum_l2 += w * l * l;
    }
    float scale = sum_l2 != 0 ? sum_lx / sum_l2 : 0.0f, best = scale * sum_lx;
    for (int s = -9; s <= 9; s++) {
        if (s == 0) continue;
        inv = -(nmax + 0.1f * s) / max;
        sum_lx = sum_l2 = 0;
        for (int i = 0; i < n; i++) {
            int l = clampi(nearest(inv * x[i]), -nmax, nmax - 1);
            float w = x[i] * x[i];
            sum_lx += w * x[i] * l;
            sum_l2 += w * l * l;
        }
        if (sum_l2 > 0 && sum_lx * sum_lx > best * sum_l2) {
            for (int i = 0; i < n; i++) L[i] = (int8_t)(nmax + clampi(nearest(inv * x[i]), -nmax, nmax - 1));
            scale = sum_lx / sum_l2;
            best = scale * sum_lx;
        }
    }
    return scale;
}

void tq_quantize_q6_K(const float *x, void *dst, long nblocks) {
    uint8_t *b = (uint8_t *)dst;
    int8_t L[QK];
    float scales[16];
    for (long i = 0; i < nblocks; i++, x += QK, b += 210) {
        float max_scale = 0, max_abs = 0;
        for (int s = 0; s < 16; s++) {
            scales[s] = fit_signed_scale(x + 16 * s, L + 16 * s);
            if (fabsf(scales[s]) > max_abs) {
                max_abs = fabsf(scales[s]);
                max_scale = scales[s];
            }
        }
        memset(b, 0, 210);
        if (max_abs < tiny_group) continue; /* all zero: d = 0 */
        float inv = -128.0f / max_scale;
        put_f16(b + 208, 1 / inv);
        int8_t *sc = (int8_t *)(b + 192);
        for (int s = 0; s < 16; s++) sc[s] = (int8_t)clampi(nearest(inv * scales[s]), -128, 127);
        float d = get_f16(b + 208);
        for (int s = 0; s < 16; s++) {
            float ds = d * sc[s];
            if (ds == 0) continue;
            for (int l = 0; l < 16; l++) L[16 * s + l] = (int8_t)(clampi(nearest(x[16 * s + l] / ds), -32, 31) + 32);
        }
        uint8_t *ql = b, *qh = b + 128;
        for (int j = 0; j < QK; j += 128, ql += 64, qh += 32) {
            for (int l = 0; l < 32; l++) {
                int q1 = L[j + l], q2 = L[j + l + 32], q3 = L[j + l + 64], q4 = L[j + l + 96];
                ql[l] = (uint8_t)((q1 & 0xF) | ((q3 & 0xF) << 4));
                ql[l + 32] = (uint8_t)((q2 & 0xF) | ((q4 & 0xF) << 4));
                qh[l] = (uint8_t)((q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6));
            }
        }
    }
}

/* Q5_0, Q4_K's fallback for rows that do not hold whole super-blocks (ggml's reference rounding):
   d = max/−16 (max: the entry of largest magnitude), levels 0…31 around 16; the fifth bits in qh. */
void tq_quantize_q5_0(const float *x, void *dst, long nb) {
    uint8_t *b = (uint8_t *)dst;
    for (long i = 0; i < nb; i++, x += 32, b += 22) {
        float amax = 0, max = 0;
        for (int j = 0; j < 32; j++) if (fabsf(x[j]) > amax) { amax = fabsf(x[j]); max = x[j]; }
        float d = max / -16.0f, id = d ? 1.0f / d : 0.0f;
        uint16_t h = tq_f32_to_f16(d);
        memcpy(b, &h, 2);
        uint32_t qh = 0;
        for (int j = 0; j < 16; j++) {
            int q0 = (int)fminf(31.0f, x[j] * id + 16.5f), q1 = (int)fminf(31.0f, x[j + 16] * id + 16.5f);
            b[6 + j] = (uint8_t)((q0 & 0xF) | ((q1 & 0xF) << 4));
            qh |= (uint32_t)(q0 >> 4) << j | (uint32_t)(q1 >> 4) << (j + 16);
        }
        memcpy(b + 2, &qh, 4);
    }
}

/* Q5_1, Q5_K's fallback: d = (max − min)/31 and the min, levels 0…31; the fifth bits in qh. */
void tq_quantize_q5_1(const float *x, void *dst, long nb) {
    uint8_t *b = (uint8_t *)dst;
    for (long i = 0; i < nb; i++, x += 32, b += 24) {
        float mn = x[0], mx = x[0];
        for (int j = 1; j < 32; j++) { mn = fminf(mn, x[j]); mx = fmaxf(mx, x[j]); }
        float d = (mx - mn) / 31.0f, id = d ? 1.0f / d : 0.0f;
        uint16_t hd = tq_f32_to_f16(d), hm = tq_f32_to_f16(mn);
        memcpy(b, &hd, 2);
        memcpy(b + 2, &hm, 2);
        uint32_t qh = 0;
        for (int j = 0; j < 16; j++) {
            int q0 = (int)fminf(31.0f, (x[j] - mn) * id + 0.5f), q1 = (int)fminf(31.0f, (x[j + 16] - mn) * id + 0.5f);
            b[8 + j] = (uint8_t)((q0 & 0xF) | ((q1 & 0xF) << 4));
            qh |= (uint32_t)(q0 >> 4) << j | (uint32_t)(q1 >> 4) << (j + 16);
        }
        memcpy(b + 4, &qh, 4);
    }
}
