// Native CPU kernels of the HTS-AT audio tower, float32 (sat2sound_core.model.native): a fused Swin
// window attention and a row-wise LayerNorm.
//
// Window attention.
// One task is one (window, head): S = Q·Kᵀ·scale + bias, softmax over the keys, O = P·V. The task's
// score matrix (at most 64×64 floats) stays in L1 instead of streaming through memory between three
// library calls, and the exponentials run on 16-wide vectors. Everything is laid out transposed
// (key-major: row j holds the scores of key j against every query), so the max, the exponentials and
// the sums of the softmax are element-wise vector operations across rows and every inner loop is a
// 16-wide multiply-add. Tasks run on PyTorch's own thread pool (at::parallel_for).
//
// Inputs: qkv (R, 3C) float32 contiguous, the qkv projection of R/N whole windows of N tokens
// (row-major inside a window; columns q | k | v, each split into `heads` heads of D = C/heads);
// rel_t (heads, N, NP): the relative-position bias transposed ([key][query]) and padded to
// NP = 16·ceil(N/16) queries; mask_t (M, N, NP), same layout, the shifted-window mask of M windows
// (M = 0: none), window w of this call adding mask_t[(first + w) % M]. Output: (R, C), head-major
// columns, the layout the output projection reads.

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace {

typedef float v16 __attribute__((vector_size(64), aligned(4)));
typedef std::int32_t vi16 __attribute__((vector_size(64), aligned(4)));

inline v16 load(const float* p) { v16 v; std::memcpy(&v, p, sizeof v); return v; }
inline void store(float* p, v16 v) { std::memcpy(p, &v, sizeof v); }
inline v16 splat(float x) { return v16{} + x; }
inline v16 vmax(v16 a, v16 b) { return a > b ? a : b; }

inline v16 bias_row(const float* rel_t, const float* mask_t, std::int64_t at) {
  return mask_t ? load(rel_t + at) + load(mask_t + at) : load(rel_t + at);
}

// exp(x) for x <= 0: Cody-Waite reduction x = n·ln2 + r, |r| <= ln2/2, degree-7 Taylor polynomial
// (truncation error < 6e-9 relative), scaled by 2^n through the exponent bits. Inputs below -87.3
// (where exp underflows to a denormal) give exp(-87.3) ~ 1e-38 instead.
inline v16 exp_nonpositive(v16 x) {
  x = vmax(x, splat(-87.3f));
  const v16 round = splat(12582912.0f);  // 1.5·2^23: adding and subtracting it rounds to an integer
  v16 n = (x * 1.44269504088896341f + round) - round;
  v16 r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  v16 p = splat(1.0f / 5040.0f);
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  vi16 bits = (__builtin_convertvector(n, vi16) + 127) << 23;
  v16 scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

typedef float v8 __attribute__((vector_size(32), aligned(4)));

inline v8 load8(const float* p) { v8 v; std::memcpy(&v, p, sizeof v); return v; }
inline void store8(float* p, v8 v) { std::memcpy(p, &v, sizeof v); }

// O = P·V / sum for head size 24, eight query rows at a time, each output row as one 16-wide and one
// 8-wide vector: the same multiply-add work as the transposed form, without transposing the result.
template <int NV>
void rows24(const float* v, const float* st, const v16* inv, float* out, std::int64_t n,
            std::int64_t stride, std::int64_t out_stride) {
  constexpr int NP = 16 * NV;
  alignas(64) float scale[NP];
  for (int c = 0; c < NV; ++c) store(scale + 16 * c, inv[c]);
  std::int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    v16 a[8];
    v8 b[8];
    for (int r = 0; r < 8; ++r) { a[r] = v16{}; b[r] = v8{}; }
    for (std::int64_t j = 0; j < n; ++j) {
      const v16 lo = load(v + j * stride);
      const v8 hi = load8(v + j * stride + 16);
      const float* p = st + j * NP + i;
      for (int r = 0; r < 8; ++r) {
        a[r] += p[r] * lo;
        b[r] += p[r] * hi;
      }
    }
    for (int r = 0; r < 8; ++r) {
      float* row = out + (i + r) * out_stride;
      store(row, a[r] * scale[i + r]);
      store8(row + 16, b[r] * scale[i + r]);
    }
  }
  for (; i < n; ++i) {
    v16 a = v16{};
    v8 b = v8{};
    for (std::int64_t j = 0; j < n; ++j) {
      const float p = st[j * NP + i];
      a += p * load(v + j * stride);
      b += p * load8(v + j * stride + 16);
    }
    float* row = out + i * out_stride;
    store(row, a * scale[i]);
    store8(row + 16, b * scale[i]);
  }
}

// One (window, head) task with NV query vectors (N <= 16·NV queries). q/k/v point at the head's first
// column in the window's first row; mask_t is null for an unmasked window; `stride` is the qkv row length; out points at the head's first
// output column; qt (D×NP) and st (N×NP) are per-thread scratch buffers.
template <int NV>
void attend(const float* q, const float* k, const float* v, const float* rel_t, const float* mask_t,
            float* out,
            std::int64_t n, std::int64_t d, std::int64_t stride, std::int64_t out_stride, float scale,
            float* qt, float* st, float* ot) {
  constexpr int NP = 16 * NV;
  // Qᵀ·scale, padded queries zero
  // (row by row: reading a column of qkv would touch one cache line per row, and rows a multiple of
  // 4 KiB apart fall into the same few L1 sets)
  for (std::int64_t i = 0; i < n; ++i) {
    const float* row = q + i * stride;
    for (std::int64_t e = 0; e < d; ++e) qt[e * NP + i] = row[e] * scale;
  }
  for (std::int64_t e = 0; e < d; ++e)
    for (std::int64_t i = n; i < NP; ++i) qt[e * NP + i] = 0.0f;
  // Sᵀ[j] = bias[j] + Σ_e K[j][e]·Qᵀ[e], four keys at a time; running max over keys per query
  v16 mx[NV];
  for (int c = 0; c < NV; ++c) mx[c] = splat(-3.0e38f);
  std::int64_t j = 0;
  for (; j + 4 <= n; j += 4) {
    v16 a0[NV], a1[NV], a2[NV], a3[NV];
    for (int c = 0; c < NV; ++c) {
      a0[c] = bias_row(rel_t, mask_t, j * NP + 16 * c);
      a1[c] = bias_row(rel_t, mask_t, (j + 1) * NP + 16 * c);
      a2[c] = bias_row(rel_t, mask_t, (j + 2) * NP + 16 * c);
      a3[c] = bias_row(rel_t, mask_t, (j + 3) * NP + 16 * c);
    }
    const float* k0 = k + j * stride;
    const float* k1 = k0 + stride;
    const float* k2 = k1 + stride;
    const float* k3 = k2 + stride;
    for (std::int64_t e = 0; e < d; ++e) {
      const v16 b0 = splat(k0[e]), b1 = splat(k1[e]), b2 = splat(k2[e]), b3 = splat(k3[e]);
      for (int c = 0; c < NV; ++c) {
        const v16 qv = load(qt + e * NP + 16 * c);
        a0[c] += b0 * qv;
        a1[c] += b1 * qv;
        a2[c] += b2 * qv;
        a3[c] += b3 * qv;
      }
    }
    for (int c = 0; c < NV; ++c) {
      store(st + j * NP + 16 * c, a0[c]);
      store(st + (j + 1) * NP + 16 * c, a1[c]);
      store(st + (j + 2) * NP + 16 * c, a2[c]);
      store(st + (j + 3) * NP + 16 * c, a3[c]);
      mx[c] = vmax(mx[c], vmax(vmax(a0[c], a1[c]), vmax(a2[c], a3[c])));
    }
  }
  for (; j < n; ++j) {
    v16 a0[NV];
    for (int c = 0; c < NV; ++c) a0[c] = bias_row(rel_t, mask_t, j * NP + 16 * c);
    const float* k0 = k + j * stride;
    for (std::int64_t e = 0; e < d; ++e) {
      const v16 b0 = splat(k0[e]);
      for (int c = 0; c < NV; ++c) a0[c] += b0 * load(qt + e * NP + 16 * c);
    }
    for (int c = 0; c < NV; ++c) {
      store(st + j * NP + 16 * c, a0[c]);
      mx[c] = vmax(mx[c], a0[c]);
    }
  }
  // Pᵀ = exp(Sᵀ - max), column sums
  v16 sum[NV];
  for (int c = 0; c < NV; ++c) sum[c] = v16{};
  for (j = 0; j < n; ++j) {
    for (int c = 0; c < NV; ++c) {
      const v16 p = exp_nonpositive(load(st + j * NP + 16 * c) - mx[c]);
      store(st + j * NP + 16 * c, p);
      sum[c] += p;
    }
  }
  v16 inv[NV];
  for (int c = 0; c < NV; ++c) inv[c] = splat(1.0f) / sum[c];
  if (d == 24) {  // the HTS-AT head size: rows straight into the output, no transpose
    rows24<NV>(v, st, inv, out, n, stride, out_stride);
    return;
  }
  // Oᵀ[e] = Σ_j V[j][e]·Pᵀ[j] / sum, four output columns at a time
  std::int64_t e = 0;
  for (; e + 4 <= d; e += 4) {
    v16 o0[NV], o1[NV], o2[NV], o3[NV];
    for (int c = 0; c < NV; ++c) o0[c] = o1[c] = o2[c] = o3[c] = v16{};
    for (j = 0; j < n; ++j) {
      const float* vj = v + j * stride + e;
      const v16 b0 = splat(vj[0]), b1 = splat(vj[1]), b2 = splat(vj[2]), b3 = splat(vj[3]);
      for (int c = 0; c < NV; ++c) {
        const v16 p = load(st + j * NP + 16 * c);
        o0[c] += b0 * p;
        o1[c] += b1 * p;
        o2[c] += b2 * p;
        o3[c] += b3 * p;
      }
    }
    for (int c = 0; c < NV; ++c) {
      store(ot + e * NP + 16 * c, o0[c] * inv[c]);
      store(ot + (e + 1) * NP + 16 * c, o1[c] * inv[c]);
      store(ot + (e + 2) * NP + 16 * c, o2[c] * inv[c]);
      store(ot + (e + 3) * NP + 16 * c, o3[c] * inv[c]);
    }
  }
  for (; e < d; ++e) {
    v16 o0[NV];
    for (int c = 0; c < NV; ++c) o0[c] = v16{};
    for (j = 0; j < n; ++j) {
      const v16 b0 = splat(v[j * stride + e]);
      for (int c = 0; c < NV; ++c) o0[c] += b0 * load(st + j * NP + 16 * c);
    }
    for (int c = 0; c < NV; ++c) store(ot + e * NP + 16 * c, o0[c] * inv[c]);
  }
  // Oᵀ → the output rows
  for (std::int64_t i = 0; i < n; ++i) {
    float* row = out + i * out_stride;
    for (e = 0; e < d; ++e) row[e] = ot[e * NP + i];
  }
}

template <int NV>
void run(const float* qkv, const float* rel_t, const float* mask_t, float* out, std::int64_t windows,
         std::int64_t masks, std::int64_t first, std::int64_t heads, std::int64_t n, std::int64_t d,
         double scale) {
  constexpr int NP = 16 * NV;
  const std::int64_t c = heads * d, stride = 3 * c;
  at::parallel_for(0, windows * heads, 1, [&](std::int64_t begin, std::int64_t end) {
    std::vector<float> scratch(static_cast<std::size_t>((2 * d + n) * NP));
    float* qt = scratch.data();
    float* ot = qt + d * NP;
    float* st = ot + d * NP;
    for (std::int64_t task = begin; task < end; ++task) {
      const std::int64_t w = task / heads, h = task % heads;
      const float* base = qkv + w * n * stride + h * d;
      const float* mask = masks ? mask_t + ((first + w) % masks) * n * NP : nullptr;
      attend<NV>(base, base + c, base + 2 * c, rel_t + h * n * NP, mask, out + w * n * c + h * d, n, d,
                 stride, c, static_cast<float>(scale), qt, st, ot);
    }
  });
}

at::Tensor window_attention(const at::Tensor& qkv, const at::Tensor& rel_t, const at::Tensor& mask_t,
                            std::int64_t first, double scale) {
  TORCH_CHECK(qkv.device().is_cpu() && rel_t.device().is_cpu() && mask_t.device().is_cpu(),
              "window_attention: CPU tensors only");
  TORCH_CHECK(qkv.scalar_type() == at::kFloat && rel_t.scalar_type() == at::kFloat &&
                  mask_t.scalar_type() == at::kFloat,
              "window_attention: float32 tensors only");
  TORCH_CHECK(qkv.dim() == 2 && qkv.is_contiguous(), "window_attention: qkv must be (R, 3C) contiguous");
  TORCH_CHECK(rel_t.dim() == 3 && rel_t.is_contiguous() && mask_t.dim() == 3 && mask_t.is_contiguous(),
              "window_attention: rel_t (heads, N, NP) and mask_t (M, N, NP) must be contiguous");
  const std::int64_t rows = qkv.size(0), c = qkv.size(1) / 3, heads = rel_t.size(0);
  const std::int64_t n = rel_t.size(1), np = rel_t.size(2), masks = mask_t.size(0);
  TORCH_CHECK(qkv.size(1) == 3 * c && heads > 0 && c % heads == 0, "window_attention: bad channel count");
  TORCH_CHECK(n > 0 && n <= 64 && np == 16 * ((n + 15) / 16),
              "window_attention: rel_t must be (heads, N, 16·ceil(N/16)) with N <= 64");
  TORCH_CHECK(masks == 0 || (mask_t.size(1) == n && mask_t.size(2) == np),
              "window_attention: mask_t must be (M, N, NP) like rel_t");
  TORCH_CHECK(rows % n == 0, "window_attention: rows must be whole windows");
  TORCH_CHECK(first >= 0, "window_attention: first must be >= 0");
  const std::int64_t windows = rows / n, d = c / heads;
  at::Tensor out = at::empty({rows, c}, qkv.options());
  const float* q = qkv.data_ptr<float>();
  const float* r = rel_t.data_ptr<float>();
  const float* m = masks ? mask_t.data_ptr<float>() : nullptr;
  float* o = out.data_ptr<float>();
  switch (np / 16) {
    case 1: run<1>(q, r, m, o, windows, masks, first, heads, n, d, scale); break;
    case 2: run<2>(q, r, m, o, windows, masks, first, heads, n, d, scale); break;
    case 3: run<3>(q, r, m, o, windows, masks, first, heads, n, d, scale); break;
    default: run<4>(q, r, m, o, windows, masks, first, heads, n, d, scale); break;
  }
  return out;
}

// LayerNorm of each row of x (R, C), float32: two passes over the row (mean, then the mean squared
// deviation; PyTorch's biased variance), y = (x - mean)·rsqrt(var + eps)·weight + bias. Rows are
// independent and run in parallel; a row of C <= 4096 floats stays in L1 between the passes.
void layer_norm_rows(const float* x, const float* w, const float* b, float* y, std::int64_t rows,
                     std::int64_t c, float eps) {
  const std::int64_t full = c / 16 * 16;
  at::parallel_for(0, rows, 64, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t r = begin; r < end; ++r) {
      const float* in = x + r * c;
      float* out = y + r * c;
      v16 acc = v16{};
      float tail = 0.0f;
      for (std::int64_t k = 0; k < full; k += 16) acc += load(in + k);
      for (std::int64_t k = full; k < c; ++k) tail += in[k];
      float sum = tail;
      for (int l = 0; l < 16; ++l) sum += acc[l];
      const float mean = sum / static_cast<float>(c);
      v16 dev = v16{};
      float dev_tail = 0.0f;
      for (std::int64_t k = 0; k < full; k += 16) {
        const v16 t = load(in + k) - mean;
        dev += t * t;
      }
      for (std::int64_t k = full; k < c; ++k) dev_tail += (in[k] - mean) * (in[k] - mean);
      float var = dev_tail;
      for (int l = 0; l < 16; ++l) var += dev[l];
      const float rstd = 1.0f / std::sqrt(var / static_cast<float>(c) + eps);
      for (std::int64_t k = 0; k < full; k += 16)
        store(out + k, (load(in + k) - mean) * rstd * load(w + k) + load(b + k));
      for (std::int64_t k = full; k < c; ++k) out[k] = (in[k] - mean) * rstd * w[k] + b[k];
    }
  });
}

at::Tensor layer_norm(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, double eps) {
  TORCH_CHECK(x.device().is_cpu() && weight.device().is_cpu() && bias.device().is_cpu(),
              "layer_norm: CPU tensors only");
  TORCH_CHECK(x.scalar_type() == at::kFloat && weight.scalar_type() == at::kFloat &&
                  bias.scalar_type() == at::kFloat,
              "layer_norm: float32 tensors only");
  TORCH_CHECK(x.dim() >= 1 && x.is_contiguous(), "layer_norm: x must be contiguous");
  const std::int64_t c = x.size(-1);
  TORCH_CHECK(c > 0 && weight.dim() == 1 && weight.size(0) == c && bias.dim() == 1 && bias.size(0) == c &&
                  weight.is_contiguous() && bias.is_contiguous(),
              "layer_norm: weight and bias must be (C,) like the last axis of x");
  at::Tensor y = at::empty(x.sizes(), x.options());
  layer_norm_rows(x.data_ptr<float>(), weight.data_ptr<float>(), bias.data_ptr<float>(), y.data_ptr<float>(),
                  x.numel() / c, c, static_cast<float>(eps));
  return y;
}

}  // namespace

TORCH_LIBRARY(sat2sound, m) {
  m.def("window_attention(Tensor qkv, Tensor rel_t, Tensor mask_t, int first, float scale) -> Tensor");
  m.def("layer_norm(Tensor x, Tensor weight, Tensor bias, float eps) -> Tensor");
}

TORCH_LIBRARY_IMPL(sat2sound, CPU, m) {
  m.impl("window_attention", &window_attention);
  m.impl("layer_norm", &layer_norm);
}
