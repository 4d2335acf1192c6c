"""The C++ source of the fused CPU decode step (see moxin.model.fast.Decoder), compiled on first use.

One call runs a whole decode step (one new token per row, every layer, the output head): batch 1-8 decoding of a
small model is bound by reading the weights and by per-operator overhead, and a 30-layer model pays ~40 PyTorch
operators per layer per token in eager mode. The matrix-vector products read bf16 weights with AVX512_BF16
`vdpbf16ps`, or int8 weights (per-row bf16 scales) converted to fp32 in registers; every intermediate is rounded to
bf16 where the eager bf16 model rounds it, so only the order of fp32 accumulation differs from the eager model.

The one exception is the output: the logits stay fp32 instead of being rounded to bf16. At logits of 16-32 one bf16
step is 0.125-0.25, so the eager bf16 model's logits often tie exactly (measured on SmolLM2: 3 of its first 8
greedy divergences from other engines were at exact ties); fp32 logits break those ties as the fp32 model does, and
sampling reads fp32 logits anyway."""

from __future__ import annotations

SOURCE = r"""
#include <torch/extension.h>
#include <immintrin.h>
#include <cmath>
#include <cstring>
#include <vector>
#include <omp.h>

typedef uint16_t bf;
static inline float f32(bf v) { uint32_t u = (uint32_t)v << 16; float f; std::memcpy(&f, &u, 4); return f; }
static inline bf b16(float f) { return c10::BFloat16(f).x; }
static inline float rb(float f) { return f32(b16(f)); }  // round through bf16

struct Lin { const void* w; const bf* s; int64_t N, K; };  // s == nullptr: bf16 weights, else int8 + scales

template <int R, int M>
static void dot_bf16(const Lin& L, const bf* X, int64_t n, float* Y, int64_t ldy) {
  const bf* W = (const bf*)L.w; const int64_t K = L.K;
  __m512 acc[R][M];
  for (int r = 0; r < R; ++r) for (int m = 0; m < M; ++m) acc[r][m] = _mm512_setzero_ps();
  int64_t k = 0;
  for (; k + 32 <= K; k += 32) {  // full loads (see dot_i8), then the masked tail: the same order of sums
    __m512i xv[M];
    for (int m = 0; m < M; ++m) xv[m] = _mm512_loadu_si512(X + m * K + k);
    for (int r = 0; r < R; ++r) {
      __m512i wv = _mm512_loadu_si512(W + (n + r) * K + k);
      for (int m = 0; m < M; ++m) acc[r][m] = _mm512_dpbf16_ps(acc[r][m], (__m512bh)wv, (__m512bh)xv[m]);
    }
  }
  for (; k < K; k += 32) {
    __mmask32 mk = (__mmask32)((1u << (K - k)) - 1);
    __m512i xv[M];
    for (int m = 0; m < M; ++m) xv[m] = _mm512_maskz_loadu_epi16(mk, X + m * K + k);
    for (int r = 0; r < R; ++r) {
      __m512i wv = _mm512_maskz_loadu_epi16(mk, W + (n + r) * K + k);
      for (int m = 0; m < M; ++m) acc[r][m] = _mm512_dpbf16_ps(acc[r][m], (__m512bh)wv, (__m512bh)xv[m]);
    }
  }
  for (int r = 0; r < R; ++r) for (int m = 0; m < M; ++m) Y[m * ldy + n + r] = _mm512_reduce_add_ps(acc[r][m]);
}

// int8 weights: 64 at a time through full (unmasked) loads, widened to fp32 in four 16-lane parts; the masked
// 16-byte loads of the tail alone. Full loads matter on AMD Zen 5: with only masked 16-byte loads the output head
// (28 MB of int8) streamed at 3.6 GB/s per core, with full 64-byte loads at 14 (one-thread kernel timing; the decode
// step went from 24 to 10 ms). The sum over k runs in the same order either way: one accumulator per (row, input),
// 16 products at a time.
template <int R, int M>
static void dot_i8(const Lin& L, const float* X, int64_t n, float* Y, int64_t ldy) {
  const int8_t* W = (const int8_t*)L.w; const int64_t K = L.K;
  __m512 acc[R][M];
  for (int r = 0; r < R; ++r) for (int m = 0; m < M; ++m) acc[r][m] = _mm512_setzero_ps();
  int64_t k = 0;
  for (; k + 64 <= K; k += 64) {
    for (int r = 0; r < R; ++r) {
      __m512i w = _mm512_loadu_si512(W + (n + r) * K + k);
      __m512 wv[4] = {_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm512_castsi512_si128(w))),
                      _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm512_extracti32x4_epi32(w, 1))),
                      _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm512_extracti32x4_epi32(w, 2))),
                      _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm512_extracti32x4_epi32(w, 3)))};
      for (int m = 0; m < M; ++m)
        for (int j = 0; j < 4; ++j)
          acc[r][m] = _mm512_fmadd_ps(wv[j], _mm512_loadu_ps(X + m * K + k + 16 * j), acc[r][m]);
    }
  }
  for (; k < K; k += 16) {
    __mmask16 mk = K - k >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (K - k)) - 1);
    for (int r = 0; r < R; ++r) {
      __m512 wv = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(mk, W + (n + r) * K + k)));
      for (int m = 0; m < M; ++m) acc[r][m] = _mm512_fmadd_ps(wv, _mm512_maskz_loadu_ps(mk, X + m * K + k), acc[r][m]);
    }
  }
  for (int r = 0; r < R; ++r) {
    float s = f32(L.s[n + r]);
    for (int m = 0; m < M; ++m) Y[m * ldy + n + r] = _mm512_reduce_add_ps(acc[r][m]) * s;
  }
}

template <int R, int M>
static void rows_m(const Lin& L, const bf* Xb, const float* Xf, int64_t n0, int64_t n1, float* Y, int64_t ldy) {
  int64_t n = n0;
  for (; n + R <= n1; n += R) L.s ? dot_i8<R, M>(L, Xf, n, Y, ldy) : dot_bf16<R, M>(L, Xb, n, Y, ldy);
  for (; n < n1; ++n) L.s ? dot_i8<1, M>(L, Xf, n, Y, ldy) : dot_bf16<1, M>(L, Xb, n, Y, ldy);
}

// Y (M, ldy) fp32 rows [n0, n1) = X (M, K) . W[n0:n1]^T (times the row scales for int8); M <= 8.
static void rows(const Lin& L, const bf* Xb, const float* Xf, int64_t M, int64_t n0, int64_t n1, float* Y,
                 int64_t ldy) {
  switch (M) {
    case 1: rows_m<4, 1>(L, Xb, Xf, n0, n1, Y, ldy); break;
    case 2: rows_m<2, 2>(L, Xb, Xf, n0, n1, Y, ldy); break;
    case 3: rows_m<2, 3>(L, Xb, Xf, n0, n1, Y, ldy); break;
    case 4: rows_m<2, 4>(L, Xb, Xf, n0, n1, Y, ldy); break;
    case 5: rows_m<1, 5>(L, Xb, Xf, n0, n1, Y, ldy); break;
    case 6: rows_m<1, 6>(L, Xb, Xf, n0, n1, Y, ldy); break;
    case 7: rows_m<1, 7>(L, Xb, Xf, n0, n1, Y, ldy); break;
    default: rows_m<1, 8>(L, Xb, Xf, n0, n1, Y, ldy); break;
  }
}

// Rows [n0, n1) of Y (M, ldy) = X (M, K) . W^T for any M, in blocks of 8 rows of X.
static void rows_all(const Lin& L, const bf* Xb, const float* Xf, int64_t M, int64_t n0, int64_t n1, float* Y,
                     int64_t ldy) {
  for (int64_t m0 = 0; m0 < M; m0 += 8)
    rows(L, Xb + m0 * L.K, Xf + m0 * L.K, std::min<int64_t>(8, M - m0), n0, n1, Y + m0 * ldy, ldy);
}

static Lin lin(const torch::Tensor& w, const torch::Tensor& s) {
  return Lin{w.data_ptr(), s.defined() && s.numel() ? (const bf*)s.data_ptr() : nullptr, w.size(0), w.size(1)};
}

// h (M, D) = weight * bf16(rms_norm(fp32 x)); also its fp32 copy for int8 products.
static void rmsnorm(const bf* x, const bf* w, int64_t M, int64_t D, double eps, bf* h, float* hf) {
  for (int64_t m = 0; m < M; ++m) {
    float ss = 0.f;
    for (int64_t i = 0; i < D; ++i) { float v = f32(x[m * D + i]); ss += v * v; }
    float r = 1.0f / std::sqrt(ss / (float)D + (float)eps);
    for (int64_t i = 0; i < D; ++i) {
      bf v = b16(f32(w[i]) * rb(f32(x[m * D + i]) * r));
      h[m * D + i] = v; hf[m * D + i] = f32(v);
    }
  }
}

static void rope(bf* x, const bf* c, const bf* s, int64_t D) {  // rotate-half, bf16 rounding as in eager
  int64_t h = D / 2;
  for (int64_t i = 0; i < h; ++i) {
    float a = f32(x[i]), b = f32(x[i + h]);
    x[i] = b16(rb(a * f32(c[i])) + rb(-b * f32(s[i])));
    x[i + h] = b16(rb(b * f32(c[i + h])) + rb(a * f32(s[i + h])));
  }
}

struct Geo { int64_t B, H, KH, D, S, n, slot; };

// Per (row, kv head): RoPE, write K/V into the cache slot, attend over the n filled slots (fp32 softmax).
static void attend(const Geo& g, bf* qkv, const bf* cs, const bf* sn, const bool* mask, bf* kc, bf* vc, bf* out,
                   float* outf, int64_t i0, int64_t i1, std::vector<float>& sc) {
  const int64_t G = g.H / g.KH, Nq = g.H * g.D, Nt = Nq + 2 * g.KH * g.D;
  const float scale = (float)(1.0 / std::sqrt((double)g.D));
  {
    for (int64_t i = i0; i < i1; ++i) {
      int64_t b = i / g.KH, kh = i % g.KH;
      bf* row = qkv + b * Nt;
      bf* k = row + Nq + kh * g.D; bf* v = row + Nq + g.KH * g.D + kh * g.D;
      rope(k, cs + b * g.D, sn + b * g.D, g.D);
      bf* K = kc + ((b * g.KH + kh) * g.S) * g.D; bf* V = vc + ((b * g.KH + kh) * g.S) * g.D;
      std::memcpy(K + g.slot * g.D, k, g.D * 2); std::memcpy(V + g.slot * g.D, v, g.D * 2);
      for (int64_t j = 0; j < G; ++j) {
        int64_t h = kh * G + j; bf* q = row + h * g.D;
        rope(q, cs + b * g.D, sn + b * g.D, g.D);
        float qf[512]; for (int64_t d = 0; d < g.D; ++d) qf[d] = f32(q[d]);
        float mx = -INFINITY;
        for (int64_t t = 0; t < g.n; ++t) {
          if (!mask[b * g.n + t]) { sc[t] = -INFINITY; continue; }
          float a = 0.f; const bf* kt = K + t * g.D;
          for (int64_t d = 0; d < g.D; ++d) a += qf[d] * f32(kt[d]);
          sc[t] = a * scale; mx = std::max(mx, sc[t]);
        }
        float sum = 0.f;
        for (int64_t t = 0; t < g.n; ++t) { sc[t] = std::exp(sc[t] - mx); sum += sc[t]; }
        float o[512] = {0};
        for (int64_t t = 0; t < g.n; ++t) {
          float p = sc[t] / sum; if (p == 0.f) continue; const bf* vt = V + t * g.D;
          for (int64_t d = 0; d < g.D; ++d) o[d] += p * f32(vt[d]);
        }
        for (int64_t d = 0; d < g.D; ++d) {
          bf r = b16(o[d]);
          out[b * Nq + h * g.D + d] = r;
          outf[b * Nq + h * g.D + d] = f32(r);
        }
      }
    }
  }
}

static void round_rows(const float* Y, int64_t ldy, int64_t M, int64_t n0, int64_t n1, bf* out, float* outf) {
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = n0; n < n1; ++n) {
      bf v = b16(Y[m * ldy + n]);
      out[m * ldy + n] = v;
      if (outf) outf[m * ldy + n] = f32(v);
    }
}

static void residual(bf* X, const float* Y, int64_t M, int64_t D, int64_t n0, int64_t n1) {
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = n0; n < n1; ++n) X[m * D + n] = b16(f32(X[m * D + n]) + rb(Y[m * D + n]));
}

// [a, b): this thread's share of N rows, in multiples of `align`.
static void split(int64_t N, int64_t align, int tid, int nt, int64_t& a, int64_t& b) {
  int64_t chunk = ((N + nt - 1) / nt + align - 1) / align * align;
  a = std::min(N, tid * chunk);
  b = std::min(N, a + chunk);
}

struct Step {
  int64_t B, Dm, L, Nq, Nkv, Nt, F, V;
  double eps;
  Geo g;
  const torch::Tensor* w; const torch::Tensor* s;
  Lin head; const bf* norm;
  bf* X; float* LG; bf* qkv; bf* att; float* attf; bf* act; float* actf; float* y; float* y2;
  bf* kc; bf* vc; const bf* cs; const bf* sn; const bool* mask;
};

// One thread's part of the step; the threads meet at a barrier wherever a phase needs all rows of the one before.
static void run_thread(const Step& p, int tid, int nt) {
  const int64_t B = p.B, Dm = p.Dm, Nq = p.Nq, Nkv = p.Nkv, Nt = p.Nt, F = p.F;
  std::vector<bf> h(B * Dm); std::vector<float> hf(B * Dm), sc(p.g.n);  // this thread's normed input
  int64_t a, b;
  for (int64_t l = 0; l < p.L; ++l) {
    const torch::Tensor* W = p.w + 9 * l; const torch::Tensor* Sc = p.s + 7 * l;
    const Lin seg[3] = {lin(W[1], Sc[0]), lin(W[2], Sc[1]), lin(W[3], Sc[2])};
    rmsnorm(p.X, (const bf*)W[0].data_ptr(), B, Dm, p.eps, h.data(), hf.data());
    split(Nt, 4, tid, nt, a, b);
    int64_t off[3] = {0, Nq, Nq + Nkv};
    for (int i = 0; i < 3; ++i) {
      int64_t lo = std::max(a, off[i]), hi = std::min(b, off[i] + seg[i].N);
      if (lo < hi) rows_all(seg[i], h.data(), hf.data(), B, lo - off[i], hi - off[i], p.y + off[i], Nt);
    }
    round_rows(p.y, Nt, B, a, b, p.qkv, nullptr);
    #pragma omp barrier
    split(B * p.g.KH, 1, tid, nt, a, b);
    int64_t cstride = B * p.g.KH * p.g.S * p.g.D;
    attend(p.g, p.qkv, p.cs, p.sn, p.mask, p.kc + l * cstride, p.vc + l * cstride, p.att, p.attf, a, b, sc);
    #pragma omp barrier
    split(Dm, 4, tid, nt, a, b);
    rows_all(lin(W[4], Sc[3]), p.att, p.attf, B, a, b, p.y, Dm);
    residual(p.X, p.y, B, Dm, a, b);
    #pragma omp barrier
    rmsnorm(p.X, (const bf*)W[5].data_ptr(), B, Dm, p.eps, h.data(), hf.data());
    split(F, 4, tid, nt, a, b);
    rows_all(lin(W[6], Sc[4]), h.data(), hf.data(), B, a, b, p.y, F);
    rows_all(lin(W[7], Sc[5]), h.data(), hf.data(), B, a, b, p.y2, F);
    for (int64_t m = 0; m < B; ++m)
      for (int64_t j = a; j < b; ++j) {
        float gt = rb(p.y[m * F + j]), si = rb(gt / (1.0f + std::exp(-gt)));
        bf v = b16(si * rb(p.y2[m * F + j]));
        p.act[m * F + j] = v; p.actf[m * F + j] = f32(v);
      }
    #pragma omp barrier
    split(Dm, 4, tid, nt, a, b);
    rows_all(lin(W[8], Sc[6]), p.act, p.actf, B, a, b, p.y, Dm);
    residual(p.X, p.y, B, Dm, a, b);
    #pragma omp barrier
  }
  rmsnorm(p.X, p.norm, B, Dm, p.eps, h.data(), hf.data());
  split(p.V, 4, tid, nt, a, b);
  rows_all(p.head, h.data(), hf.data(), B, a, b, p.LG, p.V);  // fp32 logits: not rounded to bf16 (see module doc)
}

// One decode step: x (B, dim) bf16 embeddings of the new tokens; cos/sin (B, D) bf16 at their positions; w: per layer
// attn_norm, q, k, v, o, mlp_norm, gate, up, down; s: per layer the 7 linears' int8 scales (or empty tensors);
// caches (L, B, KH, S, D) bf16, written at `slot`; mask (B, n) over the first n slots. Returns fp32 logits (B, V).
// One OpenMP region for the whole step: 5 barriers per layer instead of a fork and a join per operator.
torch::Tensor decode_step(torch::Tensor x, torch::Tensor cs, torch::Tensor sn, std::vector<torch::Tensor> w,
                          std::vector<torch::Tensor> s, torch::Tensor norm, torch::Tensor head, torch::Tensor head_s,
                          torch::Tensor kc, torch::Tensor vc, int64_t slot, torch::Tensor mask, double eps,
                          int64_t H, int64_t KH, int64_t threads) {
  x = x.clone();
  const int64_t B = x.size(0), Dm = x.size(1), D = kc.size(4), Nt = (H + 2 * KH) * D, F = w[6].size(0);
  auto logits = torch::empty({B, head.size(0)}, torch::kFloat32);
  py::gil_scoped_release nogil;
  std::vector<bf> qkv(B * Nt), att(B * H * D), act(B * F);
  std::vector<float> attf(B * H * D), actf(B * F), y(B * std::max({Dm, F, Nt})), y2(B * F);
  Geo g{B, H, KH, D, kc.size(3), mask.size(1), slot};
  Step p{B, Dm, kc.size(0), H * D, KH * D, Nt, F, head.size(0), eps, g, w.data(), s.data(), lin(head, head_s),
         (const bf*)norm.data_ptr(), (bf*)x.data_ptr(), logits.data_ptr<float>(), qkv.data(), att.data(),
         attf.data(), act.data(), actf.data(), y.data(), y2.data(), (bf*)kc.data_ptr(), (bf*)vc.data_ptr(),
         (const bf*)cs.data_ptr(), (const bf*)sn.data_ptr(), mask.data_ptr<bool>()};
  #pragma omp parallel num_threads(std::max<int64_t>(1, threads))
  run_thread(p, omp_get_thread_num(), omp_get_num_threads());
  return logits;
}
"""
