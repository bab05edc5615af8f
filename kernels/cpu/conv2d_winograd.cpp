// 3x3, stride 1, pad 1 convolution by Winograd's minimal filtering F(4x4, 3x3)
// (Lavin & Gray 2016): each 4x4 output tile is A^T [(G g G^T) .* (B^T d B)] A
// for the 6x6 input tile d around it, so the 9 * 16 = 144 multiply-adds of a
// tile and channel pair become 36, done as 36 GEMMs (one per point of the 6x6
// transform domain) over all tiles of the batch:
//
//   U[i][k][c] = (G w[k][c] G^T)[i]       filter transform
//   V[i][c][t] = (B^T d[c][t] B)[i]       input transform, t = tile of the batch
//   M[i][k][t] = sum_c U[i][k][c] V[i][c][t]   36 GEMMs on the GEMM's register tile
//   y[k][t]    = A^T M[.][k][t] A + bias  output transform, clipped to P x Q
//
// U is transformed once per call, straight into the GEMM's packed A layout.
// The tiles go in blocks of two packed B panels of 16: a thread transforms a
// block's inputs into V (36 x C x 32, in its L2), then for every 6 output
// channels multiplies into a small M (36 x 6 x 32, in L1) and transforms it
// into the output at once. Whole-layer V and M buffers (4.7 MB each for 128
// channels at 64 x 64) made every layer wait on memory and ran slower than
// the direct convolution inside the network.
//
// Not bit-identical to conv2d_forward (different rounding; the transforms'
// constants 1/4, 1/6, 1/12, 1/24 and 8 grow the error a little, see
// docs/cpu-kernels.md "Winograd"), so it is a separate kernel that the
// inference path chooses (ops::set_cpu_conv_algorithm) and tests bound against
// a float64 convolution. Results do not depend on the thread count.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "dofpose/error.h"
#include "kernels/cpu/cpu_kernels.h"

namespace dofpose::cpu {
namespace {

constexpr int kTile = 4;          // output tile edge
constexpr int kIn = kTile + 2;    // input tile edge (6)
constexpr int kPoints = kIn * kIn;  // 36 transform points
constexpr int kLanes = 8;         // tiles transformed together (one v8)

// Eight lanes (GCC / Clang vector extension: AVX2 registers where compiled
// for them, two SSE halves or scalars elsewhere; the helpers are inlined, so
// GCC's note on the ABI of 32-byte vector arguments without AVX is moot).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif
typedef float v8 __attribute__((vector_size(32)));
inline v8 load8(const float* p) {
  v8 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void store8(float* p, const v8& v) { std::memcpy(p, &v, sizeof v); }
#if defined(__clang__)
#define DOFPOSE_SHUFFLE8(a, b, ...) __builtin_shufflevector(a, b, __VA_ARGS__)
#else
typedef int i8 __attribute__((vector_size(32)));
#define DOFPOSE_SHUFFLE8(a, b, ...) __builtin_shuffle(a, b, i8{__VA_ARGS__})
#endif

// F(4x4, 3x3) with interpolation points 0, +-1, +-2, inf. G, B^T and A^T are
// written out in g6 / bt6 / at6 with their common subexpressions (fewer
// operations than the matrices' multiply-adds, most of whose entries are 0 or 1).

// r = G f (f: a filter's three taps down a column or along a row; T float or v8).
//   G = [1/4 0 0; -1/6 -1/6 -1/6; -1/6 1/6 -1/6; 1/24 1/12 1/6; 1/24 -1/12 1/6; 0 0 1]
template <class T>
inline void g6(const T f[3], T r[kIn]) {
  const T t = f[0] + f[2], p = (1.f / 24) * f[0] + (1.f / 6) * f[2], q = (1.f / 12) * f[1];
  r[0] = 0.25f * f[0];
  r[1] = (-1.f / 6) * (t + f[1]);
  r[2] = (-1.f / 6) * (t - f[1]);
  r[3] = p + q;
  r[4] = p - q;
  r[5] = f[2];
}

// r = B^T d (d: six values down a column or along a row; T float or v8).
//   B^T = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0; 0 -2 -1 2 1 0; 0 2 -1 -2 1 0; 0 4 0 -5 0 1]
template <class T>
inline void bt6(const T d[kIn], T r[kIn]) {
  const T t1 = d[4] - 4.f * d[2], t2 = d[3] - 4.f * d[1];
  const T t3 = d[4] - d[2], t4 = 2.f * (d[3] - d[1]);
  r[0] = 4.f * d[0] - 5.f * d[2] + d[4];
  r[1] = t1 + t2;
  r[2] = t1 - t2;
  r[3] = t3 + t4;
  r[4] = t3 - t4;
  r[5] = 4.f * d[1] - 5.f * d[3] + d[5];
}

// o = A^T m.  A^T = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1]
template <class T>
inline void at6(const T m[kIn], T o[kTile]) {
  const T a = m[1] + m[2], b = m[1] - m[2], c = m[3] + m[4], e = m[3] - m[4];
  o[0] = m[0] + a + c;
  o[1] = b + 2.f * e;
  o[2] = a + 4.f * c;
  o[3] = b + 8.f * e + m[5];
}

// 64-byte aligned scratch of the calling thread; grows only.
struct AlignedScratch {
  std::vector<float> buf;
  float* get(size_t n) {
    if (buf.size() < n + 16) buf.resize(n + 16);
    const uintptr_t p = reinterpret_cast<uintptr_t>(buf.data());
    return buf.data() + ((64 - p % 64) % 64) / sizeof(float);
  }
};

struct Geometry {
  int C, K, H, W, P, Q;
  int th, tw;  // tiles per image, vertically and horizontally
  int64_t T;   // tiles in the batch
  int KP;      // packed A panels: ceil(K / MR)
};

constexpr int MR = kGemmMR;
constexpr int NR = kGemmNR;  // tiles per block

// Up[i][kp][c][MR] = (G f G^T)[i] of filter f = w[kp*MR + r][c] at row r:
// the packed A panels of the 36 GEMMs (rows past K are zero). One (panel,
// channel) pair a step: its MR filters in the lanes of a v8, so each of the
// 36 results is MR contiguous floats of Up.
void transform_filters(const Geometry& g, const float* w, float* Up) {
  const size_t panel = size_t(g.C) * MR;
  const int64_t pairs = int64_t(g.KP) * g.C;
#if defined(DOFPOSE_WITH_OPENMP)
#pragma omp parallel for schedule(static) if (pairs > 256)
#endif
  for (int64_t pc = 0; pc < pairs; ++pc) {
    const int kp = int(pc / g.C), c = int(pc % g.C);
    float taps[9][kLanes] = {};  // taps[e][r]: tap e of filter row r (a plain array:
    for (int r = 0; r < MR && kp * MR + r < g.K; ++r) {  // lane inserts were slow)
      const float* src = w + (size_t(kp * MR + r) * g.C + c) * 9;
      for (int e = 0; e < 9; ++e) taps[e][r] = src[e];
    }
    v8 f[9];
    for (int e = 0; e < 9; ++e) f[e] = load8(taps[e]);
    v8 gf[kIn][3];  // G f, column by column
    for (int sx = 0; sx < 3; ++sx) {
      const v8 col[3] = {f[sx], f[3 + sx], f[6 + sx]};
      v8 r[kIn];
      g6(col, r);
      for (int i = 0; i < kIn; ++i) gf[i][sx] = r[i];
    }
    for (int i = 0; i < kIn; ++i) {
      v8 u[kIn];
      g6(gf[i], u);  // (G f) G^T along row i
      for (int j = 0; j < kIn; ++j)
        std::memcpy(Up + (size_t(i * kIn + j) * g.KP + kp) * panel + size_t(c) * MR, &u[j],
                    MR * sizeof(float));
    }
  }
}

// A run of tiles of one tile row inside a block: tiles tx0 .. tx1-1 of row ty
// of image n, at lanes lane .. lane + (tx1 - tx0) of the block.
struct Segment {
  int n, ty, tx0, tx1, lane;
};

// The segments of block [t0, t1) (at most NR tiles), in lane order.
int block_segments(const Geometry& g, int64_t t0, int64_t t1, Segment* out) {
  int count = 0;
  for (int64_t t = t0; t < t1;) {
    const int64_t per_image = int64_t(g.th) * g.tw;
    const int n = int(t / per_image), rem = int(t % per_image);
    const int ty = rem / g.tw, tx = rem % g.tw;
    const int tx1 = int(std::min<int64_t>(g.tw, tx + (t1 - t)));
    out[count++] = {n, ty, tx, tx1, int(t - t0)};
    t += tx1 - tx;
  }
  return count;
}

// V[j*6 + i][c][lane] (row stride NR) for the tiles of one segment and
// channel. The vertical half B^T d runs along the segment's six input rows
// (tr, eight columns a step), then the horizontal half takes eight tiles a
// step, their six columns gathered from tr by shuffles.
void input_segment(const Geometry& g, const Segment& sg, const float* xc, int c, float* tr,
                   float* V) {
  const float* rows[kIn];  // input rows ty*4-1 .. ty*4+4; nullptr outside
  for (int r = 0; r < kIn; ++r) {
    const int h = sg.ty * kTile - 1 + r;
    rows[r] = h >= 0 && h < g.H ? xc + int64_t(h) * g.W : nullptr;
  }
  // tr[j][col] for image columns q = tx0*4 - 1 + col, col < width (zero outside the image).
  const int tiles = sg.tx1 - sg.tx0, q_first = sg.tx0 * kTile - 1, width = tiles * kTile + 2;
  const int tr_w = width + kLanes;  // slack: the fifth load of the last group
  const v8 zero = {};
  int col = 0;
  for (; col + kLanes <= width; col += kLanes) {
    const int q = q_first + col;
    v8 d[kIn], r[kIn];
    if (q >= 0 && q + kLanes <= g.W) {
      for (int k = 0; k < kIn; ++k) d[k] = rows[k] ? load8(rows[k] + q) : zero;
    } else {
      for (int k = 0; k < kIn; ++k)
        for (int l = 0; l < kLanes; ++l)
          d[k][l] = rows[k] && q + l >= 0 && q + l < g.W ? rows[k][q + l] : 0.f;
    }
    bt6(d, r);
    for (int j = 0; j < kIn; ++j) store8(tr + size_t(j) * tr_w + col, r[j]);
  }
  for (; col < tr_w; ++col) {
    const int q = q_first + col;
    float d[kIn], r[kIn];
    for (int k = 0; k < kIn; ++k) d[k] = rows[k] && q >= 0 && q < g.W ? rows[k][q] : 0.f;
    bt6(d, r);
    for (int j = 0; j < kIn; ++j) tr[size_t(j) * tr_w + col] = r[j];
  }
  const size_t point = size_t(g.C) * NR;  // V's stride between transform points
  float* const v = V + size_t(c) * NR + sg.lane;
  int tx = 0;
  for (; tx + kLanes <= tiles; tx += kLanes)
    for (int j = 0; j < kIn; ++j) {
      // Tile l reads tr columns 4l .. 4l+5: d[u][l] = t[4l + u].
      const float* t = tr + size_t(j) * tr_w + tx * kTile;
      const v8 a = load8(t), b = load8(t + 8), e = load8(t + 16), f = load8(t + 24),
               h = load8(t + 32);
      v8 d[kIn], r[kIn];
#define DOFPOSE_COLUMN(u)                                                        \
  DOFPOSE_SHUFFLE8(DOFPOSE_SHUFFLE8(a, b, u, u + 4, u + 8, u + 12, 0, 0, 0, 0), \
                   DOFPOSE_SHUFFLE8(e, f, u, u + 4, u + 8, u + 12, 0, 0, 0, 0), \
                   0, 1, 2, 3, 8, 9, 10, 11)
      d[0] = DOFPOSE_COLUMN(0);
      d[1] = DOFPOSE_COLUMN(1);
      d[2] = DOFPOSE_COLUMN(2);
      d[3] = DOFPOSE_COLUMN(3);
#undef DOFPOSE_COLUMN
      d[4] = DOFPOSE_SHUFFLE8(d[0], h, 1, 2, 3, 4, 5, 6, 7, 8);  // t[4l + 4] = d[0][l + 1]
      d[5] = DOFPOSE_SHUFFLE8(d[1], h, 1, 2, 3, 4, 5, 6, 7, 9);
      bt6(d, r);
      for (int i = 0; i < kIn; ++i) store8(v + (j * kIn + i) * point + tx, r[i]);
    }
  for (; tx < tiles; ++tx)
    for (int j = 0; j < kIn; ++j) {
      float r[kIn];
      bt6(tr + size_t(j) * tr_w + tx * kTile, r);
      for (int i = 0; i < kIn; ++i) v[(j * kIn + i) * point + tx] = r[i];
    }
}

// The epilogue of one output row segment: v = acc + bias, then the fused
// conv's out_bn, ReLU and residual (conv2d_fused.cpp's arithmetic).
struct Epilogue {
  float bias = 0.f, mean = 0.f, scale = 1.f, shift = 0.f;
  bool bn = false, relu = false;
  const float* residual = nullptr;  // this plane's, or nullptr
  void apply(const float* acc, int count, int64_t at, float* y) const {
    float* const dst = y + at;
    for (int i = 0; i < count; ++i) {
      float v = acc[i] + bias;
      if (bn) v = (v - mean) * scale + shift;
      if (relu) v = v < 0.f ? 0.f : v;
      dst[i] = v;
    }
    // A loop of its own: inside the one above, GCC turned `if (residual)` into
    // masked loads from the null pointer, which cost a microcode assist each
    // on Zen 4 (a third of a layer's time).
    if (residual)
      for (int i = 0; i < count; ++i) dst[i] += residual[at + i];
  }
};

// y[n][k] = epilogue(A^T M A) for the tiles of one segment, clipped to the
// P x Q plane yk. m points at M[0][k][segment's first lane] (stride `point`
// between transform points). Eight tiles a step: A^T down then across, and
// the four 4 x 8 results interleaved into four rows of 32 outputs.
void output_segment(const Geometry& g, const Segment& sg, const float* m, size_t point,
                    const Epilogue& ep, float* yk) {
  const int tiles = sg.tx1 - sg.tx0;
  const int rows = std::min(kTile, g.P - sg.ty * kTile);
  int tx = 0;
  for (; tx + kLanes <= tiles; tx += kLanes) {
    v8 s1[kIn][kTile];  // A^T down each column j of M
    for (int j = 0; j < kIn; ++j) {
      v8 col[kIn];
      for (int i = 0; i < kIn; ++i) col[i] = load8(m + (j * kIn + i) * point + tx);
      at6(col, s1[j]);
    }
    v8 out[kTile][kTile];  // out[o2][o][l]: output row o2, column 4l + o
    for (int o = 0; o < kTile; ++o) {
      v8 across[kIn], r[kTile];
      for (int j = 0; j < kIn; ++j) across[j] = s1[j][o];
      at6(across, r);
      for (int o2 = 0; o2 < kTile; ++o2) out[o2][o] = r[o2];
    }
    const int q0 = (sg.tx0 + tx) * kTile, count = std::min(kLanes * kTile, g.Q - q0);
    for (int o2 = 0; o2 < rows; ++o2) {
      const v8* o = out[o2];
      const v8 lo01 = DOFPOSE_SHUFFLE8(o[0], o[1], 0, 8, 1, 9, 2, 10, 3, 11);
      const v8 lo23 = DOFPOSE_SHUFFLE8(o[2], o[3], 0, 8, 1, 9, 2, 10, 3, 11);
      const v8 hi01 = DOFPOSE_SHUFFLE8(o[0], o[1], 4, 12, 5, 13, 6, 14, 7, 15);
      const v8 hi23 = DOFPOSE_SHUFFLE8(o[2], o[3], 4, 12, 5, 13, 6, 14, 7, 15);
      float row[kLanes * kTile];
      store8(row, DOFPOSE_SHUFFLE8(lo01, lo23, 0, 1, 8, 9, 2, 3, 10, 11));
      store8(row + 8, DOFPOSE_SHUFFLE8(lo01, lo23, 4, 5, 12, 13, 6, 7, 14, 15));
      store8(row + 16, DOFPOSE_SHUFFLE8(hi01, hi23, 0, 1, 8, 9, 2, 3, 10, 11));
      store8(row + 24, DOFPOSE_SHUFFLE8(hi01, hi23, 4, 5, 12, 13, 6, 7, 14, 15));
      ep.apply(row, count, int64_t(sg.ty * kTile + o2) * g.Q + q0, yk);
    }
  }
  for (; tx < tiles; ++tx) {
    float s1[kIn][kTile];
    for (int j = 0; j < kIn; ++j) {
      float col[kIn];
      for (int i = 0; i < kIn; ++i) col[i] = m[(j * kIn + i) * point + tx];
      at6(col, s1[j]);
    }
    float out[kTile][kTile];  // out[o2][o]
    for (int o = 0; o < kTile; ++o) {
      float across[kIn], r[kTile];
      for (int j = 0; j < kIn; ++j) across[j] = s1[j][o];
      at6(across, r);
      for (int o2 = 0; o2 < kTile; ++o2) out[o2][o] = r[o2];
    }
    const int q0 = (sg.tx0 + tx) * kTile, count = std::min(kTile, g.Q - q0);
    for (int o2 = 0; o2 < rows; ++o2)
      ep.apply(out[o2], count, int64_t(sg.ty * kTile + o2) * g.Q + q0, yk);
  }
}

}  // namespace

bool conv2d_winograd_applies(const Conv2dShape& s) {
  return s.R == 3 && s.S == 3 && s.stride == 1 && s.pad == 1 && s.groups == 1;
}

namespace {
// The shape rule of every entry point, its error naming the caller and the shape.
void check_applies(const char* op, const Conv2dShape& s) {
  DOFPOSE_CHECK(conv2d_winograd_applies(s), op, ": needs a 3x3 kernel, stride 1, pad 1, groups 1; got ",
                s.R, "x", s.S, " stride ", s.stride, " pad ", s.pad, " groups ", s.groups);
}
}  // namespace

bool conv2d_winograd_worthwhile(const Conv2dShape& s) {
  // Below ~64 tiles the 36 GEMMs are too narrow and the filter transform
  // (once per call) too large a share: 16x16 planes at batch 1 run at 0.54x.
  const int64_t tiles = int64_t(s.N) * ((s.H + kTile - 1) / kTile) * ((s.W + kTile - 1) / kTile);
  return conv2d_winograd_applies(s) && tiles >= 64;
}

void conv2d_winograd_forward(const Conv2dShape& s, const float* x, const float* w,
                             const float* bias, float* y, const ConvFusion* out) {
  check_applies("conv2d_winograd_forward", s);
  DOFPOSE_CHECK(x && w && y, "conv2d_winograd_forward: x, w and y must not be null");
  DOFPOSE_CHECK(!out || !out->in_bn.present(),
                "conv2d_winograd_forward: in_bn is the caller's (apply it to x first)");
  Geometry g{s.C, s.K, s.H, s.W, s.P(), s.Q(), (s.H + kTile - 1) / kTile,
             (s.W + kTile - 1) / kTile, 0, (s.K + MR - 1) / MR};
  g.T = int64_t(s.N) * g.th * g.tw;
  thread_local AlignedScratch u_buf;
  float* const Up = u_buf.get(size_t(kPoints) * g.KP * MR * g.C);
  transform_filters(g, w, Up);
  // A block is kPanels packed B panels of NR tiles. Per panel of 6 output
  // channels (kp), the 36 products land in a small M (36 x 6 x NR per panel,
  // in L1) and are transformed into the output at once, so only V stays
  // resident (36 x C x NR per panel) and each packed filter panel, read from
  // L2/L3, serves kPanels B panels.
  constexpr int kPanels = 2;
  const int64_t panels = (g.T + NR - 1) / NR;
  const int64_t blocks = (panels + kPanels - 1) / kPanels;
  const size_t v_point = size_t(g.C) * NR, v_panel = kPoints * v_point;
  constexpr size_t m_point = size_t(MR) * NR, m_panel = kPoints * m_point;
  const int64_t PQ = int64_t(g.P) * g.Q;
  std::vector<Epilogue> eps(size_t(g.K));
  for (int k = 0; k < g.K; ++k) {
    Epilogue& ep = eps[size_t(k)];
    ep.bias = bias ? bias[k] : 0.f;
    if (out && out->out_bn.present()) {
      ep.bn = true;
      ep.mean = out->out_bn.mean[k];
      ep.scale = batchnorm_infer_scale(out->out_bn.gamma, out->out_bn.var, out->out_bn.eps, k);
      ep.shift = out->out_bn.beta ? out->out_bn.beta[k] : 0.f;
    }
    ep.relu = out && out->out_relu;
  }
#if defined(DOFPOSE_WITH_OPENMP)
#pragma omp parallel for schedule(static)
#endif
  for (int64_t b = 0; b < blocks; ++b) {
    thread_local AlignedScratch v_buf, m_buf, tr_buf;
    float* const V = v_buf.get(kPanels * v_panel);
    float* const M = m_buf.get(kPanels * m_panel);
    float* const tr = tr_buf.get(size_t(kIn) * (NR * kTile + 2 + kLanes));
    const int used = int(std::min<int64_t>(kPanels, panels - b * kPanels));
    int lanes[kPanels];
    Segment seg[kPanels][NR];
    int segments[kPanels];
    for (int p = 0; p < used; ++p) {
      const int64_t t0 = (b * kPanels + p) * NR, t1 = std::min(g.T, t0 + NR);
      float* const Vp = V + p * v_panel;
      lanes[p] = int(t1 - t0);
      segments[p] = block_segments(g, t0, t1, seg[p]);
      if (lanes[p] < NR)  // a last, partial panel: defined values in the unused lanes
        for (size_t r = 0; r < kPoints * size_t(g.C); ++r)
          std::fill(Vp + r * NR + lanes[p], Vp + (r + 1) * NR, 0.f);
      for (int c = 0; c < g.C; ++c)
        for (int i = 0; i < segments[p]; ++i)
          input_segment(g, seg[p][i], x + (int64_t(seg[p][i].n) * g.C + c) * g.H * g.W, c, tr,
                        Vp);
    }
    for (int kp = 0; kp < g.KP; ++kp) {
      const int mr = std::min(MR, g.K - kp * MR);
      for (int i = 0; i < kPoints; ++i) {
        const float* Ap = Up + (size_t(i) * g.KP + kp) * g.C * MR;
        for (int p = 0; p < used; ++p)
          gemm_micro_tile(g.C, Ap, V + p * v_panel + i * v_point, M + p * m_panel + i * m_point,
                          NR, mr, lanes[p]);
      }
      for (int r = 0; r < mr; ++r) {
        const int k = kp * MR + r;
        Epilogue ep = eps[size_t(k)];
        for (int p = 0; p < used; ++p)
          for (int i = 0; i < segments[p]; ++i) {
            const Segment& sg = seg[p][i];
            const int64_t plane = int64_t(sg.n) * g.K + k;
            ep.residual = out && out->residual ? out->residual + plane * PQ : nullptr;
            output_segment(g, sg, M + p * m_panel + size_t(r) * NR + sg.lane, m_point, ep,
                           y + plane * PQ);
          }
      }
    }
  }
}

void conv2d_winograd_backward_data(const Conv2dShape& s, const float* w, const float* dy, float* dx) {
  check_applies("conv2d_winograd_backward_data", s);
  DOFPOSE_CHECK(w && dy && dx, "conv2d_winograd_backward_data: w, dy and dx must not be null");
  // dx[c] = sum_k dy[k] (*) rot180(w[k][c]): a forward convolution from K
  // channels of P x Q (= H x W here) to C, filters wt[c][k] = w[k][c] flipped.
  thread_local std::vector<float> wt;
  wt.resize(size_t(s.C) * s.K * 9);
  for (int k = 0; k < s.K; ++k)
    for (int c = 0; c < s.C; ++c) {
      const float* src = w + (int64_t(k) * s.C + c) * 9;
      float* dst = wt.data() + (int64_t(c) * s.K + k) * 9;
      for (int i = 0; i < 9; ++i) dst[i] = src[8 - i];
    }
  Conv2dShape t = s;
  t.C = s.K;
  t.K = s.C;
  t.H = s.P();
  t.W = s.Q();
  conv2d_winograd_forward(t, dy, wt.data(), nullptr, dx);
}

// ---- the weight gradient: F(3x3, 4x4), the same points transposed
//
// Per 4x4 tile of dy (h, one output channel) and the 6x6 tile of x around it
// (d, one input channel), the tile's share of dw[k][c] (3x3) is the valid
// correlation of d with h, and by the transposition principle (the trilinear
// form sum h_i g_r d_(i+r) that F(4x4, 3x3) evaluates)
//   dw_tile = G^T [(A h A^T) .* (B^T d B)] G
// with F(4x4, 3x3)'s own A, B and G. Summed over tiles and batch that is 36
// GEMMs, M[i] (K x C) = U[i] (K x T) * V[i]^T (T x C), then dw = G^T M G.

namespace {

// r = A h (h: four dy values; A = transpose of A^T above; T float or v8).
template <class T>
inline void a6(const T h[kTile], T r[kIn]) {
  const T e = h[0] + h[2], o = h[1] + h[3], e4 = h[0] + 4.f * h[2], o8 = 2.f * h[1] + 8.f * h[3];
  r[0] = h[0];
  r[1] = e + o;
  r[2] = e - o;
  r[3] = e4 + o8;
  r[4] = e4 - o8;
  r[5] = h[3];
}

// o = G^T m (six transform points to three taps).
inline void gt6(const float m[kIn], float o[3]) {
  const float s12 = m[1] + m[2], d12 = m[2] - m[1], s34 = m[3] + m[4], d34 = m[3] - m[4];
  o[0] = 0.25f * m[0] - (1.f / 6) * s12 + (1.f / 24) * s34;
  o[1] = (1.f / 6) * d12 + (1.f / 12) * d34;
  o[2] = (1.f / 6) * (s34 - s12) + m[5];
}

}  // namespace

namespace {

// The tiles go in blocks of kDwBlock (two panels of NR). Per block, U and V
// are transformed straight into the packed operands of the GEMM's register
// tile, with the block's tiles as the reduction:
//   Ub[kp][i][t][MR]  = (A h A^T)[i] of dy tile t, output channels kp*MR + r
//   Vb[cp][i][t][NR]  = (B^T d B)[i] of x tile t, input channels cp*NR + lane
// (each transform item, a panel of channels, writes one contiguous run; an
// item of 8 channels wrote half of each 64-byte row of Vb, the other half
// another thread's) and M[i] (K x C) += Ub[i] * Vb[i] by micro tiles, each point's M staying
// in the cache of the thread that owns the point. Whole-layer U and V (19 MB
// each for 128 channels at 64 x 64, batch 4) and the generic GEMM's own
// packing made the step slower than the direct dw.
// The transforms run eight tiles of one channel at a time (the forward's
// input_segment for x), then an 8 x 8 transpose puts eight channels in the
// lanes: gathering eight channels' pixels into lanes one by one through
// memory took twice as long.
constexpr int kDwBlock = 2 * NR;

// r[row][lane] -> r[lane][row].
inline void transpose8(v8 r[kLanes]) {
  v8 t[kLanes], u[kLanes];
  for (int k = 0; k < kLanes; k += 2) {  // pairs of rows, interleaved per 128-bit half
    t[k] = DOFPOSE_SHUFFLE8(r[k], r[k + 1], 0, 8, 1, 9, 4, 12, 5, 13);
    t[k + 1] = DOFPOSE_SHUFFLE8(r[k], r[k + 1], 2, 10, 3, 11, 6, 14, 7, 15);
  }
  for (int k = 0; k < kLanes; k += 4)  // pairs of pairs
    for (int h = 0; h < 2; ++h) {
      u[k + h] = DOFPOSE_SHUFFLE8(t[k + h], t[k + h + 2], 0, 1, 8, 9, 4, 5, 12, 13);
      u[k + h + 2] = DOFPOSE_SHUFFLE8(t[k + h], t[k + h + 2], 2, 3, 10, 11, 6, 7, 14, 15);
    }
  // u[0..3]: columns 0, 2, 1, 3 (low half) and 4, 6, 5, 7 (high half) of rows 0-3; u[4..7] of rows 4-7.
  const int order[4] = {0, 2, 1, 3};
  for (int k = 0; k < 4; ++k) {
    r[k] = DOFPOSE_SHUFFLE8(u[order[k]], u[order[k] + 4], 0, 1, 2, 3, 8, 9, 10, 11);
    r[k + 4] = DOFPOSE_SHUFFLE8(u[order[k]], u[order[k] + 4], 4, 5, 6, 7, 12, 13, 14, 15);
  }
}

// dst[t * stride .. + width] = lane-transposed S[i][0..7][first + t] for t < count:
// S holds eight rows (channels) of NR tiles per point; width floats of each
// transposed row are stored (NR's half panels: 8; MR panels: 6).
inline void transpose_out(const float* S, int first, int count, float* dst, size_t stride, int width) {
  v8 r[kLanes];
  for (int l = 0; l < kLanes; ++l) r[l] = load8(S + size_t(l) * NR + first);
  transpose8(r);
  if (width == 6 && stride == 6 && count == kLanes) {
    // Eight rows of six are 48 contiguous floats: six whole-vector stores
    // instead of sixteen 16- and 8-byte ones (the store buffer was the limit).
    for (int k = 0; k < kLanes; k += 4, dst += 24) {
      store8(dst, DOFPOSE_SHUFFLE8(r[k], r[k + 1], 0, 1, 2, 3, 4, 5, 8, 9));
      store8(dst + 8, DOFPOSE_SHUFFLE8(r[k + 1], r[k + 2], 2, 3, 4, 5, 8, 9, 10, 11));
      store8(dst + 16, DOFPOSE_SHUFFLE8(r[k + 2], r[k + 3], 4, 5, 8, 9, 10, 11, 12, 13));
    }
    return;
  }
  for (int t = 0; t < count; ++t) std::memcpy(dst + t * stride, &r[t], size_t(width) * sizeof(float));
}

// Vb for the panel of tiles [t0, t1) (at most NR, at tile offset `at` of the
// block) and the input channels of panel cp. Lanes past C and tiles past t1
// are left as they are: they only reach M's columns past C, which no dw
// reads, or rows past the block's depth, which no micro tile reads.
void dw_input_panel(const Geometry& g, const float* x, int64_t t0, int64_t t1, int at, int cp, float* Vb) {
  thread_local AlignedScratch s_buf, tr_buf;
  float* const S = s_buf.get(size_t(kPoints) * kLanes * NR);  // S[i][l][tile]
  float* const tr = tr_buf.get(size_t(kIn) * (NR * kTile + 2 + kLanes));
  Segment seg[NR];
  const int segments = block_segments(g, t0, t1, seg), tiles = int(t1 - t0);
  Geometry g8 = g;
  g8.C = kLanes;  // input_segment's point stride: eight channels of S
  for (int c0 = cp * NR; c0 < std::min(g.C, (cp + 1) * NR); c0 += kLanes) {  // eight channels a pass
    for (int l = 0; l < kLanes && c0 + l < g.C; ++l)
      for (int k = 0; k < segments; ++k)
        input_segment(g8, seg[k], x + (int64_t(seg[k].n) * g.C + c0 + l) * g.H * g.W, l, tr, S);
    float* const out = Vb + (size_t(cp) * kPoints * kDwBlock + at) * NR + c0 % NR;
    for (int i = 0; i < kPoints; ++i)
      for (int f = 0; f < tiles; f += kLanes)
        transpose_out(S + size_t(i) * kLanes * NR, f, std::min(kLanes, tiles - f),
                      out + size_t(i) * kDwBlock * NR + size_t(f) * NR, NR, kLanes);
  }
}

// Ub for the panel of tiles [t0, t1) and the output channels of panel kp:
// the 4x4 tiles of dy (zero past P and Q), eight tiles of a row a step.
void dw_grad_panel(const Geometry& g, const float* dy, int64_t t0, int64_t t1, int at, int kp, float* Ub) {
  thread_local AlignedScratch s_buf;
  float* const S = s_buf.get(size_t(kPoints) * kLanes * NR);  // S[i][l][tile]
  Segment seg[NR];
  const int segments = block_segments(g, t0, t1, seg), tiles = int(t1 - t0);
  const int64_t PQ = int64_t(g.P) * g.Q;
  const int mr = std::min(MR, g.K - kp * MR);
  for (int l = 0; l < mr; ++l)  // lanes past mr and K: as for dw_input_panel
    for (int k = 0; k < segments; ++k) {
      const Segment& sg = seg[k];
      const float* plane = dy + (int64_t(sg.n) * g.K + kp * MR + l) * PQ;
      for (int tx = sg.tx0; tx < sg.tx1; tx += kLanes) {
        const int count = std::min(kLanes, sg.tx1 - tx), q0 = tx * kTile;
        v8 h[kTile][kTile];  // h[u][v]: row u, column v of each tile
        for (int u = 0; u < kTile; ++u) {
          const int p = sg.ty * kTile + u;
          float row[kLanes * kTile];
          const float* src = plane + int64_t(p) * g.Q + q0;
          if (p < g.P && count == kLanes && q0 + kLanes * kTile <= g.Q) {
            std::memcpy(row, src, sizeof row);
          } else {
            for (int e = 0; e < kLanes * kTile; ++e)
              row[e] = p < g.P && e < count * kTile && q0 + e < g.Q ? src[e] : 0.f;
          }
          const v8 a = load8(row), b = load8(row + 8), c = load8(row + 16), d = load8(row + 24);
#define DOFPOSE_COLUMN(v)                                                        \
  DOFPOSE_SHUFFLE8(DOFPOSE_SHUFFLE8(a, b, v, v + 4, v + 8, v + 12, 0, 0, 0, 0), \
                   DOFPOSE_SHUFFLE8(c, d, v, v + 4, v + 8, v + 12, 0, 0, 0, 0), \
                   0, 1, 2, 3, 8, 9, 10, 11)
          h[u][0] = DOFPOSE_COLUMN(0);
          h[u][1] = DOFPOSE_COLUMN(1);
          h[u][2] = DOFPOSE_COLUMN(2);
          h[u][3] = DOFPOSE_COLUMN(3);
#undef DOFPOSE_COLUMN
        }
        v8 cols[kIn][kTile];  // (A h)[i][v]
        for (int v = 0; v < kTile; ++v) {
          const v8 col[kTile] = {h[0][v], h[1][v], h[2][v], h[3][v]};
          v8 r[kIn];
          a6(col, r);
          for (int i = 0; i < kIn; ++i) cols[i][v] = r[i];
        }
        float* const dst = S + size_t(l) * NR + sg.lane + (tx - sg.tx0);
        for (int i = 0; i < kIn; ++i) {
          v8 r[kIn];
          a6(cols[i], r);
          for (int j = 0; j < kIn; ++j) {
            float* d = dst + size_t(i * kIn + j) * kLanes * NR;
            if (count == kLanes)
              store8(d, r[j]);
            else
              for (int e = 0; e < count; ++e) d[e] = r[j][e];
          }
        }
      }
    }
  float* const out = Ub + (size_t(kp) * kPoints * kDwBlock + at) * MR;
  for (int i = 0; i < kPoints; ++i)
    for (int f = 0; f < tiles; f += kLanes)
      transpose_out(S + size_t(i) * kLanes * NR, f, std::min(kLanes, tiles - f),
                    out + size_t(i) * kDwBlock * MR + size_t(f) * MR, MR, MR);
}

}  // namespace

void conv2d_winograd_backward_weights(const Conv2dShape& s, const float* x, const float* dy, float* dw) {
  check_applies("conv2d_winograd_backward_weights", s);
  DOFPOSE_CHECK(x && dy && dw, "conv2d_winograd_backward_weights: x, dy and dw must not be null");
  Geometry g{s.C, s.K, s.H, s.W, s.P(), s.Q(), (s.P() + kTile - 1) / kTile,
             (s.Q() + kTile - 1) / kTile, 0, (s.K + MR - 1) / MR};
  g.T = int64_t(s.N) * g.th * g.tw;
  const int CP = (s.C + NR - 1) / NR, ldm = CP * NR;  // M[i]: (KP * MR) x (CP * NR)
  const size_t m_point = size_t(g.KP) * MR * ldm;
  const int64_t blocks = (g.T + kDwBlock - 1) / kDwBlock;
  thread_local AlignedScratch u_buf, v_buf, m_buf;
  float* const Ub = u_buf.get(size_t(kPoints) * g.KP * kDwBlock * MR);
  float* const Vb = v_buf.get(size_t(kPoints) * CP * kDwBlock * NR);
  float* const M = m_buf.get(kPoints * m_point);
  std::fill(M, M + kPoints * m_point, 0.f);
  const int groups = CP + g.KP;  // transform items per panel of tiles: x's channel panels, then dy's
  // Every M element sums its tiles in block order, then the block's tiles in
  // order, whatever the thread count: the same bits with 1 or many threads.
#if defined(DOFPOSE_WITH_OPENMP)
#pragma omp parallel
#endif
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t t0 = b * kDwBlock;
    const int tb = int(std::min<int64_t>(kDwBlock, g.T - t0));
    // Dynamic: an x item (16 channels of 6x6) costs about five dy items (6
    // of 4x4); a static split of the items left a thread waiting.
#if defined(DOFPOSE_WITH_OPENMP)
#pragma omp for schedule(dynamic)
#endif
    for (int w = 0; w < 2 * groups; ++w) {
      const int panel = w / groups, item = w % groups, at = panel * NR;  // the x items first
      if (at >= tb) continue;
      const int64_t p0 = t0 + at, p1 = std::min<int64_t>(p0 + NR, t0 + tb);
      if (item < CP)
        dw_input_panel(g, x, p0, p1, at, item, Vb);
      else
        dw_grad_panel(g, dy, p0, p1, at, item - CP, Ub);
    }
    // (the loop's barrier: the block's Ub and Vb are complete)
#if defined(DOFPOSE_WITH_OPENMP)
#pragma omp for schedule(static)
#endif
    for (int i = 0; i < kPoints; ++i)
      for (int kp = 0; kp < g.KP; ++kp) {
        const int mr = std::min(MR, s.K - kp * MR);
        const float* Ap = Ub + (size_t(kp) * kPoints + i) * kDwBlock * MR;
        for (int cp = 0; cp < CP; ++cp)
          gemm_micro_tile(tb, Ap, Vb + (size_t(cp) * kPoints + i) * kDwBlock * NR,
                          M + i * m_point + size_t(kp) * MR * ldm + cp * NR, ldm, mr,
                          std::min(NR, s.C - cp * NR), /*accumulate=*/true);
      }
    // (and its barrier: Ub and Vb are free for the next block)
  }
  // dw[k][c] = G^T M[.][k][c] G.
#if defined(DOFPOSE_WITH_OPENMP)
#pragma omp parallel for schedule(static)
#endif
  for (int64_t kc = 0; kc < int64_t(s.K) * s.C; ++kc) {
    const int64_t at = (kc / s.C) * ldm + kc % s.C;
    float mm[kIn][kIn], rows[3][kIn];
    for (int i = 0; i < kPoints; ++i) mm[i / kIn][i % kIn] = M[i * m_point + at];
    for (int j = 0; j < kIn; ++j) {
      float col[kIn], out[3];
      for (int i = 0; i < kIn; ++i) col[i] = mm[i][j];
      gt6(col, out);
      for (int r = 0; r < 3; ++r) rows[r][j] = out[r];
    }
    float* o = dw + kc * 9;
    for (int r = 0; r < 3; ++r) gt6(rows[r], o + r * 3);
  }
}

}  // namespace dofpose::cpu
