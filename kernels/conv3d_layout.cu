// The input pass of the conv3d kernel (conv3d_sm80.cu): NCTHW -> channels-last
// [N][T*H*W][c_pad], channels past C written as zeros, optionally normalised over channels and
// activated on the way (the norm -> act that precedes most convs of the video codecs, which then
// costs one extra read of the input, for the statistics, instead of a separate pass through
// memory per candle op). Memory-bound copies, no tensor cores: kept apart from the convolution
// so that every entry point of an _sm80/_sm90 file is a tensor-core kernel.
#include "conv3d_common.cuh"

namespace cadence {
namespace conv3d {

// Loads 8 consecutive bf16 values of one channel row: one 16-byte load when `vector` (aligned
// and all 8 inside the row), else scalar loads of the first `left` of them (zeros after).
CADENCE_DEVICE void load_run(bool vector, const uint16_t* src, int left, uint16_t (&v)[8]) {
    if (vector) {
        const uint4 q = load_global(reinterpret_cast<const uint4*>(src));
        const uint32_t qw[4] = {q.x, q.y, q.z, q.w};
#pragma unroll
        for (int j = 0; j < 8; ++j) v[j] = uint16_t(qw[j / 2] >> (16 * (j % 2)));
    } else {
#pragma unroll
        for (int j = 0; j < 8; ++j) v[j] = j < left ? load_global(src + j) : 0;
    }
}

// The activation that may follow the norm: 0 none, 1 ReLU, 2 SiLU (x / (1 + e^-x) in f32).
CADENCE_DEVICE float activate(float x, int act) {
    if (act == 1) return x > 0.f ? x : 0.f;
    if (act == 2) return x / (1.f + fast_exp(-x));
    return x;
}

// Per-position statistics of the channel norm for 8 consecutive positions per thread (2048 per
// CTA): the thread's 8 positions are one 16-byte load per channel when aligned, so a warp reads
// 512 contiguous bytes of each channel row.
CADENCE_DEVICE void norm_stats(const NormStatsParams& p) {
    const int p0 = (blockIdx.x * THREADS + threadIdx.x) * 8, b = blockIdx.y;
    if (p0 >= p.p) return;
    const bool vector = p.vector_loads && p0 + 8 <= p.p;
    float sum[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
    const uint16_t* row = p.x + b * p.stride_n + p0;
    for (int c = 0; c < p.c; ++c, row += p.stride_c) {
        uint16_t v[8];
        load_run(vector, row, p.p - p0, v);
#pragma unroll
        for (int j = 0; j < 8; ++j) {
            const float f = bf16_to_float(v[j]);
            sum[j] += f * f;
        }
    }
    const float inv_c = 1.f / float(p.c);
    for (int j = 0; j < 8 && p0 + j < p.p; ++j) {
        const float s = sum[j];
        const float inv = p.l2 ? p.scale / fmaxf(sqrtf(s), p.eps) : 1.f / sqrtf(s * inv_c + p.eps);
        store_global(p.inv_scale + size_t(b) * p.p + p0 + j, inv);
    }
}

// NCTHW -> [N][P][c_pad] for one tile of 64 positions x 32 channels (channels past C are
// written as zeros). Loads run along positions (coalesced, 16 bytes when aligned), stores along
// channels (16 bytes); the tile is transposed through shared memory with rows of 66 elements,
// which keeps both phases free of bank conflicts.
CADENCE_DEVICE void channels_last_tile(const ChannelsLastParams& p) {
    __shared__ __align__(16) uint16_t tile[CHUNK][66];
    const int p0 = blockIdx.x * 64, chunk = blockIdx.y, b = blockIdx.z;
    {
        const int cl = threadIdx.x / 8, pl = (threadIdx.x % 8) * 8;
        const int c = chunk * CHUNK + cl;
        uint16_t v[8];
        if (c < p.c) {
            const uint16_t* src = p.x + b * p.stride_n + c * p.stride_c + p0 + pl;
            load_run(p.vector_loads && p0 + pl + 8 <= p.p, src, p.p - (p0 + pl), v);
            if (p.inv_scale != nullptr) {
                // The codec's order: normalise in f32, round to bf16, activate, round again.
                const float g = p.gamma != nullptr ? load_global(p.gamma + c) : 1.f;
                const float* inv = p.inv_scale + size_t(b) * p.p + p0 + pl;
#pragma unroll
                for (int j = 0; j < 8; ++j) {
                    if (p0 + pl + j >= p.p) break;
                    const float y = bf16_to_float(
                        float_to_bf16(bf16_to_float(v[j]) * load_global(inv + j) * g));
                    v[j] = float_to_bf16(activate(y, p.act));
                }
            } else if (p.act != 0) {
#pragma unroll
                for (int j = 0; j < 8; ++j) v[j] = float_to_bf16(activate(bf16_to_float(v[j]), p.act));
            }
        } else {
#pragma unroll
            for (int j = 0; j < 8; ++j) v[j] = 0;
        }
        uint32_t* row = reinterpret_cast<uint32_t*>(&tile[cl][pl]);
#pragma unroll
        for (int j = 0; j < 4; ++j) row[j] = uint32_t(v[2 * j]) | (uint32_t(v[2 * j + 1]) << 16);
    }
    sync_cta();
    const int pos = threadIdx.x / 4, c0 = (threadIdx.x % 4) * 8;
    if (p0 + pos < p.p) {
        uint32_t w[4];
#pragma unroll
        for (int j = 0; j < 4; ++j)
            w[j] = uint32_t(tile[c0 + 2 * j][pos]) | (uint32_t(tile[c0 + 2 * j + 1][pos]) << 16);
        uint4 out;
        out.x = w[0];
        out.y = w[1];
        out.z = w[2];
        out.w = w[3];
        store_global(reinterpret_cast<uint4*>(p.out + (size_t(b) * p.p + p0 + pos) * p.c_pad +
                                              chunk * CHUNK + c0),
                     out);
    }
}

}  // namespace conv3d
}  // namespace cadence

// Entry points, loaded by name from crates/kernels/src/conv3d/cuda.rs (C linkage).
// Grid = (ceil(P / 64), c_pad / 32, N), THREADS threads, static shared memory only.
extern "C" __global__ void __launch_bounds__(cadence::conv3d::THREADS)
    cadence_conv3d_channels_last(const cadence::conv3d::ChannelsLastParams p) {
    cadence::conv3d::channels_last_tile(p);
}

// Grid = (ceil(P / 2048), N), THREADS threads.
extern "C" __global__ void __launch_bounds__(cadence::conv3d::THREADS)
    cadence_conv3d_norm_stats(const cadence::conv3d::NormStatsParams p) {
    cadence::conv3d::norm_stats(p);
}
