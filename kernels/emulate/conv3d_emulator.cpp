// Runs the conv3d kernels of kernels/conv3d_layout.cu and conv3d_sm80.cu on the CPU (cuda_emulation.h) for one
// problem, exactly as crates/kernels/src/conv3d/cuda.rs launches them: the channels-last
// transposition, then the convolution entry point of the requested tile width.
//
//   conv3d_emulator REQUEST OUTPUT
//
// REQUEST (little-endian, written by crates/kernels/src/conv3d/emulated.rs):
//   "C3DEMU02", u32 tile_n (128 | 64 | 32), u32 flags (1: lazy cp.async, 2: reverse thread
//   order, 4: warp-greedy scheduling), u32 input norm (0 none, 1 yes), u32 grid of the norm
//   statistics [3], u32 grid of the transposition [3], u32 grid of the convolution [3], u32
//   dynamic shared memory of the convolution, NormStatsParams, ChannelsLastParams,
//   Conv3dParams (pointer fields are ignored), then arrays as (u64 count, data): the NCTHW input
//   storage (u16), the element offset of the input view in it (count only), the channels-last
//   scratch size (count only), the weights (u16), the bias (f32), gamma (f32), the residual
//   storage (u16), the residual view offset (count only), the output size (count only).
// OUTPUT: the output elements (u16). Exit status 3 on an emulation error (message on stderr).
#define CADENCE_EMULATE 1
#include "../conv3d_layout.cu"
#include "../conv3d_sm80.cu"

#include <cmath>
#include <cstdio>
#include <string>

using namespace cadence;

namespace {

FILE* in;

void read_bytes(void* p, size_t n) {
    if (std::fread(p, 1, n, in) != n) emu::fail("request truncated");
}
uint64_t read_u64() {
    uint64_t v;
    read_bytes(&v, 8);
    return v;
}
uint32_t read_u32() {
    uint32_t v;
    read_bytes(&v, 4);
    return v;
}
// A 16-byte aligned buffer of `count` elements of T, read from the request when `fill`.
template <typename T>
T* read_array(uint64_t& count, bool fill) {
    count = read_u64();
    T* p = static_cast<T*>(std::aligned_alloc(16, (count * sizeof(T) + 16) / 16 * 16));
    if (p == nullptr) emu::fail("out of memory");
    if (fill) read_bytes(p, count * sizeof(T));
    return p;
}
void poison(uint16_t* p, uint64_t n) {
    for (uint64_t i = 0; i < n; ++i) p[i] = 0x7fc0;  // bf16 NaN: an unwritten element shows
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 3) {
        std::fprintf(stderr, "usage: %s REQUEST OUTPUT\n", argv[0]);
        return 2;
    }
    in = std::fopen(argv[1], "rb");
    if (in == nullptr) emu::fail("cannot open the request");
    char magic[8];
    read_bytes(magic, 8);
    if (std::string(magic, 8) != "C3DEMU02") emu::fail("not a conv3d emulation request (v2)");
    const uint32_t tile_n = read_u32(), flags = read_u32(), has_norm = read_u32();
    auto read_grid = [] {
        emu::Dim3 g;
        g.x = read_u32();
        g.y = read_u32();
        g.z = read_u32();
        return g;
    };
    const emu::Dim3 grid_stats = read_grid(), grid_cl = read_grid(), grid_conv = read_grid();
    const uint32_t smem = read_u32();
    conv3d::NormStatsParams sp;
    conv3d::ChannelsLastParams cl;
    conv3d::Conv3dParams cp;
    read_bytes(&sp, sizeof sp);
    read_bytes(&cl, sizeof cl);
    read_bytes(&cp, sizeof cp);

    uint64_t n_x, n_x_off, n_xt, n_w, n_bias, n_gamma, n_res, n_res_off, n_out;
    uint16_t* x = read_array<uint16_t>(n_x, true);
    n_x_off = read_u64();
    uint16_t* xt = read_array<uint16_t>(n_xt, false);
    uint16_t* w = read_array<uint16_t>(n_w, true);
    float* bias = read_array<float>(n_bias, true);
    float* gamma = read_array<float>(n_gamma, true);
    uint16_t* res = read_array<uint16_t>(n_res, true);
    n_res_off = read_u64();
    uint16_t* out = read_array<uint16_t>(n_out, false);
    std::fclose(in);
    poison(xt, n_xt);
    poison(out, n_out);
    const uint64_t n_inv = uint64_t(sp.n) * uint64_t(sp.p);
    float* inv = static_cast<float*>(std::aligned_alloc(16, (n_inv * 4 + 16) / 16 * 16));
    for (uint64_t i = 0; i < n_inv; ++i) inv[i] = NAN;

    emu::register_buffer(x, n_x * 2, false);
    emu::register_buffer(xt, n_xt * 2, true);
    emu::register_buffer(w, n_w * 2, false);
    emu::register_buffer(bias, n_bias * 4, false);
    emu::register_buffer(gamma, n_gamma * 4, false);
    emu::register_buffer(res, n_res * 2, false);
    emu::register_buffer(out, n_out * 2, true);
    emu::register_buffer(inv, n_inv * 4, true);

    emu::Policy policy;
    policy.lazy_copies = flags & 1;
    policy.reverse_order = flags & 2;
    policy.warp_greedy = flags & 4;
    emu::state().policy = policy;

    sp.x = x + n_x_off;
    sp.inv_scale = inv;
    cl.x = x + n_x_off;
    cl.out = xt;
    cl.inv_scale = has_norm ? inv : nullptr;
    cl.gamma = n_gamma > 0 ? gamma : nullptr;
    cp.x = xt;
    cp.weight = w;
    cp.bias = n_bias > 0 ? bias : nullptr;
    cp.residual = n_res > 0 ? res + n_res_off : nullptr;
    cp.out = out;

    emu::Dim3 block;
    block.x = conv3d::THREADS;
    if (has_norm) emu::launch(cadence_conv3d_norm_stats, grid_stats, block, 0, sp);
    emu::launch(cadence_conv3d_channels_last, grid_cl, block, 0, cl);

    size_t need = 0;
    void (*kernel)(conv3d::Conv3dParams) = nullptr;
    switch (tile_n) {
        case 128:
            kernel = cadence_conv3d_sm80_n128;
            need = conv3d::Tiling<128, 4>::SMEM_BYTES;
            break;
        case 64:
            kernel = cadence_conv3d_sm80_n64;
            need = conv3d::Tiling<64, 8>::SMEM_BYTES;
            break;
        case 32:
            kernel = cadence_conv3d_sm80_n32;
            need = conv3d::Tiling<32, 8>::SMEM_BYTES;
            break;
        default:
            emu::fail("no kernel for this tile width", tile_n);
    }
    if (smem != need) emu::fail("the launcher's shared-memory size differs from the kernel's", smem, (long long)need);
    emu::launch(kernel, grid_conv, block, smem, cp);

    FILE* o = std::fopen(argv[2], "wb");
    if (o == nullptr || std::fwrite(out, 2, n_out, o) != n_out || std::fclose(o) != 0)
        emu::fail("cannot write the output");
    return 0;
}
