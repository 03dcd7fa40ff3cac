// The transformer's kernels, each a pure `_forward`/`_backward` pair over caller-owned buffers.
// Legend: N rows (packed real tokens of a batch), C channels, OC output channels, V vocabulary,
// NH heads, hd = C/NH head size, B sequences, T longest sequence of the batch.
// Conventions: no kernel allocates; each parallelises with OpenMP inside and must not be called
// from inside another parallel region; `_backward` ADDS into every gradient it writes (+=), so
// residual branches and tied weights need no special case. Matrices are row-major; weights use the
// Hugging Face GPT-2 (Conv1D) layout [in, out].
#ifndef KERNELS_H
#define KERNELS_H
#include <stdint.h>

// Buffer helpers, parallel: a large memset or memcpy on one thread leaves the other cores
// spinning at the next barrier.
void vec_zero(float *x, int64_t n);
void vec_copy(float *dst, const float *src, int64_t n);

// out (N,C) = wte[token] + wpe[pos]
void encoder_forward(float *out, const int32_t *tokens, const int32_t *pos, const float *wte,
                     const float *wpe, int64_t N, int C);
void encoder_backward(float *dwte, float *dwpe, const float *dout, const int32_t *tokens,
                      const int32_t *pos, int64_t N, int C, int V, int maxT);

// out (N,C) = (inp - mean) * rstd * weight + bias; mean, rstd (N) saved for backward
void layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *weight,
                       const float *bias, int64_t N, int C, float eps);
void layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                        const float *inp, const float *weight, const float *mean, const float *rstd,
                        int64_t N, int C);

// out (N,OC) = beta_one ? out + inp @ weight + bias : inp @ weight + bias.
// inp (N,C), weight (C,OC), bias (OC) or NULL. beta_one lets a residual add fuse into the product.
// 2 to 8 rows (C up to 4096) stream the weight once, each output summed in one fixed order;
// more rows go to sgemm.
void matmul_forward(float *out, const float *inp, const float *weight, const float *bias,
                    int64_t N, int C, int OC, int beta_one);
// LM head: out (M,V) = inp (M,C) @ wte^T, wte (V,C)
void logits_forward(float *out, const float *inp, const float *wte, int64_t M, int V, int C);
// The `_fixed` forwards (matmul_forward_fixed, linear_forward_fixed, logits_forward_fixed): the
// same products, but a row's result never depends on the rows beside it or on the thread count.
// Where the library's sgemm gives that (blas_rows_fixed, blas.h: OpenBLAS's AVX-512 and
// Sandybridge kernels) they are the plain forwards; where it does not (its AVX2 and generic
// kernels round a product's last rows in other micro-kernels) every row count goes to the few-row
// kernels, 64 or 16 rows at a time, which costs time for many rows. The models use them for
// forwards no backward follows (frozen and inference-only models: model.h), whose numbers are
// stored and compared: a sequence's log-probabilities or score then do not depend on the
// sequences packed with it; trained models keep sgemm, whose rows are the same in their forward
// and backward, which see the same batch.
void matmul_forward_fixed(float *out, const float *inp, const float *weight, const float *bias,
                          int64_t N, int C, int OC, int beta_one);
void logits_forward_fixed(float *out, const float *inp, const float *wte, int64_t M, int V,
                          int C);
// Decoding's counterparts (the KV-cache step only: generate.c through model.h): the same
// products, but 2 to KERNELS_DECODE_ROWS rows (matmul_forward_decode; any C) or 2 to
// KERNELS_DECODE_ROWDOT_ROWS (the [out, in] products: the LM head, the Llama-style layers) stream
// the weight once and sum each output in the order the 2-8 rows of matmul_forward /
// logits_forward / linear_forward use, so a decoded row's bits depend neither on how many rows
// share the step (up to those counts) nor on the thread count. For 2-8 rows they give those
// functions' bits; for more rows not sgemm's, which is why full forwards, whose log-probs must not
// depend on the company of a sequence in its micro-batch, do not use them. More rows go to sgemm
// (as a prompt's prefill does): the counts are where sgemm, which packs the weight first, started
// to take less CPU on one thread (AVX2's tiles of 8 rows x 1 vector are bound by loads; the
// row-dot tiles of 4 inputs by 4 weight rows by their loads from L2 at more than 16 rows).
#ifdef __AVX512F__
#define KERNELS_DECODE_ROWS 64
#define KERNELS_DECODE_ROWDOT_ROWS 16
#else
#define KERNELS_DECODE_ROWS 16
#define KERNELS_DECODE_ROWDOT_ROWS 8
#endif
void matmul_forward_decode(float *out, const float *inp, const float *weight, const float *bias,
                           int64_t N, int C, int OC, int beta_one);
void logits_forward_decode(float *out, const float *inp, const float *wte, int64_t M, int V,
                           int C);
// dinp (N,C) or NULL, dweight (C,OC) or NULL (frozen), dbias (OC) or NULL, dout (N,OC)
void matmul_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                     const float *weight, int64_t N, int C, int OC);

// Causal self-attention over packed sequences: sequence b occupies rows off[b] .. off[b+1]-1.
// qkv (N,3C) holds [q | k | v]; out (N,C); att holds each (b,h)'s softmax rows, sequence b's
// block of NH*len*len floats starting at att_off[b] (att_off (B) prefix sums of NH*len^2).
void attention_forward(float *out, float *att, const float *qkv, const int64_t *off,
                       const int64_t *att_off, int B, int C, int NH);
// scratch: as large as att (d-scores).
void attention_backward(float *dqkv, float *scratch, const float *dout, const float *qkv,
                        const float *att, const int64_t *off, const int64_t *att_off, int B, int C,
                        int NH);

// GELU, tanh approximation (GPT-2's)
void gelu_forward(float *out, const float *inp, int64_t n);
void gelu_backward(float *dinp, const float *inp, const float *dout, int64_t n);

// Token log-probabilities from logits, one row at a time, never more than the rows given.
// logits (M,V) in place; lse (M) saved; target (M) with -1 = none; logp (M) = logits[target]-lse
// (0 where no target); entropy (M) or NULL.
void logprob_forward(float *logp, float *entropy, float *lse, const float *logits,
                     const int32_t *target, int64_t M, int V);
// Turns logits (M,V) into d(sum dlogp*logp)/dlogits in place (a row whose dlogp is 0 or target
// is -1 becomes 0). This is the fused softmax-cross-entropy backward: CE = -logp.
void logprob_backward(float *logits_to_dlogits, const float *lse, const int32_t *target,
                      const float *dlogp, int64_t M, int V);

// Scalar head: out (N) = inp (N,C) . w (C)
void score_forward(float *out, const float *inp, const float *w, int64_t N, int C);
void score_backward(float *dinp, float *dw, const float *dout, const float *inp, const float *w,
                    int64_t N, int C);

// ---- Llama-style kernels (see model.h for the block kind that uses them) ----

// out (N,OC) = [out +] inp (N,C) @ weight^T + bias, weight (OC,C) in the nn.Linear layout
// [out, in], bias (OC) or NULL; beta_one as matmul_forward. Up to 8 rows (decoding) stream the
// weight once (the LM head's kernels) instead of sgemm: the same to rounding, not bit for bit.
void linear_forward(float *out, const float *inp, const float *weight, const float *bias,
                    int64_t N, int C, int OC, int beta_one);
void linear_forward_fixed(float *out, const float *inp, const float *weight, const float *bias,
                          int64_t N, int C, int OC, int beta_one);
void linear_forward_decode(float *out, const float *inp, const float *weight, const float *bias,
                           int64_t N, int C, int OC, int beta_one);
// dinp (N,C) or NULL, dweight (OC,C) or NULL (frozen), dbias (OC) or NULL, dout (N,OC)
void linear_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                     const float *weight, int64_t N, int C, int OC);
// The `_set` kernels write their input gradient (=) instead of adding to it, with the same bits
// as adding into zeros: the caller saves zeroing the buffer (a pass over memory and a parallel
// region, whose hand-overs cost a sleeping thread's wake-up). Weight gradients still add.
void linear_backward_set(float *dinp, float *dweight, float *dbias, const float *dout,
                         const float *inp, const float *weight, int64_t N, int C, int OC);

// RMSNorm: out (N,C) = inp * rstd * weight, rstd (N) = 1 / sqrt(mean(inp^2) + eps) saved.
void rmsnorm_forward(float *out, float *rstd, const float *inp, const float *weight, int64_t N,
                     int C, float eps);
// ... and copy (N,C) = inp in the same pass: the block's residual, which the next product adds
// into (one parallel region and one read of inp instead of two)
void rmsnorm_forward_copy(float *out, float *rstd, const float *inp, const float *weight,
                          float *copy, int64_t N, int C, float eps);
void rmsnorm_backward(float *dinp, float *dweight, const float *dout, const float *inp,
                      const float *weight, const float *rstd, int64_t N, int C);

// RoPE frequencies: inv_freq (hd/2)[i] = theta^(-2i/hd), then Llama 3's scaling when
// scaling == 1 (factor, low_freq_factor, high_freq_factor, original_max_position_embeddings),
// computed in double and rounded once.
void rope_inv_freq(float *inv_freq, int hd, double theta, int scaling, double factor,
                   double low_freq_factor, double high_freq_factor, int original_max_pos);
// Rotates, in place, the heads of N rows: head h of row n is x[n*stride + h*hd .. +hd), rotated
// by angle pos[n] * inv_freq[i] in the HF rotate_half convention (element i pairs with i + hd/2).
// backward applies the inverse rotation to the gradient in place (the rotation is orthogonal).
void rope_forward(float *x, const int32_t *pos, const float *inv_freq, int64_t N, int nheads,
                  int hd, int64_t stride);
void rope_backward(float *dx, const int32_t *pos, const float *inv_freq, int64_t N, int nheads,
                   int hd, int64_t stride);
// The rotation's cosines and sines by position, for the fused attention below: row p of cs
// (npos, hd) holds the hd/2 cosines, then the hd/2 sines, of p * inv_freq[i], computed in double
// and rounded once as rope_forward computes them, so rotating with the table gives its bits.
void rope_table(float *cs, const float *inv_freq, int npos, int hd);

// SwiGLU: gu (N,2F) holds [gate | up] per row; out (N,F) = silu(gate) * up.
void swiglu_forward(float *out, const float *gu, int64_t N, int F);
void swiglu_backward(float *dgu, const float *dout, const float *gu, int64_t N, int F);
void swiglu_backward_set(float *dgu, const float *dout, const float *gu, int64_t N, int F);

// Grouped-query causal attention over packed sequences (as attention_forward): qkv (N, QKV) rows
// [NH q heads | KVH k heads | KVH v heads] of hd each (QKV = (NH + 2 KVH) hd); q head h reads
// kv head h / (NH / KVH). out (N, NH*hd); att as attention_forward (NH*len^2 per sequence).
// Scores are scaled by 1/sqrt(hd). GPT-2 is the case KVH = NH, hd = C/NH.
void attention_gqa_forward(float *out, float *att, const float *qkv, const int64_t *off,
                           const int64_t *att_off, int B, int NH, int KVH, int hd);
void attention_gqa_backward(float *dqkv, float *scratch, const float *dout, const float *qkv,
                            const float *att, const int64_t *off, const int64_t *att_off, int B,
                            int NH, int KVH, int hd);
void attention_gqa_backward_set(float *dqkv, float *scratch, const float *dout, const float *qkv,
                                const float *att, const int64_t *off, const int64_t *att_off,
                                int B, int NH, int KVH, int hd);
// RoPE fused into the attention's parallel tasks (one parallel region instead of two, no
// barrier between them): the forward first rotates, in place, the q and k heads that each
// (sequence, kv head) task reads, by the rows of rope_cs (rope_table) at pos[n]; the backward
// rotates back the q and k gradients each task has finished. The same bits as rope_forward then
// attention_gqa_forward, and attention_gqa_backward_set then rope_backward.
void attention_gqa_rope_forward(float *out, float *att, float *qkv, const int64_t *off,
                                const int64_t *att_off, int B, int NH, int KVH, int hd,
                                const int32_t *pos, const float *rope_cs);
void attention_gqa_rope_backward_set(float *dqkv, float *scratch, const float *dout,
                                     const float *qkv, const float *att, const int64_t *off,
                                     const int64_t *att_off, int B, int NH, int KVH, int hd,
                                     const int32_t *pos, const float *rope_cs);
#endif
