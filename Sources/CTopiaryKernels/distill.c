#include "topiary_kernels.h"
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tk_expf.h"

/* Knowledge distillation at temperature T (inv_t = 1/T): the teacher distribution p = softmax(t/T), the student's
   q = softmax(s/T), per row KL(p || q) = sum_j p_j (log p_j - log q_j). The gradient of KL with respect to s/T is
   q - p, so `grad` receives gscale * (q - p) (the caller folds T and the mean into gscale). */

/* log-sum-exp of x * inv_t over n elements, in double. */
static double scaled_lse(const float *x, long n, float inv_t) {
    float m = x[0];
    for (long j = 1; j < n; j++) m = x[j] > m ? x[j] : m;
    const float ms = m * inv_t;
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    long j = 0;
    for (; j + 8 <= n; j += 8)
        for (int k = 0; k < 8; k++) acc[k] += tk_expf(x[j + k] * inv_t - ms);
    double s = 0;
    for (; j < n; j++) s += tk_expf(x[j] * inv_t - ms);
    for (int k = 0; k < 8; k++) s += acc[k];
    return (double)ms + log(s);
}

double tk_kd_full_rows(const float *s, const float *t, long rows, long vocab, float inv_t, float gscale, float *grad) {
    double total = 0;
    for (long r = 0; r < rows; r++) {
        const float *sr = s + r * vocab, *tr = t + r * vocab;
        const float ls = (float)scaled_lse(sr, vocab, inv_t), lt = (float)scaled_lse(tr, vocab, inv_t);
        double kl = 0;
        float *g = grad ? grad + r * vocab : NULL;
        for (long j = 0; j < vocab; j++) {
            const float lp = tr[j] * inv_t - lt, lq = sr[j] * inv_t - ls;
            const float p = tk_expf(lp);
            kl += (double)(p * (lp - lq));
            if (g) g[j] = gscale * (tk_expf(lq) - p);
        }
        total += kl;
    }
    return total;
}

double tk_kd_topk_rows(const float *s, long rows, long vocab, const int32_t *ids, const float *logp, long k, float inv_t,
                       float gscale, float *grad, unsigned char *mark) {
    double total = 0;
    for (long r = 0; r < rows; r++) {
        const float *sr = s + r * vocab;
        const int32_t *ir = ids + r * k;
        const float *lr = logp + r * k;
        const float ls = (float)scaled_lse(sr, vocab, inv_t);
        for (long i = 0; i < k; i++) mark[ir[i]] = 1;
        /* The student's mass outside the teacher's top-K (exactly 0 when K covers the vocabulary). */
        double tail_q = 0;
        for (long j = 0; j < vocab; j++)
            if (!mark[j]) tail_q += tk_expf(sr[j] * inv_t - ls);
        double head_p = 0, kl = 0;
        for (long i = 0; i < k; i++) {
            const double p = exp((double)lr[i]);
            head_p += p;
            kl += p * ((double)lr[i] - ((double)sr[ir[i]] * inv_t - ls));
        }
        const double tail_p = head_p < 1 ? 1 - head_p : 0;
        const int use_tail = tail_p > 0 && tail_q > 0;
        if (use_tail) kl += tail_p * (log(tail_p) - log(tail_q));
        total += kl;
        if (grad) {
            float *g = grad + r * vocab;
            /* Outside the top-K the target is the tail mass spread like the student's own tail. */
            const float tail_keep = use_tail ? (float)(1 - tail_p / tail_q) : 1.0f;
            for (long j = 0; j < vocab; j++) {
                const float q = tk_expf(sr[j] * inv_t - ls);
                g[j] = gscale * (mark[j] ? q : q * tail_keep);
            }
            for (long i = 0; i < k; i++) g[ir[i]] -= gscale * expf(lr[i]);
        }
        for (long i = 0; i < k; i++) mark[ir[i]] = 0;
    }
    return total;
}

/* Min-heap on (value, -index): the root is the weakest of the kept entries. */
static int weaker(float va, int32_t ia, float vb, int32_t ib) { return va < vb || (va == vb && ia > ib); }

static void sift_down(float *v, int32_t *ix, long n, long i) {
    for (;;) {
        long l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && weaker(v[l], ix[l], v[m], ix[m])) m = l;
        if (r < n && weaker(v[r], ix[r], v[m], ix[m])) m = r;
        if (m == i) return;
        float tv = v[i]; v[i] = v[m]; v[m] = tv;
        int32_t ti = ix[i]; ix[i] = ix[m]; ix[m] = ti;
        i = m;
    }
}

void tk_topk_logprobs(const float *t, long rows, long vocab, long k, float inv_t, int32_t *ids, float *logp) {
    for (long r = 0; r < rows; r++) {
        const float *tr = t + r * vocab;
        float *v = logp + r * k;
        int32_t *ix = ids + r * k;
        for (long i = 0; i < k; i++) { v[i] = tr[i]; ix[i] = (int32_t)i; }
        for (long i = k / 2 - 1; i >= 0; i--) sift_down(v, ix, k, i);
        for (long j = k; j < vocab; j++)
            if (weaker(v[0], ix[0], tr[j], (int32_t)j)) { v[0] = tr[j]; ix[0] = (int32_t)j; sift_down(v, ix, k, 0); }
        /* Heap sort: strongest first (ties by the lower token id). */
        for (long n = k - 1; n > 0; n--) {
            float tv = v[0]; v[0] = v[n]; v[n] = tv;
            int32_t ti = ix[0]; ix[0] = ix[n]; ix[n] = ti;
            sift_down(v, ix, n, 0);
        }
        const double lt = scaled_lse(tr, vocab, inv_t);
        for (long i = 0; i < k; i++) v[i] = (float)((double)v[i] * inv_t - lt);
    }
}
