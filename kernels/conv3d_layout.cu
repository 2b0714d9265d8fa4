// The input transposition of the conv3d kernel (conv3d_sm80.cu): NCTHW -> channels-last
// [N][T*H*W][c_pad], channels past C written as zeros. A copy, no tensor cores: kept apart from
// the convolution so that every entry point of an _sm80/_sm90 file is a tensor-core kernel.
#include "conv3d_common.cuh"

namespace cadence {
namespace conv3d {

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
            if (p.vector_loads && p0 + pl + 8 <= p.p) {
                const uint4 q = load_global(reinterpret_cast<const uint4*>(src));
                const uint32_t qw[4] = {q.x, q.y, q.z, q.w};
#pragma unroll
                for (int j = 0; j < 8; ++j) v[j] = uint16_t(qw[j / 2] >> (16 * (j % 2)));
            } else {
#pragma unroll
                for (int j = 0; j < 8; ++j) v[j] = p0 + pl + j < p.p ? load_global(src + j) : 0;
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

// Entry point, loaded by name from crates/kernels/src/conv3d/cuda.rs (C linkage).
// Grid = (ceil(P / 64), c_pad / 32, N), THREADS threads, static shared memory only.
extern "C" __global__ void __launch_bounds__(cadence::conv3d::THREADS)
    cadence_conv3d_channels_last(const cadence::conv3d::ChannelsLastParams p) {
    cadence::conv3d::channels_last_tile(p);
}
