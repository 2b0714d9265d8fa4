// 3-D convolution as an implicit GEMM on the tensor cores: mma.sync m16n8k16, bf16 operands,
// f32 accumulation, bias and an optional residual fused into the epilogue.
//
// Why this design (see kernels/CONV3D_NOTES.md for the numbers):
//
// * Layout. Activations arrive channels-first (NCTHW, candle's layout). A GEMM wants the
//   reduction axis contiguous, so cadence_conv3d_channels_last (conv3d_layout.cu) first
//   copies the input to
//   channels-last [N][T][H][W][c_pad] (one read and one write of the input; channels padded
//   with zeros to a multiple of 32). The weights are reordered once per call on the Rust side
//   to [c_pad/32][taps][c_out][32], so every weight tile is one contiguous block.
//
// * Tiling. One CTA (8 warps, 256 threads) computes a box of BLOCK_M = 256 output positions
//   (bt x bh x bw, chosen per layer by the launcher to waste the fewest positions at the edges)
//   times BN output channels (128, 64 or 32: one entry point each, so the 64-channel and the
//   12-channel layers do not pay for 128). The reduction runs over k-steps of one tap x 32
//   input channels, chunk-major: for each chunk of 32 channels, the 27 taps of a 3x3x3 kernel.
//
// * Input reuse. For each chunk the CTA loads its *input box* (the output box grown by the
//   kernel's reach, e.g. 4 x 10 x 18 positions for a 2 x 8 x 16 box under 3x3x3) into shared
//   memory once, with zero fill for spatial padding and clamped frames for replicate padding,
//   and every tap reads its A fragments from that one copy: a tap is only a different row
//   offset. Compared with gathering A per tap this cuts the L2->SM traffic for activations by
//   ~8x, leaving the weight tiles (8 KB per k-step at BN = 128) as the main stream.
//
// * Shared-memory rows are 64 bytes (32 channels of one position). ldmatrix reads 8 rows of 16
//   bytes at a time; the chunk swizzle of conv3d_common.cuh spreads 8 consecutive positions
//   over all 32 banks, so A (positions along w) and B (consecutive output channels) load
//   without bank conflicts.
//
// * Pipeline. Weight tiles stream through a B_STAGES = 4 ring of cp.async groups: the load of
//   k-step s + 3 is issued right after the barrier of k-step s, so three tiles are in flight
//   while the tensor cores work on one. Input boxes use a ring of `a_buffers` slots, loaded in
//   the group of the first tap of their chunk; the launcher sizes the ring so a box is never
//   overwritten while a tap of its chunk may still read it (2 slots for 3x3x3 and 3x1x1,
//   4 for 1x1x1; the Rust tests check this invariant on the schedule). One __syncthreads per
//   k-step both publishes the step's data and retires the slot the next load overwrites.
//
// * Warps. 8 warps as WARPS_M x WARPS_N over the 256 x BN tile; warp tiles of 64 x 64
//   (BN = 128), 32 x 64 (BN = 64) or 32 x 32 (BN = 32). A 64 x 64 warp tile holds 128 f32
//   accumulators per thread and issues 64 mma per k-step against 16 ldmatrix.
//
// * Epilogue. Accumulators go through shared memory (f32, transposed to [channel][position])
//   so that each thread then writes 8 consecutive positions of one output channel as one
//   16-byte store: the output is channels-first again. Bias and residual are added in f32 and
//   the sum is rounded to bf16 once.
//
// This is the mma.sync version (the Ampere instruction set, compiled for sm_90a). The Hopper
// version with wgmma would keep the loaders and the epilogue and replace the MMA loop.
#include "conv3d_common.cuh"

namespace cadence {
namespace conv3d {

template <int BN, int WARPS_M>
struct Tiling {
    static constexpr int WARPS_N = 8 / WARPS_M;
    static constexpr int WARP_M = BLOCK_M / WARPS_M;
    static constexpr int WARP_N = BN / WARPS_N;
    static constexpr int MI = WARP_M / 16;  // m16 fragments per warp
    static constexpr int NI = WARP_N / 8;   // n8 fragments per warp (loaded in pairs)
    static constexpr int B_STAGE_BYTES = BN * ROW_BYTES;
    static constexpr int SMEM_BYTES = A_REGION_BYTES + B_STAGES * B_STAGE_BYTES;
    // The epilogue stages the f32 tile as [BN][BLOCK_M + 4]: the +4 makes the fragment
    // stores conflict-free (bank = 8 * (lane % 4) + lane / 4) and keeps rows 16-byte aligned.
    static constexpr int STAGE_STRIDE = BLOCK_M + 4;
    static_assert(WARPS_M * WARPS_N == 8, "8 warps");
    static_assert(WARP_M % 16 == 0 && WARP_N % 16 == 0, "fragments come in m16 / n16 pairs");
    static_assert(BN * STAGE_STRIDE * 4 <= SMEM_BYTES, "the epilogue staging fits");
};

// Loads the input box of `chunk` (32 channels at every box position) into a ring slot.
// Positions outside the input read as zeros (spatial padding, zero time padding) or as the
// nearest edge frame (replicate time padding).
CADENCE_DEVICE void load_input_box(const Conv3dParams& p, const TileOrigin& o, int chunk,
                                   uint32_t slot) {
    const int plane = p.halo_h * p.halo_w;
    const int total = p.halo_t * plane * 4;  // 16-byte pieces: 4 per position
    const int t_base = o.t0 * p.st - p.pt;
    const int h_base = o.h0 * p.sh - p.ph;
    const int w_base = o.w0 * p.sw - p.pw;
    for (int i = threadIdx.x; i < total; i += THREADS) {
        const int pos = i >> 2, piece = i & 3;
        const int ht = pos / plane, in_plane = pos - ht * plane;
        const int hh = in_plane / p.halo_w, hw = in_plane - hh * p.halo_w;
        int ti = t_base + ht;
        const int hi = h_base + hh, wi = w_base + hw;
        bool valid = hi >= 0 && hi < p.h && wi >= 0 && wi < p.w;
        if (p.replicate_t) {
            ti = ti < 0 ? 0 : (ti >= p.t ? p.t - 1 : ti);
        } else {
            valid = valid && ti >= 0 && ti < p.t;
        }
        // An invalid piece is zero-filled; its (unread) source address stays inside the input.
        const size_t at = valid ? ((size_t(o.b) * p.t + ti) * p.h + hi) * p.w + wi : 0;
        cp_async_16(slot + swizzle(pos, piece), p.x + at * p.c_pad + chunk * CHUNK + piece * 8,
                    valid);
    }
}

// Loads the BN x 32 weight tile of (chunk, tap) into a ring stage; channels past c_out are 0.
template <int BN>
CADENCE_DEVICE void load_weight_tile(const Conv3dParams& p, int n0, int chunk, int tap, int taps,
                                     uint32_t stage) {
    const uint16_t* base = p.weight + size_t(chunk * taps + tap) * p.c_out * CHUNK;
    for (int i = threadIdx.x; i < BN * 4; i += THREADS) {
        const int row = i >> 2, piece = i & 3;
        const int co = n0 + row;
        const bool valid = co < p.c_out;
        cp_async_16(stage + swizzle(row, piece), base + size_t(valid ? co : 0) * CHUNK + piece * 8,
                    valid);
    }
}

// Issues the loads of the k-steps in order: (chunk, tap) with the tap fastest.
// Ring positions are kept as wrapping counters (no division by the runtime ring depth).
template <int BN>
struct Loader {
    int step = 0, chunk = 0, tap = 0, slot = 0;

    CADENCE_DEVICE void issue_next(const Conv3dParams& p, const TileOrigin& o, int steps, int taps,
                                   uint32_t s_a, uint32_t s_b) {
        if (step >= steps) return;
        if (tap == 0) load_input_box(p, o, chunk, s_a + slot * p.a_stride);
        load_weight_tile<BN>(p, o.n0, chunk, tap, taps,
                             s_b + (step % B_STAGES) * (BN * ROW_BYTES));
        ++step;
        if (++tap == taps) {
            tap = 0;
            ++chunk;
            if (++slot == p.a_buffers) slot = 0;
        }
    }
};

template <int BN, int WARPS_M>
CADENCE_DEVICE void conv3d_mma(const Conv3dParams& p, uint8_t* smem) {
    using T = Tiling<BN, WARPS_M>;
    const uint32_t s_a = smem_addr(smem);
    const uint32_t s_b = s_a + A_REGION_BYTES;
    const TileOrigin o = tile_origin<BN>(p, blockIdx.x);
    const int taps = p.kt * p.kh * p.kw;
    const int steps = (p.c_pad / CHUNK) * taps;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int warp_m = warp % WARPS_M, warp_n = warp / WARPS_M;

    Loader<BN> loader;
    for (int s = 0; s < B_STAGES - 1; ++s) {
        loader.issue_next(p, o, steps, taps, s_a, s_b);
        cp_async_commit();
    }

    // The input-box row each lane addresses for its ldmatrix of A fragment mi at tap (0,0,0):
    // lane l supplies row l % 16 of the m16 fragment (matrices 0/1 hold rows 0-7/8-15 of
    // channels 0-7, matrices 2/3 the same rows of channels 8-15, picked by lane / 16).
    int a_row[T::MI];
#pragma unroll
    for (int mi = 0; mi < T::MI; ++mi) {
        const BoxPos q = box_pos(p, warp_m * T::WARP_M + mi * 16 + lane % 16);
        a_row[mi] = ((q.t * p.st) * p.halo_h + q.h * p.sh) * p.halo_w + q.w * p.sw;
    }
    // The weight row (output channel) each lane addresses for B fragment pair nj: matrices
    // 0/1 are channels 0-7 at k 0-7 / 8-15, matrices 2/3 channels 8-15 (lane / 16).
    const int b_row = warp_n * T::WARP_N + (lane / 16) * 8 + lane % 8;
    const int b_piece = (lane / 8) % 2;

    float acc[T::MI][T::NI][4];
#pragma unroll
    for (int mi = 0; mi < T::MI; ++mi)
#pragma unroll
        for (int ni = 0; ni < T::NI; ++ni)
#pragma unroll
            for (int e = 0; e < 4; ++e) acc[mi][ni][e] = 0.f;

    int slot = 0, dt = 0, dh = 0, dw = 0;  // the step's ring slot and tap
    for (int s = 0; s < steps; ++s) {
        cp_async_wait<B_STAGES - 2>();  // this thread's loads of step s have landed
        sync_cta();                     // everyone's have; everyone is done with step s - 1
        loader.issue_next(p, o, steps, taps, s_a, s_b);
        cp_async_commit();  // possibly empty: keeps the group count in step with s

        const uint32_t a_slot = s_a + slot * p.a_stride;
        const uint32_t b_stage = s_b + (s % B_STAGES) * T::B_STAGE_BYTES;
        const int tap_offset = (dt * p.halo_h + dh) * p.halo_w + dw;
#pragma unroll
        for (int k16 = 0; k16 < 2; ++k16) {
            uint32_t a[T::MI][4];
#pragma unroll
            for (int mi = 0; mi < T::MI; ++mi)
                ldmatrix_x4(a_slot + swizzle(a_row[mi] + tap_offset, 2 * k16 + lane / 16), a[mi]);
#pragma unroll
            for (int nj = 0; nj < T::NI / 2; ++nj) {
                uint32_t b[4];
                ldmatrix_x4(b_stage + swizzle(b_row + nj * 16, 2 * k16 + b_piece), b);
#pragma unroll
                for (int mi = 0; mi < T::MI; ++mi) {
                    mma_16816(acc[mi][2 * nj], a[mi], b[0], b[1]);
                    mma_16816(acc[mi][2 * nj + 1], a[mi], b[2], b[3]);
                }
            }
        }
        if (++dw == p.kw) {
            dw = 0;
            if (++dh == p.kh) {
                dh = 0;
                if (++dt == p.kt) {
                    dt = 0;
                    if (++slot == p.a_buffers) slot = 0;
                }
            }
        }
    }
    cp_async_wait<0>();
    sync_cta();  // the ring is free: reuse it to stage the output tile

    // Accumulator fragment layout (mma m16n8): element e of n8 block ni of m16 block mi is
    // row lane / 4 (+ 8 for e >= 2), column 2 * (lane % 4) + e % 2.
    float* stage = reinterpret_cast<float*>(smem);
#pragma unroll
    for (int mi = 0; mi < T::MI; ++mi)
#pragma unroll
        for (int ni = 0; ni < T::NI; ++ni)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const int m = warp_m * T::WARP_M + mi * 16 + lane / 4 + 8 * (e / 2);
                const int n = warp_n * T::WARP_N + ni * 8 + 2 * (lane % 4) + e % 2;
                stage[n * T::STAGE_STRIDE + m] = acc[mi][ni][e];
            }
    sync_cta();

    // Each thread writes runs of 8 positions along w of one output channel. bw is a multiple
    // of 8, so a run never leaves its box row.
    constexpr int RUNS = BLOCK_M / 8;
    for (int i = threadIdx.x; i < BN * RUNS; i += THREADS) {
        const int n = i / RUNS, m0 = (i % RUNS) * 8;
        const int co = o.n0 + n;
        const BoxPos q = box_pos(p, m0);
        const int t = o.t0 + q.t, h = o.h0 + q.h, w = o.w0 + q.w;
        if (co >= p.c_out || t >= p.to || h >= p.ho || w >= p.wo) continue;
        const float bias = p.bias != nullptr ? load_global(p.bias + co) : 0.f;
        const size_t at = ((size_t(o.b) * p.c_out + co) * p.to + t) * size_t(p.ho * p.wo) +
                          size_t(h) * p.wo + w;
        const float* src = stage + n * T::STAGE_STRIDE + m0;
        float v[8];
#pragma unroll
        for (int j = 0; j < 8; ++j) v[j] = src[j] + bias;
        if (p.vector_store) {
            // wo % 8 == 0 and w % 8 == 0: the run is inside the row and 16-byte aligned.
            if (p.residual != nullptr) {
                const uint4 r = load_global(reinterpret_cast<const uint4*>(p.residual + at));
                const uint32_t rw[4] = {r.x, r.y, r.z, r.w};
#pragma unroll
                for (int j = 0; j < 8; ++j)
                    v[j] += bf16_to_float(uint16_t(rw[j / 2] >> (16 * (j % 2))));
            }
            uint32_t packed[4];
#pragma unroll
            for (int j = 0; j < 4; ++j)
                packed[j] = uint32_t(float_to_bf16(v[2 * j])) |
                            (uint32_t(float_to_bf16(v[2 * j + 1])) << 16);
            uint4 out;
            out.x = packed[0];
            out.y = packed[1];
            out.z = packed[2];
            out.w = packed[3];
            store_global(reinterpret_cast<uint4*>(p.out + at), out);
        } else {
#pragma unroll
            for (int j = 0; j < 8; ++j) {
                if (w + j >= p.wo) break;
                float y = v[j];
                if (p.residual != nullptr) y += bf16_to_float(load_global(p.residual + at + j));
                store_global(p.out + at + j, float_to_bf16(y));
            }
        }
    }
}

}  // namespace conv3d
}  // namespace cadence

// Entry points, loaded by name from crates/kernels/src/conv3d/cuda.rs (C linkage).
//
// Convolution: grid = (boxes x channel tiles), THREADS threads,
// Tiling<BN, WARPS_M>::SMEM_BYTES of dynamic shared memory; one CTA per SM.
#define CADENCE_CONV3D_ENTRY(NAME, BN, WARPS_M)                                              \
    extern "C" __global__ void __launch_bounds__(cadence::conv3d::THREADS, 1)              \
        NAME(const cadence::conv3d::Conv3dParams p) {                                       \
        CADENCE_DYNAMIC_SMEM(smem);                                                         \
        cadence::conv3d::conv3d_mma<BN, WARPS_M>(p, smem);                                  \
    }
CADENCE_CONV3D_ENTRY(cadence_conv3d_sm80_n128, 128, 4)
CADENCE_CONV3D_ENTRY(cadence_conv3d_sm80_n64, 64, 8)
CADENCE_CONV3D_ENTRY(cadence_conv3d_sm80_n32, 32, 8)
