// Shared pieces of the 3-D convolution kernels (conv3d_sm80.cu): launch parameters, the few
// hardware primitives the kernels use, and the tile geometry.
//
// The convolution is an implicit GEMM: out[m, n] = sum_k A[m, k] * B[k, n] with
//   m = an output position (b, t, h, w), n = an output channel, k = (input-channel chunk,
//   tap (dt, dh, dw), channel in chunk),
//   A[m, k] = x[b, t*st - pt + dt, h*sh - ph + dh, w*sw - pw + dw, c] (zero outside the input in
//   space; in time zero, or the nearest edge frame with replicate padding), B[k, n] = weight.
// crates/kernels/src/conv3d/gemm.rs is the Rust mirror of this decomposition (it plans the
// launch, fills Conv3dParams, and its tests simulate the kernel's loops on the CPU).
//
// Every hardware-specific operation goes through the wrappers below, so the same source also
// compiles as host C++ with CADENCE_EMULATE defined: kernels/emulate/cuda_emulation.h then runs
// each CTA's threads as cooperative fibers, with ldmatrix, mma.sync and cp.async emulated from
// their PTX ISA definitions (crates/kernels/src/conv3d/emulated.rs drives that test).
#pragma once

#include <stddef.h>
#include <stdint.h>

#ifdef CADENCE_EMULATE
#include "emulate/cuda_emulation.h"
#else
#include <cuda_bf16.h>
#endif

namespace cadence {
namespace conv3d {

// Everything the convolution kernel needs besides its buffers' contents (passed by value).
// The Rust side (gemm.rs, `Params`) writes this struct field for field and asserts its size.
struct Conv3dParams {
    const uint16_t* x;         // bf16 input, channels last: [N][T][H][W][c_pad]
    const uint16_t* weight;    // bf16 weights: [c_pad / 32][taps][c_out][32]
    const float* bias;         // [c_out], or nullptr
    const uint16_t* residual;  // bf16 [N][c_out][To][Ho][Wo] added before rounding, or nullptr
    uint16_t* out;             // bf16 [N][c_out][To][Ho][Wo]
    int t, h, w;               // input frames, rows, columns
    int c_pad;                 // input channels rounded up to a multiple of 32 (zeros beyond)
    int c_out;
    int to, ho, wo;            // output frames, rows, columns
    int kt, kh, kw;            // kernel
    int st, sh, sw;            // stride
    int pt, ph, pw;            // padding on both sides (space: zeros; time: see replicate_t)
    int replicate_t;           // 1: time padding repeats the edge frames; 0: zeros
    int bt, bh, bw;            // the output box one CTA computes (bt * bh * bw == BLOCK_M)
    int tiles_t, tiles_h, tiles_w;  // boxes per axis (ceil(To / bt), ...)
    int halo_t, halo_h, halo_w;     // input box the output box reads ((bt - 1) * st + kt, ...)
    int a_buffers;             // depth of the ring of input boxes in shared memory
    int a_stride;              // bytes between two input boxes of that ring
    int n_tiles;               // ceil(c_out / BN)
    int vector_store;          // 1: 16-byte output (and residual) accesses are aligned
    int pad_;
};
static_assert(sizeof(Conv3dParams) == 168, "layout shared with crates/kernels/src/conv3d/gemm.rs");
static_assert(offsetof(Conv3dParams, t) == 40, "layout shared with gemm.rs");
static_assert(offsetof(Conv3dParams, vector_store) == 160, "layout shared with gemm.rs");

// The input transposition NCTHW -> channels last (cadence_conv3d_channels_last), optionally
// normalising over channels and activating on the way (the norm -> act that precedes most
// convs of the codecs): y = act(bf16(x * inv_scale[position] * gamma[channel])).
struct ChannelsLastParams {
    const uint16_t* x;        // bf16 [N][C][P] with P = T*H*W dense; batch and channel strides below
    uint16_t* out;            // bf16 [N][P][c_pad]
    const float* inv_scale;   // [N][P] per-position scale (cadence_conv3d_norm_stats), or nullptr
    const float* gamma;       // [C] per-channel multiplier, or nullptr
    int64_t stride_n;         // elements between batch items of x
    int64_t stride_c;         // elements between channels of x
    int n, c, p, c_pad;
    int vector_loads;         // 1: x, stride_n, stride_c and P allow aligned 16-byte loads
    int act;                  // applied after the norm's bf16 rounding: 0 none, 1 ReLU, 2 SiLU
};
static_assert(sizeof(ChannelsLastParams) == 72, "layout shared with gemm.rs");
static_assert(offsetof(ChannelsLastParams, stride_n) == 32, "layout shared with gemm.rs");

// Per-position statistics of a channel norm (cadence_conv3d_norm_stats): over the C channels
// of each position, inv_scale = 1 / sqrt(sum(x^2) / C + eps) (Turbo-VAED's RMSNorm) or, with
// l2, scale / max(sqrt(sum(x^2)), eps) (Wan's RMS_norm, scale = sqrt(C)). Sums in f32.
struct NormStatsParams {
    const uint16_t* x;   // bf16 [N][C][P], strides as in ChannelsLastParams
    float* inv_scale;    // [N][P]
    int64_t stride_n;
    int64_t stride_c;
    int n, c, p;
    int l2;
    float eps;
    float scale;
    int vector_loads;
    int pad_;
};
static_assert(sizeof(NormStatsParams) == 64, "layout shared with gemm.rs");

constexpr int THREADS = 256;      // 8 warps
constexpr int BLOCK_M = 256;      // output positions per CTA
constexpr int CHUNK = 32;         // input channels per k-step
constexpr int ROW_BYTES = CHUNK * 2;  // one shared-memory row: 32 bf16 channels of a position
constexpr int B_STAGES = 4;       // weight tiles in flight (cp.async ring)
// Shared memory for the ring of input boxes. 192 KB + the weight ring stays under the 227 KB a
// CTA may use on sm_90; one CTA per SM is all the register budget allows anyway.
constexpr int A_REGION_BYTES = 192 * 1024;

// ---------------------------------------------------------------------------------------------
// Primitives. Device: inline PTX. Emulation: cuda_emulation.h.

#ifdef CADENCE_EMULATE

using emu::uint4;
inline uint32_t smem_addr(const void* p) { return emu::smem_offset(p); }
inline void cp_async_16(uint32_t dst, const void* src, bool valid) { emu::cp_async_16(dst, src, valid); }
inline void cp_async_commit() { emu::cp_async_commit(); }
template <int N> inline void cp_async_wait() { emu::cp_async_wait(N); }
inline void ldmatrix_x4(uint32_t addr, uint32_t (&r)[4]) { emu::ldmatrix_x4(addr, r); }
inline void mma_16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    emu::mma_bf16_16816(d, a, b0, b1);
}
inline void sync_cta() { emu::sync_cta(); }
inline float bf16_to_float(uint16_t b) { return emu::bf16_to_float(b); }
inline uint16_t float_to_bf16(float f) { return emu::float_to_bf16(f); }
template <typename T> inline T load_global(const T* p) { return emu::global_load(p); }
template <typename T> inline void store_global(T* p, T v) { emu::global_store(p, v); }
inline float fast_exp(float x) { return emu::exp_f32(x); }
#define CADENCE_DEVICE inline
#define CADENCE_DYNAMIC_SMEM(name) uint8_t* name = ::cadence::emu::dynamic_smem()

#else

#define CADENCE_DEVICE __device__ __forceinline__
#define CADENCE_DYNAMIC_SMEM(name) extern __shared__ __align__(128) uint8_t name[]

CADENCE_DEVICE uint32_t smem_addr(const void* p) {
    return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}
// 16 bytes global -> shared, bypassing L1; valid == false writes 16 zero bytes (src-size 0).
CADENCE_DEVICE void cp_async_16(uint32_t dst, const void* src, bool valid) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src),
                 "r"(valid ? 16 : 0)
                 : "memory");
}
CADENCE_DEVICE void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
// Waits until at most N of this thread's committed cp.async groups are still in flight.
template <int N>
CADENCE_DEVICE void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}
CADENCE_DEVICE void ldmatrix_x4(uint32_t addr, uint32_t (&r)[4]) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}
// d += a (16x16, row-major) * b (16x8, column-major): bf16 operands, f32 accumulators.
CADENCE_DEVICE void mma_16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, "
        "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
CADENCE_DEVICE void sync_cta() { __syncthreads(); }
CADENCE_DEVICE float bf16_to_float(uint16_t b) { return __uint_as_float(uint32_t(b) << 16); }
CADENCE_DEVICE uint16_t float_to_bf16(float f) {
    return __bfloat16_as_ushort(__float2bfloat16_rn(f));
}
template <typename T>
CADENCE_DEVICE T load_global(const T* p) { return *p; }
template <typename T>
CADENCE_DEVICE void store_global(T* p, T v) { *p = v; }
CADENCE_DEVICE float fast_exp(float x) { return __expf(x); }

#endif

// ---------------------------------------------------------------------------------------------
// Geometry shared by the loaders, the MMA loop and the epilogue.

// Byte offset of 16-byte chunk `chunk` (0-3) of row `row` in a tile of 64-byte rows. The
// chunk is XORed with bits 1-2 of the row, so that 8 consecutive rows (4 x 128-byte lines)
// put a given chunk into 8 different 16-byte bank groups: ldmatrix reads 8 rows at once and
// is then free of bank conflicts.
CADENCE_DEVICE uint32_t swizzle(int row, int chunk) {
    return uint32_t(row) * ROW_BYTES + (uint32_t(chunk ^ ((row >> 1) & 3)) << 4);
}

// The CTA's output box and output-channel tile. Consecutive CTAs take the channel tiles of one
// box first (fastest), then the next box along w, h, t, batch: the CTAs resident together read
// overlapping input boxes, so each input element comes from DRAM about once and from L2 for the
// other readers; all weight tiles stay in L2 (at most 14 MB for the 512-channel layers).
struct TileOrigin {
    int b, t0, h0, w0;  // output coordinates of the box's first position
    int n0;             // first output channel
};

template <int BN>
CADENCE_DEVICE TileOrigin tile_origin(const Conv3dParams& p, int block) {
    TileOrigin o;
    o.n0 = (block % p.n_tiles) * BN;
    int m = block / p.n_tiles;
    o.w0 = (m % p.tiles_w) * p.bw;
    m /= p.tiles_w;
    o.h0 = (m % p.tiles_h) * p.bh;
    m /= p.tiles_h;
    o.t0 = (m % p.tiles_t) * p.bt;
    o.b = m / p.tiles_t;
    return o;
}

// Position of output row m (0 .. BLOCK_M) inside the box: w fastest, then h, then t.
struct BoxPos {
    int t, h, w;
};
CADENCE_DEVICE BoxPos box_pos(const Conv3dParams& p, int m) {
    BoxPos q;
    q.w = m % p.bw;
    q.h = (m / p.bw) % p.bh;
    q.t = m / (p.bw * p.bh);
    return q;
}

}  // namespace conv3d
}  // namespace cadence
