// Fused causal multi-head self-attention on packed q|k|v projections (forward and backward),
// used by LatheNN's CausalSelfAttention. The composed-op version is the reference in the tests.
#ifndef LATHE_ATTENTION_H
#define LATHE_ATTENTION_H

#ifdef __cplusplus
extern "C" {
#endif

/// Forward for the (batch, head) items [i0, i1) of B*H (item = b*H + h).
///   qkv : [B, T, 3*D] contiguous, D = H*hd: queries in columns [0, D), keys in [D, 2D),
///         values in [2D, 3D); head h uses columns h*hd ..< (h+1)*hd of each.
///   cos, sin : [T, hd] rotary tables ("rotate half" layout: x' = x cos + [-x2, x1] sin)
///         applied to q and k, or both NULL for none.
///   scale : multiplies q k^T (usually 1/sqrt(hd)).
///   y   : [B, T, D] out: softmax(scale q k^T + causal mask) v, heads side by side.
///   p   : [B, H, T, T] out: the attention probabilities (zero above the diagonal).
/// Returns 0, or -1 if scratch memory could not be allocated.
int lathe_attention_forward_f32(const float *qkv, const float *cos, const float *sin, long B,
                                long T, long H, long hd, float scale, long i0, long i1, float *y,
                                float *p);

/// Backward for the items [i0, i1): from dy [B, T, D], the forward's qkv and p, writes the
/// gradient dqkv [B, T, 3*D] (every element of the items' columns is written).
int lathe_attention_backward_f32(const float *dy, const float *qkv, const float *p,
                                 const float *cos, const float *sin, long B, long T, long H,
                                 long hd, float scale, long i0, long i1, float *dqkv);

#ifdef __cplusplus
}
#endif
#endif
