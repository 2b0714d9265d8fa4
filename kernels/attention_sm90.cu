// Gated GQA attention for Hopper (sm_90a): wgmma tensor cores fed by the TMA copy engine, with
// a producer/consumer warpgroup split and an online softmax, in the FlashAttention-3 style.
//
// CTA = one query head x 128 queries, 3 warpgroups (384 threads):
//   - warpgroup 0, the producer: gives most of its registers away (setmaxnreg 24) and one of
//     its threads issues all TMA loads: the Q tile once, then K and V tiles of 128 keys into a
//     2-stage ring, each stage guarded by a "full" mbarrier (TMA bytes landed) and an "empty"
//     mbarrier (both consumer warpgroups finished reading it). K and V have separate barriers,
//     so K of tile i+2 can load while V of tile i is still being multiplied.
//   - warpgroups 1 and 2, the consumers (setmaxnreg 240): each owns 64 of the 128 query rows.
//     Per key tile: S = Q K^T with 8 wgmma m64n128k16 (A = Q and B = K both from shared
//     memory), the mask of a partial tile, the online softmax in registers, then O += P V
//     with 8 wgmma m64n128k16 whose A operand (P, bf16) comes straight from registers: the
//     S accumulator fragment of two n8 chunks is exactly the A fragment of one k16 step.
//   Register budget: 24 x 128 + 240 x 256 = 64512 of 65536. A consumer thread holds S (64
//   f32), O (64 f32) and P (32 x 2 bf16).
// Shared memory (160 KB + barriers; one CTA per SM): Q 32 KB, K 2 x 32 KB, V 2 x 32 KB. Every
// tile is stored as two column halves (head_dim 0-63 and 64-127) of 128-byte rows with the
// 128-byte swizzle, which is both what TMA writes with CU_TENSOR_MAP_SWIZZLE_128B and a
// canonical wgmma operand layout (conflict-free reads); each half starts on a 1024-byte
// boundary (the swizzle atom).
//   - Q and K are "K-major" operands (head_dim contiguous): descriptor stride between 8-row
//     groups 1024 B; the k16 step kk starts 32*(kk%4) bytes into half kk/4.
//   - V is the B operand of P V with keys as K: "MN-major" (head_dim contiguous), so wgmma
//     transposes it (imm-trans-b = 1); 8-key groups are 1024 B apart (SBO) and the two
//     head_dim halves 16 KB apart (LBO); the k16 step kk starts 2048*kk bytes in.
// Two entry points: cadence_attention_sm90 runs each consumer's tiles strictly one after the
// other; cadence_attention_sm90_pipelined adds FlashAttention-3's two overlaps (softmax of
// tile j under the P V product of tile j-1, and ping-pong turns between the two consumer
// warpgroups), see consume() below and kernels/ATTENTION_NOTES.md.
#include "attention_common.cuh"

namespace cadence {
namespace sm90 {

constexpr int BLOCK_Q = 128;
constexpr int BLOCK_K = 128;
constexpr int STAGES = 2;
constexpr int CONSUMERS = 2;  // warpgroups of 64 query rows
constexpr int THREADS = 128 * (1 + CONSUMERS);
constexpr int HALF_BYTES = 128 * 128;        // 128 rows x 64 bf16
constexpr int TILE_BYTES = 2 * HALF_BYTES;   // 128 rows x 128 bf16
constexpr int Q_OFFSET = 0;
constexpr int K_OFFSET = Q_OFFSET + TILE_BYTES;
constexpr int V_OFFSET = K_OFFSET + STAGES * TILE_BYTES;
constexpr int BARRIER_OFFSET = V_OFFSET + STAGES * TILE_BYTES;
constexpr int BARRIERS = 1 + 4 * STAGES;  // q_full, k_full, v_full, k_empty, v_empty
// + 1 KB so the tiles can be aligned to the 1024-byte swizzle atom whatever the base.
constexpr int SMEM_BYTES = BARRIER_OFFSET + 8 * BARRIERS + 1024;
static_assert(SMEM_BYTES == 164936, "the Rust launcher (hopper.rs) passes this size");

// A CUtensorMap, passed by value as a __grid_constant__ kernel parameter.
struct alignas(64) TmaDescriptor {
    uint64_t opaque[16];
};

// ---- mbarrier and TMA --------------------------------------------------------------------

__device__ __forceinline__ void mbar_init(uint32_t bar, uint32_t count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}
__device__ __forceinline__ void mbar_expect_tx(uint32_t bar, uint32_t bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes)
                 : "memory");
}
__device__ __forceinline__ void mbar_arrive(uint32_t bar) {
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}
// Waits until the phase with the given parity has completed. On a fresh barrier, parity 1
// counts as completed (the producer's first pass over the empty barriers does not block).
__device__ __forceinline__ void mbar_wait(uint32_t bar, uint32_t parity) {
    uint32_t done;
    do {
        asm volatile(
            "{\n.reg .pred p;\n"
            "mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
            "selp.u32 %0, 1, 0, p;\n}\n"
            : "=r"(done)
            : "r"(bar), "r"(parity)
            : "memory");
    } while (!done);
}

// Copies the box at (c0 = head_dim offset, c1 = head, c2 = first token) of a (L, H, 128)
// tensor into shared memory; completion is counted in bytes on `bar`. Rows past L are zeros.
__device__ __forceinline__ void tma_load(uint32_t dst, const TmaDescriptor& map, int c0, int c1,
                                         int c2, uint32_t bar) {
    asm volatile(
        "cp.async.bulk.tensor.3d.shared::cluster.global.tile.mbarrier::complete_tx::bytes "
        "[%0], [%1, {%2, %3, %4}], [%5];\n" ::"r"(dst),
        "l"(reinterpret_cast<uint64_t>(&map)), "r"(c0), "r"(c1), "r"(c2), "r"(bar)
        : "memory");
}
// Both head_dim halves of a 128-row tile (2 boxes of 64 x 128).
__device__ __forceinline__ void tma_load_tile(uint32_t dst, const TmaDescriptor& map, int head,
                                              int row0, uint32_t bar) {
    tma_load(dst, map, 0, head, row0, bar);
    tma_load(dst + HALF_BYTES, map, 64, head, row0, bar);
}

// ---- wgmma ---------------------------------------------------------------------------------

// Shared-memory matrix descriptor with the 128-byte swizzle: start address, leading and
// stride byte offsets (all in 16-byte units), layout type 1 = SWIZZLE_128B in bits 62-63.
__device__ __forceinline__ uint64_t smem_desc(uint32_t addr, uint32_t lead_bytes,
                                              uint32_t stride_bytes) {
    return static_cast<uint64_t>((addr & 0x3FFFF) >> 4) |
           (static_cast<uint64_t>(lead_bytes >> 4) << 16) |
           (static_cast<uint64_t>(stride_bytes >> 4) << 32) | (1ull << 62);
}
// K-major operand (Q, K): the leading offset is unused with swizzling (CUTLASS sets 1 unit).
__device__ __forceinline__ uint64_t desc_k_major(uint32_t addr) {
    return smem_desc(addr, 16, 1024);
}
// MN-major operand (V): head_dim halves 16 KB apart, 8-key groups 1 KB apart.
__device__ __forceinline__ uint64_t desc_mn_major(uint32_t addr) {
    return smem_desc(addr, HALF_BYTES, 1024);
}

__device__ __forceinline__ void wgmma_fence() {
    asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
}
__device__ __forceinline__ void wgmma_commit() {
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}
// Waits until at most PENDING committed wgmma groups of this warpgroup are still running.
template <int PENDING>
__device__ __forceinline__ void wgmma_wait() {
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(PENDING) : "memory");
}
// Pins registers an asynchronous wgmma reads or writes: the compiler may neither move their
// uses across this point nor reuse them before it.
template <int N>
__device__ __forceinline__ void fence_regs(float (&r)[N][4]) {
#pragma unroll
    for (int c = 0; c < N; ++c)
#pragma unroll
        for (int i = 0; i < 4; ++i) asm volatile("" : "+f"(r[c][i])::"memory");
}
template <int N>
__device__ __forceinline__ void fence_regs(uint32_t (&r)[N][4]) {
#pragma unroll
    for (int c = 0; c < N; ++c)
#pragma unroll
        for (int i = 0; i < 4; ++i) asm volatile("" : "+r"(r[c][i])::"memory");
}

#define CADENCE_D64                                                                            \
    "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, "  \
    "%19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, "    \
    "%36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, "    \
    "%53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}"
#define CADENCE_F4(d, c) "+f"(d[c][0]), "+f"(d[c][1]), "+f"(d[c][2]), "+f"(d[c][3])
#define CADENCE_F64(d)                                                                         \
    CADENCE_F4(d, 0), CADENCE_F4(d, 1), CADENCE_F4(d, 2), CADENCE_F4(d, 3), CADENCE_F4(d, 4),  \
        CADENCE_F4(d, 5), CADENCE_F4(d, 6), CADENCE_F4(d, 7), CADENCE_F4(d, 8),                \
        CADENCE_F4(d, 9), CADENCE_F4(d, 10), CADENCE_F4(d, 11), CADENCE_F4(d, 12),             \
        CADENCE_F4(d, 13), CADENCE_F4(d, 14), CADENCE_F4(d, 15)

// d (64x128 f32, this warpgroup) = (accumulate ? d : 0) + A (64x16 from smem) * B (16x128
// from smem, K-major). Accumulator fragment: d[c][i] is row 16*warp + lane/4 + 8*(i/2),
// column 8*c + 2*(lane%4) + i%2 of the warpgroup's 64 x 128 tile.
__device__ __forceinline__ void wgmma_ss(float (&d)[16][4], uint64_t a, uint64_t b,
                                         int accumulate) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 " CADENCE_D64
        ", %64, %65, p, 1, 1, 0, 0;\n}\n"
        : CADENCE_F64(d)
        : "l"(a), "l"(b), "r"(accumulate));
}

// d += A (64x16 bf16 from registers, the mma.sync A fragment layout per warp) * B (16x128
// from smem, MN-major, so transposed: imm-trans-b = 1).
__device__ __forceinline__ void wgmma_rs(float (&d)[16][4], const uint32_t (&a)[4], uint64_t b) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 " CADENCE_D64
        ", {%64, %65, %66, %67}, %68, p, 1, 1, 1;\n}\n"
        : CADENCE_F64(d)
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(1));
}

// ---- the kernel ----------------------------------------------------------------------------

struct Smem {
    uint32_t q, k, v, bar;
    __device__ __forceinline__ uint32_t k_tile(int s) const { return k + s * TILE_BYTES; }
    __device__ __forceinline__ uint32_t v_tile(int s) const { return v + s * TILE_BYTES; }
    __device__ __forceinline__ uint32_t q_full() const { return bar; }
    __device__ __forceinline__ uint32_t k_full(int s) const { return bar + 8 * (1 + s); }
    __device__ __forceinline__ uint32_t v_full(int s) const { return bar + 8 * (1 + STAGES + s); }
    __device__ __forceinline__ uint32_t k_empty(int s) const {
        return bar + 8 * (1 + 2 * STAGES + s);
    }
    __device__ __forceinline__ uint32_t v_empty(int s) const {
        return bar + 8 * (1 + 3 * STAGES + s);
    }
};

__device__ __forceinline__ void produce(const AttentionParams& p, const TmaDescriptor& tq,
                                        const TmaDescriptor& tk, const TmaDescriptor& tv,
                                        const Smem& sm, const TileCoord& tc) {
    asm volatile("prefetch.tensormap [%0];\n" ::"l"(reinterpret_cast<uint64_t>(&tk)) : "memory");
    asm volatile("prefetch.tensormap [%0];\n" ::"l"(reinterpret_cast<uint64_t>(&tv)) : "memory");
    mbar_expect_tx(sm.q_full(), TILE_BYTES);
    tma_load_tile(sm.q, tq, tc.head, tc.q_tile * BLOCK_Q, sm.q_full());
    int it = 0;
    for (TileCursor tile(p, tc.q_tile); !tile.done(); tile.next(), ++it) {
        const int s = it % STAGES;
        const uint32_t empty_parity = ((it / STAGES) & 1) ^ 1;
        const int row0 = tile.tile * BLOCK_K;
        mbar_wait(sm.k_empty(s), empty_parity);
        mbar_expect_tx(sm.k_full(s), TILE_BYTES);
        tma_load_tile(sm.k_tile(s), tk, tc.kv_head, row0, sm.k_full(s));
        mbar_wait(sm.v_empty(s), empty_parity);
        mbar_expect_tx(sm.v_full(s), TILE_BYTES);
        tma_load_tile(sm.v_tile(s), tv, tc.kv_head, row0, sm.v_full(s));
    }
}

// ---- consumer pieces ----------------------------------------------------------------------

// Named barriers 1 and 2 (0 is __syncthreads) order the two consumer warpgroups' GEMM issue
// in the pipelined kernel: warpgroup g waits on barrier 1 + g before issuing, and lets the
// other one go by arriving on its barrier afterwards.
__device__ __forceinline__ void turn_wait(int group) {
    asm volatile("bar.sync %0, 256;\n" ::"r"(1 + group) : "memory");
}
__device__ __forceinline__ void turn_pass(int group) {
    asm volatile("bar.arrive %0, 256;\n" ::"r"(2 - group) : "memory");
}

// Issues S = Q K^T over head_dim (8 k16 steps), one wgmma group left uncommitted.
__device__ __forceinline__ void issue_qk(float (&s)[16][4], uint32_t q_rows, uint32_t k_tile) {
#pragma unroll
    for (int kk = 0; kk < 8; ++kk) {
        const uint32_t offset = (kk / 4) * HALF_BYTES + (kk % 4) * 32;
        wgmma_ss(s, desc_k_major(q_rows + offset), desc_k_major(k_tile + offset), kk > 0);
    }
}

// Issues O += P V over the tile's 128 keys (8 k16 steps).
__device__ __forceinline__ void issue_pv(float (&o)[16][4], const uint32_t (&pa)[8][4],
                                         uint32_t v_tile) {
#pragma unroll
    for (int kk = 0; kk < 8; ++kk) wgmma_rs(o, pa[kk], desc_mn_major(v_tile + kk * 2048));
}

// Masks a partial tile's scores, then runs the online softmax over them (s becomes P in f32).
__device__ __forceinline__ void mask_and_softmax(const AttentionParams& p, const TileCursor& tile,
                                                 float (&s)[16][4], float (&m)[2], float (&l)[2],
                                                 float (&correction)[2], int row0, int lane) {
    if (!tile.full())
        apply_mask<16>(s, p.rects + tile.span->rect_begin,
                       tile.span->rect_end - tile.span->rect_begin, row0,
                       tile.tile * BLOCK_K + 2 * (lane % 4));
    softmax_update<16>(s, m, l, correction, p.scale_log2);
}

__device__ __forceinline__ void rescale(float (&o)[16][4], const float (&correction)[2]) {
#pragma unroll
    for (int c = 0; c < 16; ++c) {
        o[c][0] *= correction[0];
        o[c][1] *= correction[0];
        o[c][2] *= correction[1];
        o[c][3] *= correction[1];
    }
}

// P (f32 accumulator fragment) -> bf16 A fragments: the S chunks 2kk and 2kk+1 are exactly
// the A fragment of k16 step kk of P V.
__device__ __forceinline__ void pack_p(uint32_t (&pa)[8][4], const float (&s)[16][4]) {
#pragma unroll
    for (int kk = 0; kk < 8; ++kk) {
        pa[kk][0] = pack_bf16(s[2 * kk][0], s[2 * kk][1]);
        pa[kk][1] = pack_bf16(s[2 * kk][2], s[2 * kk][3]);
        pa[kk][2] = pack_bf16(s[2 * kk + 1][0], s[2 * kk + 1][1]);
        pa[kk][3] = pack_bf16(s[2 * kk + 1][2], s[2 * kk + 1][3]);
    }
}

// ---- consumers -----------------------------------------------------------------------------

// One consumer warpgroup: 64 query rows of the tile against every scheduled key tile.
//
// PIPELINED = false: per tile, S = Q K^T, wait, softmax, O += P V, wait. The tensor cores idle
// during this warpgroup's softmax unless the other warpgroup happens to be issuing.
//
// PIPELINED = true (FlashAttention-3's two overlaps):
//   - within the warpgroup, S_j = Q K_j^T and O += P_{j-1} V_{j-1} are issued back to back,
//     and the softmax of S_j runs while the P V product is still on the tensor cores; O is
//     rescaled by tile j's correction only after that product has landed;
//   - between the two warpgroups, named barriers make them take turns issuing their GEMMs
//     ("ping-pong"), so one warpgroup's softmax (MUFU.EX2-bound) overlaps the other's GEMMs.
//   Turns per warpgroup: one per key tile plus one for the last P V. Warpgroup 1 starts by
//   letting warpgroup 0 go and skips its final pass, so every arrival is matched by a wait.
template <bool PIPELINED>
__device__ __forceinline__ void consume(const AttentionParams& p, const Smem& sm,
                                        const TileCoord& tc, int group) {
    const int tid = threadIdx.x % 128, warp = tid / 32, lane = tid % 32;
    const int row0 = tc.q_tile * BLOCK_Q + 64 * group + 16 * warp + lane / 4;  // and row0 + 8
    const uint32_t q_rows = sm.q + group * 64 * 128;  // this warpgroup's 64 rows of each half

    float o[16][4];
#pragma unroll
    for (int c = 0; c < 16; ++c)
#pragma unroll
        for (int i = 0; i < 4; ++i) o[c][i] = 0.f;
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f}, correction[2];
    float s[16][4];
    uint32_t pa[8][4];

    mbar_wait(sm.q_full(), 0);
    TileCursor tile(p, tc.q_tile);
    if (!PIPELINED) {
        for (int it = 0; !tile.done(); tile.next(), ++it) {
            const int st = it % STAGES;
            const uint32_t parity = (it / STAGES) & 1;
            mbar_wait(sm.k_full(st), parity);
            wgmma_fence();
            issue_qk(s, q_rows, sm.k_tile(st));
            wgmma_commit();
            wgmma_wait<0>();
            fence_regs(s);
            mbar_arrive(sm.k_empty(st));

            mask_and_softmax(p, tile, s, m, l, correction, row0, lane);
            rescale(o, correction);
            pack_p(pa, s);

            mbar_wait(sm.v_full(st), parity);
            fence_regs(o);
            fence_regs(pa);
            wgmma_fence();
            issue_pv(o, pa, sm.v_tile(st));
            wgmma_commit();
            wgmma_wait<0>();
            fence_regs(o);
            fence_regs(pa);
            mbar_arrive(sm.v_empty(st));
        }
    } else if (!tile.done()) {
        if (group == 1) turn_pass(group);  // warpgroup 0 issues first

        // Tile 0: S_0 alone.
        turn_wait(group);
        mbar_wait(sm.k_full(0), 0);
        wgmma_fence();
        issue_qk(s, q_rows, sm.k_tile(0));
        wgmma_commit();
        turn_pass(group);
        wgmma_wait<0>();
        fence_regs(s);
        mbar_arrive(sm.k_empty(0));
        mask_and_softmax(p, tile, s, m, l, correction, row0, lane);  // O is 0: no rescale
        pack_p(pa, s);

        int prev = 0;  // stage of the tile whose P is in pa
        uint32_t prev_parity = 0;
        tile.next();
        for (int it = 1; !tile.done(); tile.next(), ++it) {
            const int st = it % STAGES;
            const uint32_t parity = (it / STAGES) & 1;
            turn_wait(group);
            mbar_wait(sm.k_full(st), parity);
            fence_regs(o);
            fence_regs(pa);
            wgmma_fence();
            issue_qk(s, q_rows, sm.k_tile(st));
            wgmma_commit();
            mbar_wait(sm.v_full(prev), prev_parity);
            wgmma_fence();
            issue_pv(o, pa, sm.v_tile(prev));
            wgmma_commit();
            turn_pass(group);

            wgmma_wait<1>();  // S_j has landed (groups complete in order); P V may still run
            fence_regs(s);
            mbar_arrive(sm.k_empty(st));
            mask_and_softmax(p, tile, s, m, l, correction, row0, lane);

            wgmma_wait<0>();  // O += P_{j-1} V_{j-1} has landed
            fence_regs(o);
            fence_regs(pa);
            mbar_arrive(sm.v_empty(prev));
            rescale(o, correction);
            pack_p(pa, s);
            prev = st;
            prev_parity = parity;
        }

        // The last P V.
        turn_wait(group);
        mbar_wait(sm.v_full(prev), prev_parity);
        fence_regs(o);
        fence_regs(pa);
        wgmma_fence();
        issue_pv(o, pa, sm.v_tile(prev));
        wgmma_commit();
        if (group == 0) turn_pass(group);
        wgmma_wait<0>();
        fence_regs(o);
        fence_regs(pa);
        mbar_arrive(sm.v_empty(prev));
    }

#pragma unroll
    for (int r = 0; r < 2; ++r) {
        const int t = row0 + 8 * r;
        const float sum = quad_sum(l[r]);
        if (t >= p.len) continue;
        const float inv_l = sum > 0.f ? 1.f / sum : 0.f;
        const float g = gate_factor(p, t, tc.head);
#pragma unroll
        for (int c = 0; c < 16; ++c)
            store_pair(p, t, tc.head, 8 * c + 2 * (lane % 4), o[c][2 * r], o[c][2 * r + 1], inv_l, g);
    }
}

// The whole CTA: barrier setup, then the producer / consumer split.
template <bool PIPELINED>
__device__ __forceinline__ void attention(const AttentionParams& p, const TmaDescriptor& tq,
                                          const TmaDescriptor& tk, const TmaDescriptor& tv,
                                          uint8_t* smem_raw) {
    const uint32_t base =
        (static_cast<uint32_t>(__cvta_generic_to_shared(smem_raw)) + 1023) & ~1023u;
    const Smem sm{base + Q_OFFSET, base + K_OFFSET, base + V_OFFSET, base + BARRIER_OFFSET};
    const TileCoord tc = tile_coord(p);
    const int warpgroup = threadIdx.x / 128;

    if (threadIdx.x == 0) {
        mbar_init(sm.q_full(), 1);
        for (int s = 0; s < STAGES; ++s) {
            mbar_init(sm.k_full(s), 1);
            mbar_init(sm.v_full(s), 1);
            mbar_init(sm.k_empty(s), 128 * CONSUMERS);
            mbar_init(sm.v_empty(s), 128 * CONSUMERS);
        }
        // Make the initialised barriers visible to the async proxy (TMA) as well.
        asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
    }
    __syncthreads();

    // The register split takes effect only because each role is one branch here and the
    // kernel is capped at entry by __launch_bounds__(THREADS, 1) (168 registers).
    if (warpgroup == 0) {
        asm volatile("setmaxnreg.dec.sync.aligned.u32 24;\n" ::: "memory");
        if (threadIdx.x == 0) produce(p, tq, tk, tv, sm, tc);
    } else {
        asm volatile("setmaxnreg.inc.sync.aligned.u32 240;\n" ::: "memory");
        consume<PIPELINED>(p, sm, tc, warpgroup - 1);
    }
}

}  // namespace sm90
}  // namespace cadence

// The entry points the Rust side loads by name (C linkage). Launch: one CTA per (query tile,
// query head), sm90::THREADS threads, sm90::SMEM_BYTES of dynamic shared memory; tq, tk, tv
// are the tensor maps of q, k, v described in crates/kernels/src/attention/cuda.rs.
#define CADENCE_SM90_ENTRY(name, pipelined)                                                   \
    extern "C" __global__ void __launch_bounds__(cadence::sm90::THREADS, 1)                   \
        name(const __grid_constant__ cadence::AttentionParams p,                              \
             const __grid_constant__ cadence::sm90::TmaDescriptor tq,                         \
             const __grid_constant__ cadence::sm90::TmaDescriptor tk,                         \
             const __grid_constant__ cadence::sm90::TmaDescriptor tv) {                       \
        extern __shared__ __align__(1024) uint8_t smem[];                                     \
        cadence::sm90::attention<pipelined>(p, tq, tk, tv, smem);                             \
    }

// The straightforward warp-specialised kernel.
CADENCE_SM90_ENTRY(cadence_attention_sm90, false)
// The same with intra-warpgroup overlap and ping-pong scheduling.
CADENCE_SM90_ENTRY(cadence_attention_sm90_pipelined, true)
