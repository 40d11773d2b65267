#include "topiary_kernels.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>

#include "tk_expf.h"

void tk_rmsnorm_fwd(const float *x, const float *w, float *y, float *rstd, long rows, long dim, float eps,
                    float w_offset) {
    for (long r = 0; r < rows; r++) {
        const float *xr = x + r * dim;
        float *yr = y + r * dim;
        float ss = 0;
        for (long i = 0; i < dim; i++) ss += xr[i] * xr[i];
        float inv = 1.0f / sqrtf(ss / (float)dim + eps);
        if (rstd) rstd[r] = inv;
        for (long i = 0; i < dim; i++) yr[i] = xr[i] * inv * (w[i] + w_offset);
    }
}

void tk_rmsnorm_bwd(const float *x, const float *w, const float *rstd, const float *dy, float *dx, float *dw,
                    long rows, long dim, float w_offset) {
    for (long r = 0; r < rows; r++) {
        const float *xr = x + r * dim, *dyr = dy + r * dim;
        float inv = rstd[r];
        /* y = x*inv*W; dx = inv*(dy*W) - x*inv^3/dim * sum(dy*W*x) */
        float dot = 0;
        for (long i = 0; i < dim; i++) dot += dyr[i] * (w[i] + w_offset) * xr[i];
        float c = dot * inv * inv * inv / (float)dim;
        if (dx) {
            float *dxr = dx + r * dim;
            for (long i = 0; i < dim; i++) dxr[i] = inv * dyr[i] * (w[i] + w_offset) - c * xr[i];
        }
        if (dw)
            for (long i = 0; i < dim; i++) dw[i] += dyr[i] * xr[i] * inv;
    }
}

void tk_silu_fwd(const float *x, float *y, long n) {
    for (long i = 0; i < n; i++) y[i] = x[i] / (1.0f + tk_expf(-x[i]));
}

void tk_silu_bwd(const float *x, const float *dy, float *dx, long n) {
    for (long i = 0; i < n; i++) {
        float s = 1.0f / (1.0f + tk_expf(-x[i]));
        dx[i] = dy[i] * s * (1.0f + x[i] * (1.0f - s));
    }
}

static inline float tk_tanhf(float x) {
    float e = tk_expf(-2.0f * fabsf(x));
    float t = (1.0f - e) / (1.0f + e);
    return x < 0 ? -t : t;
}

#define GELU_K 0.7978845608028654f /* sqrt(2/pi) */
void tk_gelu_tanh_fwd(const float *x, float *y, long n) {
    for (long i = 0; i < n; i++) {
        float v = x[i];
        float t = tk_tanhf(GELU_K * (v + 0.044715f * v * v * v));
        y[i] = 0.5f * v * (1.0f + t);
    }
}

void tk_gelu_tanh_bwd(const float *x, const float *dy, float *dx, long n) {
    for (long i = 0; i < n; i++) {
        float v = x[i];
        float u = GELU_K * (v + 0.044715f * v * v * v);
        float t = tk_tanhf(u);
        float du = GELU_K * (1.0f + 3.0f * 0.044715f * v * v);
        dx[i] = dy[i] * (0.5f * (1.0f + t) + 0.5f * v * (1.0f - t * t) * du);
    }
}

void tk_gelu_erf_fwd(const float *x, float *y, long n) {
    for (long i = 0; i < n; i++) y[i] = 0.5f * x[i] * (1.0f + erff(x[i] * 0.70710678118654752f));
}

void tk_gelu_erf_bwd(const float *x, const float *dy, float *dx, long n) {
    for (long i = 0; i < n; i++) {
        float v = x[i];
        float cdf = 0.5f * (1.0f + erff(v * 0.70710678118654752f));
        float pdf = 0.3989422804014327f * tk_expf(-0.5f * v * v);
        dx[i] = dy[i] * (cdf + v * pdf);
    }
}

void tk_add(const float *a, const float *b, float *y, long n) { for (long i = 0; i < n; i++) y[i] = a[i] + b[i]; }
void tk_mul(const float *a, const float *b, float *y, long n) { for (long i = 0; i < n; i++) y[i] = a[i] * b[i]; }

/* The next uniform double in [0, 1) of a SplitMix64 stream — the same sequence as TopiaryCore's
   SplitMix64.nextDouble(). */
static inline double tk_splitmix64_unit(uint64_t *state) {
    *state += 0x9E3779B97F4A7C15ULL;
    uint64_t z = *state;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    z ^= z >> 31;
    return (double)(z >> 11) / 9007199254740992.0;
}

/* Inverted-dropout mask: 0 with probability p, `keep` otherwise, drawn from SplitMix64 seeded with `seed`,
   element by element. */
void tk_dropout_mask(float *mask, long n, uint64_t seed, double p, float keep) {
    uint64_t state = seed;
    for (long i = 0; i < n; i++) mask[i] = tk_splitmix64_unit(&state) < p ? 0.0f : keep;
}
void tk_mul_acc(const float *a, const float *b, float *y, long n) { for (long i = 0; i < n; i++) y[i] += a[i] * b[i]; }
void tk_scale(const float *x, float s, float *y, long n) { for (long i = 0; i < n; i++) y[i] = x[i] * s; }
void tk_add_inplace(float *y, const float *x, long n) { for (long i = 0; i < n; i++) y[i] += x[i]; }
void tk_abs_scale_cols(const float *x, const float *scale, long rows, long cols, float *y) {
    for (long r = 0; r < rows; r++)
        for (long j = 0; j < cols; j++) y[r * cols + j] = fabsf(x[r * cols + j]) * scale[j];
}
long tk_count_zeros(const float *x, long n) { long z = 0; for (long i = 0; i < n; i++) z += x[i] == 0.0f; return z; }

void tk_rope(const float *x, float *y, long tokens, long heads, long head_dim, long rot_dim, const float *cos_t,
             const float *sin_t, const int32_t *pos, int inverse) {
    long half = rot_dim / 2;
    float sgn = inverse ? -1.0f : 1.0f;
    for (long t = 0; t < tokens; t++) {
        const float *c = cos_t + (long)pos[t] * half;
        const float *s = sin_t + (long)pos[t] * half;
        for (long h = 0; h < heads; h++) {
            const float *xh = x + (t * heads + h) * head_dim;
            float *yh = y + (t * heads + h) * head_dim;
            for (long i = 0; i < half; i++) {
                float a = xh[i], b = xh[i + half];
                float si = sgn * s[i];
                yh[i] = a * c[i] - b * si;
                yh[i + half] = b * c[i] + a * si;
            }
            for (long i = rot_dim; i < head_dim; i++) yh[i] = xh[i];
        }
    }
}

/* Largest element of x[0..n) (NaNs are passed over). Sixteen independent lanes: a single running maximum is one
   long dependency chain that neither vectorises nor pipelines (it dominated the attention softmax). */
static float row_max(const float *x, long n) {
    float acc[16];
    for (int k = 0; k < 16; k++) acc[k] = -INFINITY;
    long i = 0;
    for (; i + 16 <= n; i += 16)
        for (int k = 0; k < 16; k++) acc[k] = x[i + k] > acc[k] ? x[i + k] : acc[k];
    float m = -INFINITY;
    for (; i < n; i++) m = x[i] > m ? x[i] : m;
    for (int k = 0; k < 16; k++) m = acc[k] > m ? acc[k] : m;
    return m;
}

void tk_softmax_masked(float *s, long rows, long cols, long ld, float scale, long offset, long window, long group) {
    for (long r = 0; r < rows; r++) {
        float *row = s + r * ld;
        long q = r / group;
        long hi = q + offset + 1; /* visible: [lo, hi) */
        if (hi > cols) hi = cols;
        long lo = 0;
        if (window > 0 && q + offset + 1 - window > 0) lo = q + offset + 1 - window;
        if (hi <= lo) { memset(row, 0, sizeof(float) * cols); continue; }
        float m = row_max(row + lo, hi - lo);
        float sum = 0;
        for (long j = lo; j < hi; j++) {
            float e = tk_expf((row[j] - m) * scale);
            row[j] = e;
            sum += e;
        }
        float inv = 1.0f / sum;
        for (long j = lo; j < hi; j++) row[j] *= inv;
        if (lo > 0) memset(row, 0, sizeof(float) * lo);
        if (hi < cols) memset(row + hi, 0, sizeof(float) * (cols - hi));
    }
}

void tk_softmax_bwd(const float *p, float *dp, long rows, long cols, long ld) {
    for (long r = 0; r < rows; r++) {
        const float *pr = p + r * ld;
        float *dr = dp + r * ld;
        float dot = 0;
        for (long j = 0; j < cols; j++) dot += pr[j] * dr[j];
        for (long j = 0; j < cols; j++) dr[j] = pr[j] * (dr[j] - dot);
    }
}


static float row_sum_exp(const float *x, long n, float m) {
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    long i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) acc[k] += tk_expf(x[i + k] - m);
    float s = 0;
    for (; i < n; i++) s += tk_expf(x[i] - m);
    for (int k = 0; k < 8; k++) s += acc[k];
    return s;
}

long tk_nll_rows(const float *logits, long rows, long vocab, const int32_t *targets, double *nll) {
    long counted = 0;
    for (long r = 0; r < rows; r++) {
        const float *x = logits + r * vocab;
        if (targets[r] < 0 || targets[r] >= vocab) { nll[r] = 0; continue; }
        float m = row_max(x, vocab);
        float s = row_sum_exp(x, vocab, m);
        nll[r] = (double)m + log((double)s) - (double)x[targets[r]];
        counted++;
    }
    return counted;
}

void tk_cross_entropy_bwd(const float *logits, long rows, long vocab, const int32_t *targets, float scale,
                          float *dlogits) {
    for (long r = 0; r < rows; r++) {
        const float *x = logits + r * vocab;
        float *d = dlogits + r * vocab;
        if (targets[r] < 0 || targets[r] >= vocab) { memset(d, 0, sizeof(float) * vocab); continue; }
        float m = row_max(x, vocab);
        float s = row_sum_exp(x, vocab, m);
        float k = scale / s;
        for (long i = 0; i < vocab; i++) d[i] = tk_expf(x[i] - m) * k;
        d[targets[r]] -= scale;
    }
}

void tk_argmax_rows(const float *x, long rows, long cols, int32_t *out) {
    for (long r = 0; r < rows; r++) {
        const float *xr = x + r * cols;
        long best = 0;
        for (long j = 1; j < cols; j++) if (xr[j] > xr[best]) best = j;
        out[r] = (int32_t)best;
    }
}

double tk_dot_d(const float *a, const float *b, long n) {
    double s = 0;
    for (long i = 0; i < n; i++) s += (double)a[i] * (double)b[i];
    return s;
}

double tk_sum_d(const float *x, long n) {
    double s = 0;
    for (long i = 0; i < n; i++) s += (double)x[i];
    return s;
}

void tk_adamw(float *p, const float *g, float *m, float *v, long n, float lr, float b1, float b2, float eps, float wd,
              float bc1, float bc2) {
    float decay = 1.0f - lr * wd;
    for (long i = 0; i < n; i++) {
        m[i] = b1 * m[i] + (1.0f - b1) * g[i];
        v[i] = b2 * v[i] + (1.0f - b2) * g[i] * g[i];
        p[i] = p[i] * decay - lr * (m[i] / bc1) / (sqrtf(v[i] / bc2) + eps);
    }
}

double tk_sumsq_d(const float *x, long n) {
    double s = 0;
    for (long i = 0; i < n; i++) s += (double)x[i] * (double)x[i];
    return s;
}

float tk_select_kth(float *x, long n, long k) {
    long lo = 0, hi = n - 1;
    while (lo < hi) {
        float pivot = x[lo + (hi - lo) / 2];
        long i = lo, j = hi;
        while (i <= j) {
            while (x[i] < pivot) i++;
            while (x[j] > pivot) j--;
            if (i <= j) { float t = x[i]; x[i] = x[j]; x[j] = t; i++; j--; }
        }
        if (k <= j) hi = j;
        else if (k >= i) lo = i;
        else return x[k];
    }
    return x[k];
}

void tk_prune_rows(float *w, const float *metric, long rows, long cols, long k, float *scratch) {
    if (k <= 0) return;
    for (long r = 0; r < rows; r++) {
        const float *m = metric + r * cols;
        float *wr = w + r * cols;
        if (k >= cols) { memset(wr, 0, sizeof(float) * cols); continue; }
        memcpy(scratch, m, sizeof(float) * cols);
        float t = tk_select_kth(scratch, cols, k - 1);
        long removed = 0;
        for (long j = 0; j < cols; j++) if (m[j] < t) { wr[j] = 0; removed++; }
        for (long j = 0; j < cols && removed < k; j++) if (m[j] == t) { wr[j] = 0; removed++; }
    }
}

void tk_prune_nm(float *w, const float *metric, long rows, long cols, long n, long m) {
    for (long r = 0; r < rows; r++) {
        for (long g = 0; g + m <= cols; g += m) {
            const float *mg = metric + r * cols + g;
            float *wg = w + r * cols + g;
            unsigned char chosen[256] = {0};
            for (long c = 0; c < n && c < m; c++) {
                long best = -1;
                for (long j = 0; j < m && j < 256; j++)
                    if (!chosen[j] && (best < 0 || mg[j] < mg[best])) best = j;
                chosen[best] = 1;
                wg[best] = 0;
            }
        }
    }
}

void tk_col_sumsq_acc(const float *x, long rows, long cols, float *acc) {
    double *sum = calloc((size_t)cols, sizeof(double));
    if (sum == NULL) {
        for (long r = 0; r < rows; r++)
            for (long j = 0; j < cols; j++) acc[j] += x[r * cols + j] * x[r * cols + j];
        return;
    }
    for (long r = 0; r < rows; r++) {
        const float *row = x + r * cols;
        for (long j = 0; j < cols; j++) sum[j] += (double)row[j] * (double)row[j];
    }
    for (long j = 0; j < cols; j++) acc[j] += (float)sum[j];
    free(sum);
}
void tk_fill_uniform(float *x, long n, uint64_t seed, float lo, float hi) {
    uint64_t state = seed;
    for (long i = 0; i < n; i++) x[i] = lo + (hi - lo) * (float)tk_splitmix64_unit(&state);
}
void tk_abs(const float *x, float *y, long n) { for (long i = 0; i < n; i++) y[i] = fabsf(x[i]); }
double tk_asum(const float *x, long n) { double s = 0; for (long i = 0; i < n; i++) s += fabsf(x[i]); return s; }
void tk_argmin_rows(const float *d, long rows, long cols, int *out) {
    for (long r = 0; r < rows; r++) {
        const float *row = d + r * cols;
        long best = 0;
        for (long c = 1; c < cols; c++) if (row[c] < row[best]) best = c;
        out[r] = (int)best;
    }
}
void tk_add_row_vector(float *m, long rows, long cols, const float *v) {
    for (long r = 0; r < rows; r++) for (long c = 0; c < cols; c++) m[r * cols + c] += v[c];
}

/* Standard normal samples (Box–Muller on SplitMix64 pairs), seeded. */
void tk_fill_normal(float *x, long n, uint64_t seed) {
    uint64_t state = seed;
    for (long i = 0; i < n; i += 2) {
        double u1 = tk_splitmix64_unit(&state), u2 = tk_splitmix64_unit(&state);
        double r = sqrt(-2.0 * log(u1 > 1e-300 ? u1 : 1e-300)), a = 6.283185307179586 * u2;
        x[i] = (float)(r * cos(a));
        if (i + 1 < n) x[i + 1] = (float)(r * sin(a));
    }
}

/* Multiplicative Gaussian gate (variational dropout, per unit): y[t, j] = x[t, j]·(1 + σ_u·ε[t, j]) with
   σ_u = exp(½·logalpha[u]), u = unit[j]. */
void tk_gauss_gate(const float *x, const float *eps, const float *logalpha, const int32_t *unit, long rows, long cols, float *y) {
    for (long t = 0; t < rows; t++) {
        const float *xr = x + t * cols, *er = eps + t * cols;
        float *yr = y + t * cols;
        for (long j = 0; j < cols; j++) yr[j] = xr[j] * (1.0f + expf(0.5f * logalpha[unit[j]]) * er[j]);
    }
}

/* Its backward: dx = dy·(1 + σ_u·ε); dlogalpha[u] += Σ over the unit's elements of dy·x·ε·½σ_u (either output may be NULL). */
void tk_gauss_gate_backward(const float *dy, const float *x, const float *eps, const float *logalpha, const int32_t *unit,
                            long rows, long cols, float *dx, float *dlogalpha) {
    for (long t = 0; t < rows; t++) {
        const float *dyr = dy + t * cols, *xr = x + t * cols, *er = eps + t * cols;
        for (long j = 0; j < cols; j++) {
            float s = expf(0.5f * logalpha[unit[j]]);
            if (dx) dx[t * cols + j] = dyr[j] * (1.0f + s * er[j]);
            if (dlogalpha) dlogalpha[unit[j]] += dyr[j] * xr[j] * er[j] * 0.5f * s;
        }
    }
}
