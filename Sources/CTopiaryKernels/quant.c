#include "topiary_quant.h"
#include "kquant.h"
#include <math.h>
#include <string.h>

float tq_f16_to_f32(uint16_t h) {
    _Float16 v;
    memcpy(&v, &h, 2);
    return (float)v;
}

uint16_t tq_f32_to_f16(float f) {
    _Float16 v = (_Float16)f;
    uint16_t h;
    memcpy(&h, &v, 2);
    return h;
}

static inline uint16_t rd16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static inline float rdh(const uint8_t *p) { return tq_f16_to_f32(rd16(p)); }

static void dq_q4_0(const uint8_t *b, float *y, long nb) {
    for (long i = 0; i < nb; i++, b += 18, y += 32) {
        float d = rdh(b);
        const uint8_t *qs = b + 2;
        for (int j = 0; j < 16; j++) {
            y[j] = ((int)(qs[j] & 0xF) - 8) * d;
            y[j + 16] = ((int)(qs[j] >> 4) - 8) * d;
        }
    }
}

static void dq_q4_1(const uint8_t *b, float *y, long nb) {
    for (long i = 0; i < nb; i++, b += 20, y += 32) {
        float d = rdh(b), m = rdh(b + 2);
        const uint8_t *qs = b + 4;
        for (int j = 0; j < 16; j++) {
            y[j] = (qs[j] & 0xF) * d + m;
            y[j + 16] = (qs[j] >> 4) * d + m;
        }
    }
}

static void dq_q5_0(const uint8_t *b, float *y, long nb) {
    for (long i = 0; i < nb; i++, b += 22, y += 32) {
        float d = rdh(b);
        uint32_t qh; memcpy(&qh, b + 2, 4);
        const uint8_t *qs = b + 6;
        for (int j = 0; j < 16; j++) {
            int h0 = ((qh >> j) << 4) & 0x10, h1 = (qh >> (j + 12)) & 0x10;
            y[j] = ((int)((qs[j] & 0xF) | h0) - 16) * d;
            y[j + 16] = ((int)((qs[j] >> 4) | h1) - 16) * d;
        }
    }
}

static void dq_q5_1(const uint8_t *b, float *y, long nb) {
    for (long i = 0; i < nb; i++, b += 24, y += 32) {
        float d = rdh(b), m = rdh(b + 2);
        uint32_t qh; memcpy(&qh, b + 4, 4);
        const uint8_t *qs = b + 8;
        for (int j = 0; j < 16; j++) {
            int h0 = ((qh >> j) << 4) & 0x10, h1 = (qh >> (j + 12)) & 0x10;
            y[j] = ((qs[j] & 0xF) | h0) * d + m;
            y[j + 16] = ((qs[j] >> 4) | h1) * d + m;
        }
    }
}

static void dq_q8_0(const uint8_t *b, float *y, long nb) {
    for (long i = 0; i < nb; i++, b += 34, y += 32) {
        float d = rdh(b);
        const int8_t *qs = (const int8_t *)(b + 2);
        for (int j = 0; j < 32; j++) y[j] = qs[j] * d;
    }
}

static void dq_q2_K(const uint8_t *b, float *y, long nb) {
    for (long i = 0; i < nb; i++, b += 84) {
        const uint8_t *scales = b, *q = b + 16;
        float d = rdh(b + 80), dmin = rdh(b + 82);
        int is = 0;
        for (int n = 0; n < 256; n += 128) {
            int shift = 0;
            for (int j = 0; j < 4; j++) {
                uint8_t sc = scales[is++];
                float dl = d * (sc & 0xF), ml = dmin * (sc >> 4);
                for (int l = 0; l < 16; l++) *y++ = dl * ((q[l] >> shift) & 3) - ml;
                sc = scales[is++];
                dl = d * (sc & 0xF); ml = dmin * (sc >> 4);
                for (int l = 0; l < 16; l++) *y++ = dl * ((q[l + 16] >> shift) & 3) - ml;
                shift += 2;
            }
            q += 32;
        }
    }
}

static void dq_q3_K(const uint8_t *b, float *y, long nb) {
    const uint32_t kmask1 = 0x03030303, kmask2 = 0x0f0f0f0f;
    for (long i = 0; i < nb; i++, b += 110) {
        const uint8_t *hm = b, *q = b + 32;
        float d_all = rdh(b + 108);
        uint32_t aux[4];
        memcpy(aux, b + 96, 12);
        uint32_t tmp = aux[2];
        aux[2] = ((aux[0] >> 4) & kmask2) | (((tmp >> 4) & kmask1) << 4);
        aux[3] = ((aux[1] >> 4) & kmask2) | (((tmp >> 6) & kmask1) << 4);
        aux[0] = (aux[0] & kmask2) | (((tmp >> 0) & kmask1) << 4);
        aux[1] = (aux[1] & kmask2) | (((tmp >> 2) & kmask1) << 4);
        const int8_t *scales = (const int8_t *)aux;
        int is = 0;
        uint8_t m = 1;
        for (int n = 0; n < 256; n += 128) {
            int shift = 0;
            for (int j = 0; j < 4; j++) {
                float dl = d_all * (scales[is++] - 32);
                for (int l = 0; l < 16; l++) *y++ = dl * ((int8_t)((q[l] >> shift) & 3) - ((hm[l] & m) ? 0 : 4));
                dl = d_all * (scales[is++] - 32);
                for (int l = 0; l < 16; l++) *y++ = dl * ((int8_t)((q[l + 16] >> shift) & 3) - ((hm[l + 16] & m) ? 0 : 4));
                shift += 2;
                m <<= 1;
            }
            q += 32;
        }
    }
}

static inline void scale_min_k4(int j, const uint8_t *q, uint8_t *d, uint8_t *m) {
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

static void dq_q4_K(const uint8_t *b, float *y, long nb) {
    for (long i = 0; i < nb; i++, b += 144) {
        float d = rdh(b), dmin = rdh(b + 2);
        const uint8_t *scales = b + 4, *q = b + 16;
        int is = 0;
        for (int j = 0; j < 256; j += 64) {
            uint8_t sc, m;
            scale_min_k4(is, scales, &sc, &m);
            float d1 = d * sc, m1 = dmin * m;
            scale_min_k4(is + 1, scales, &sc, &m);
            float d2 = d * sc, m2 = dmin * m;
            for (int l = 0; l < 32; l++) *y++ = d1 * (q[l] & 0xF) - m1;
            for (int l = 0; l < 32; l++) *y++ = d2 * (q[l] >> 4) - m2;
            q += 32;
            is += 2;
        }
    }
}

static void dq_q5_K(const uint8_t *b, float *y, long nb) {
    for (long i = 0; i < nb; i++, b += 176) {
        float d = rdh(b), dmin = rdh(b + 2);
        const uint8_t *scales = b + 4, *qh = b + 16, *ql = b + 48;
        int is = 0;
        uint8_t u1 = 1, u2 = 2;
        for (int j = 0; j < 256; j += 64) {
            uint8_t sc, m;
            scale_min_k4(is, scales, &sc, &m);
            float d1 = d * sc, m1 = dmin * m;
            scale_min_k4(is + 1, scales, &sc, &m);
            float d2 = d * sc, m2 = dmin * m;
            for (int l = 0; l < 32; l++) *y++ = d1 * ((ql[l] & 0xF) + ((qh[l] & u1) ? 16 : 0)) - m1;
            for (int l = 0; l < 32; l++) *y++ = d2 * ((ql[l] >> 4) + ((qh[l] & u2) ? 16 : 0)) - m2;
            ql += 32;
            is += 2;
            u1 <<= 2;
            u2 <<= 2;
        }
    }
}

static void dq_q6_K(const uint8_t *b, float *y, long nb) {
    for (long i = 0; i < nb; i++, b += 210) {
        const uint8_t *ql = b, *qh = b + 128;
        const int8_t *sc = (const int8_t *)(b + 192);
        float d = rdh(b + 208);
        for (int n = 0; n < 256; n += 128) {
            for (int l = 0; l < 32; l++) {
                int is = l / 16;
                int q1 = (int8_t)((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
                int q2 = (int8_t)((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                int q3 = (int8_t)((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                int q4 = (int8_t)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                y[l] = d * sc[is] * q1;
                y[l + 32] = d * sc[is + 2] * q2;
                y[l + 64] = d * sc[is + 4] * q3;
                y[l + 96] = d * sc[is + 6] * q4;
            }
            y += 128;
            ql += 64;
            qh += 32;
            sc += 8;
        }
    }
}

static void dq_q8_K(const uint8_t *b, float *y, long nb) {
    for (long i = 0; i < nb; i++, b += 292, y += 256) {
        float d;
        memcpy(&d, b, 4);
        const int8_t *qs = (const int8_t *)(b + 4);
        for (int j = 0; j < 256; j++) y[j] = d * qs[j];
    }
}

int tq_dequantize(uint32_t type, const void *src, float *dst, long n) {
    const uint8_t *b = (const uint8_t *)src;
    switch (type) {
    case 0: memcpy(dst, src, (size_t)n * 4); return 0;
    case 1: for (long i = 0; i < n; i++) dst[i] = rdh(b + 2 * i); return 0;
    case 30: for (long i = 0; i < n; i++) { uint32_t v = (uint32_t)rd16(b + 2 * i) << 16; memcpy(dst + i, &v, 4); } return 0;
    case 2: dq_q4_0(b, dst, n / 32); return 0;
    case 3: dq_q4_1(b, dst, n / 32); return 0;
    case 6: dq_q5_0(b, dst, n / 32); return 0;
    case 7: dq_q5_1(b, dst, n / 32); return 0;
    case 8: dq_q8_0(b, dst, n / 32); return 0;
    case 10: dq_q2_K(b, dst, n / 256); return 0;
    case 11: dq_q3_K(b, dst, n / 256); return 0;
    case 12: dq_q4_K(b, dst, n / 256); return 0;
    case 13: dq_q5_K(b, dst, n / 256); return 0;
    case 14: dq_q6_K(b, dst, n / 256); return 0;
    case 15: dq_q8_K(b, dst, n / 256); return 0;
    default: return -1;
    }
}

/* Reference quantizers (round to nearest; the K-quants search their scales, see kquant.c), the same block
   layouts the dequantizers read. */
int tq_quantize(uint32_t type, const float *x, void *dst, long n) {
    uint8_t *b = (uint8_t *)dst;
    switch (type) {
    case 0: memcpy(dst, x, (size_t)n * 4); return 0;
    case 1: for (long i = 0; i < n; i++) { uint16_t h = tq_f32_to_f16(x[i]); memcpy(b + 2 * i, &h, 2); } return 0;
    case 8:
        for (long i = 0; i < n / 32; i++, x += 32, b += 34) {
            float amax = 0;
            for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j]));
            float d = amax / 127.0f, id = d ? 1.0f / d : 0.0f;
            uint16_t h = tq_f32_to_f16(d);
            memcpy(b, &h, 2);
            for (int j = 0; j < 32; j++) ((int8_t *)(b + 2))[j] = (int8_t)roundf(x[j] * id);
        }
        return 0;
    case 2:
        for (long i = 0; i < n / 32; i++, x += 32, b += 18) {
            float amax = 0, max = 0;
            for (int j = 0; j < 32; j++) if (fabsf(x[j]) > amax) { amax = fabsf(x[j]); max = x[j]; }
            float d = max / -8.0f, id = d ? 1.0f / d : 0.0f;
            uint16_t h = tq_f32_to_f16(d);
            memcpy(b, &h, 2);
            for (int j = 0; j < 16; j++) {
                int q0 = (int)fminf(15.0f, x[j] * id + 8.5f), q1 = (int)fminf(15.0f, x[j + 16] * id + 8.5f);
                b[2 + j] = (uint8_t)(q0 | (q1 << 4));
            }
        }
        return 0;
    case 3:
        for (long i = 0; i < n / 32; i++, x += 32, b += 20) {
            float mn = x[0], mx = x[0];
            for (int j = 1; j < 32; j++) { mn = fminf(mn, x[j]); mx = fmaxf(mx, x[j]); }
            float d = (mx - mn) / 15.0f, id = d ? 1.0f / d : 0.0f;
            uint16_t hd = tq_f32_to_f16(d), hm = tq_f32_to_f16(mn);
            memcpy(b, &hd, 2);
            memcpy(b + 2, &hm, 2);
            for (int j = 0; j < 16; j++) {
                int q0 = (int)fminf(15.0f, (x[j] - mn) * id + 0.5f), q1 = (int)fminf(15.0f, (x[j + 16] - mn) * id + 0.5f);
                b[4 + j] = (uint8_t)(q0 | (q1 << 4));
            }
        }
        return 0;
    case 6: tq_quantize_q5_0(x, dst, n / 32); return 0;
    case 7: tq_quantize_q5_1(x, dst, n / 32); return 0;
    case 12: tq_quantize_q4_K(x, dst, n / 256); return 0;
    case 13: tq_quantize_q5_K(x, dst, n / 256); return 0;
    case 14: tq_quantize_q6_K(x, dst, n / 256); return 0;
    default: return -1;
    }
}
