#ifndef TOPIARY_KERNELS_H
#define TOPIARY_KERNELS_H
#include <stddef.h>
#include <stdint.h>

/* Element-wise and row-wise fp32 kernels, written as plain loops that the C compiler vectorises
   (built with -O3 and the build machine's vector extensions). Implemented in kernels.c.
   All pointers are non-overlapping unless a function says "in place". */

/* y = x * rsqrt(mean(x^2) + eps) * w over `rows` rows of `dim`; rstd (nullable) receives 1/rms per row. */
void tk_rmsnorm_fwd(const float *x, const float *w, float *y, float *rstd, long rows, long dim, float eps,
                    float w_offset);
/* dx = d/dx, dw += d/dw (dw nullable, accumulated). w_offset is added to w (Gemma stores w-1). */
void tk_rmsnorm_bwd(const float *x, const float *w, const float *rstd, const float *dy, float *dx, float *dw,
                    long rows, long dim, float w_offset);

void tk_silu_fwd(const float *x, float *y, long n);
void tk_silu_bwd(const float *x, const float *dy, float *dx, long n);
/* GELU, tanh approximation (gelu_pytorch_tanh) and exact erf form. */
void tk_gelu_tanh_fwd(const float *x, float *y, long n);
void tk_gelu_tanh_bwd(const float *x, const float *dy, float *dx, long n);
void tk_gelu_erf_fwd(const float *x, float *y, long n);
void tk_gelu_erf_bwd(const float *x, const float *dy, float *dx, long n);

void tk_add(const float *a, const float *b, float *y, long n);
void tk_mul(const float *a, const float *b, float *y, long n);
void tk_dropout_mask(float *mask, long n, uint64_t seed, double p, float keep);
/** Fills x with uniform values in [lo, hi) from a SplitMix64 stream seeded with seed. */
void tk_fill_uniform(float *x, long n, uint64_t seed, float lo, float hi);
void tk_fill_normal(float *x, long n, uint64_t seed);
void tk_gauss_gate(const float *x, const float *eps, const float *logalpha, const int32_t *unit, long rows, long cols, float *y);
void tk_gauss_gate_backward(const float *dy, const float *x, const float *eps, const float *logalpha, const int32_t *unit,
                            long rows, long cols, float *dx, float *dlogalpha);
/* y += a * b */
void tk_mul_acc(const float *a, const float *b, float *y, long n);
void tk_scale(const float *x, float s, float *y, long n);
void tk_add_inplace(float *y, const float *x, long n);
/** Number of entries equal to zero. */
long tk_count_zeros(const float *x, long n);
/* y[r, j] = |x[r, j]| · scale[j] (Wanda's metric |W|·‖X_j‖). */
void tk_abs_scale_cols(const float *x, const float *scale, long rows, long cols, float *y);
/** y = |x| element-wise. */
void tk_abs(const float *x, float *y, long n);
/** Sum of |x| (double accumulation). */
double tk_asum(const float *x, long n);
/** For each row of the row-major [rows, cols] matrix d, the column of its smallest entry (first on ties). */
void tk_argmin_rows(const float *d, long rows, long cols, int *out);
/** Adds the vector v ([cols]) to every row of the row-major [rows, cols] matrix m. */
void tk_add_row_vector(float *m, long rows, long cols, const float *v);

/* Rotary embedding, rotate-half (NeoX / Hugging Face) layout, for `tokens` rows of `heads` heads of `head_dim`.
   cos/sin tables are [max_pos, rot_dim/2]; pos[t] is the position of row t. inverse != 0 rotates by -theta
   (the backward pass). rot_dim <= head_dim: only the first rot_dim dims rotate. */
void tk_rope(const float *x, float *y, long tokens, long heads, long head_dim, long rot_dim, const float *cos_t,
             const float *sin_t, const int32_t *pos, int inverse);

/* Row-wise softmax of scale*s in place over `cols`, with a causal mask: row r is query position
   q = r / group, which sees columns j <= q + offset (and j > q + offset - window when window > 0).
   Masked entries become 0. group > 1 stacks the query heads that share one KV head. */
void tk_softmax_masked(float *s, long rows, long cols, long ld, float scale, long offset, long window, long group);
/* In place: dp <- p * (dp - sum_j p*dp) (softmax backward), rows of `cols` with leading dimension ld. */
void tk_softmax_bwd(const float *p, float *dp, long rows, long cols, long ld);

/* Negative log-likelihood of targets under log_softmax(logits) per row, in double.
   Rows whose target < 0 get 0 and are not counted. Returns the number of counted rows. */
long tk_nll_rows(const float *logits, long rows, long vocab, const int32_t *targets, double *nll);
/* Cross-entropy backward: dlogits = (softmax(logits) - onehot(target)) * scale; rows with target < 0 get 0. */
void tk_cross_entropy_bwd(const float *logits, long rows, long vocab, const int32_t *targets, float scale,
                          float *dlogits);
/* Knowledge distillation at temperature 1/inv_t, per row: KL(softmax(t/T) || softmax(s/T)) summed over rows (nats).
   grad (may be NULL) gets gscale * (softmax(s/T) - softmax(t/T)). */
double tk_kd_full_rows(const float *s, const float *t, long rows, long vocab, float inv_t, float gscale, float *grad);
/* The same against a teacher given as its top-k token ids and log-probabilities (at T) per row plus the tail mass
   1 - sum(exp(logp)), compared with the student's mass outside those ids. `mark` is `vocab` zeroed bytes of scratch. */
double tk_kd_topk_rows(const float *s, long rows, long vocab, const int32_t *ids, const float *logp, long k, float inv_t,
                       float gscale, float *grad, unsigned char *mark);
/* The k most likely tokens of each row of teacher logits t and their log-probabilities at T, strongest first. */
void tk_topk_logprobs(const float *t, long rows, long vocab, long k, float inv_t, int32_t *ids, float *logp);
/* Index of the max of each row. */
void tk_argmax_rows(const float *x, long rows, long cols, int32_t *out);

/* AdamW step (PyTorch semantics): p *= 1 - lr*wd; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
   p -= lr * (m / bc1) / (sqrt(v / bc2) + eps), where bc1 = 1 - b1^t, bc2 = 1 - b2^t. */
void tk_adamw(float *p, const float *g, float *m, float *v, long n, float lr, float b1, float b2, float eps, float wd,
              float bc1, float bc2);
/* Sum of squares in double (gradient clipping). */
double tk_sumsq_d(const float *x, long n);

/* The k-th smallest (0-based) of n floats; x is reordered (quickselect). */
float tk_select_kth(float *x, long n, long k);
/* Zero exactly k entries of w with the smallest metric in each of `rows` rows of `cols` (ties: lower index first).
   scratch needs cols floats. */
void tk_prune_rows(float *w, const float *metric, long rows, long cols, long k, float *scratch);
/* N:M: in each row, in each group of m consecutive columns, zero the n entries with the smallest metric. */
void tk_prune_nm(float *w, const float *metric, long rows, long cols, long n, long m);

/* acc[j] += sum over rows of x[r, j]^2 (each call's sum in double), x row-major `rows x cols`. */
void tk_col_sumsq_acc(const float *x, long rows, long cols, float *acc);

/* |x| sum and dot products in double (diagnostics, importance). */
double tk_dot_d(const float *a, const float *b, long n);
double tk_sum_d(const float *x, long n);
#endif
