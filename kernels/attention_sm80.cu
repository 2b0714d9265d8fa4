// Gated GQA attention with mma.sync (the Ampere-style tensor-core path), the simple kernel.
//
// Why it exists: it uses only warp-level mma.sync, ldmatrix and cp.async, whose fragment
// layouts are well known, so it is the kernel most likely to be right the first time. It is
// the fallback and the cross-check for the wgmma kernel (attention_sm90.cu), which is faster
// on Hopper but has far more ways to be subtly wrong. Expect roughly FlashAttention-2 speed on
// an H100 (about 300-350 TFLOP/s at head_dim 128), well short of wgmma.
//
// Tiling (one CTA = one query head x 128 queries; 8 warps, 256 threads, 2 CTAs per SM):
//   - each warp owns 16 query rows and the whole 16 x 128 output accumulator (64 f32/thread);
//   - key tiles of 64: S = Q K^T is 16 x 64 per warp (32 f32/thread), P = softmax(S) is
//     converted in registers into the A operand of O += P V (no shared-memory round trip);
//   - Q stays in shared memory and is re-read with ldmatrix each tile (it costs 1/5 of the K
//     reads and saves 32 registers per thread).
// Pipeline: two shared-memory stages for K and V, filled with cp.async; the load of key tile
// i+1 is issued before tile i is computed, and one __syncthreads per tile both publishes tile
// i and retires the stage tile i+1 overwrites.
// Shared memory rows are 256 bytes (128 bf16); the 16-byte chunk c of row r is stored at chunk
// c ^ (r & 7), so the 8 rows an ldmatrix phase reads fall in 8 different bank groups.
#include "attention_common.cuh"

namespace cadence {
namespace sm80 {

constexpr int BLOCK_Q = 128;
constexpr int BLOCK_K = 64;
constexpr int THREADS = 256;
constexpr int ROW_BYTES = HEAD_DIM * 2;
constexpr int Q_BYTES = BLOCK_Q * ROW_BYTES;   // 32 KB
constexpr int KV_BYTES = BLOCK_K * ROW_BYTES;  // 16 KB per stage and tensor
constexpr int SMEM_BYTES = Q_BYTES + 4 * KV_BYTES;  // Q + 2 stages x (K, V) = 96 KB
// Two CTAs per SM (16 warps) for latency hiding: 2 x 96 KB of shared memory fits, and the
// register cap this implies (128 per thread) costs 24 bytes of spills (ptxas), against 195
// registers and 8 warps per SM with one CTA.
constexpr int CTAS_PER_SM = 2;
static_assert(SMEM_BYTES == 98304, "the Rust launcher (cuda.rs) passes this size");

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
    return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// Byte offset of 16-byte chunk `chunk` of row `row` in a swizzled tile.
__device__ __forceinline__ uint32_t swizzle(int row, int chunk) {
    return row * ROW_BYTES + ((chunk ^ (row & 7)) << 4);
}

__device__ __forceinline__ void cp_async_16(uint32_t dst, const void* src, bool valid) {
    // src-size 0 writes 16 zero bytes: rows past the sequence end load as zeros.
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src),
                 "r"(valid ? 16 : 0)
                 : "memory");
}
__device__ __forceinline__ void cp_async_commit() {
    asm volatile("cp.async.commit_group;\n" ::: "memory");
}
__device__ __forceinline__ void cp_async_wait_all() {
    asm volatile("cp.async.wait_group 0;\n" ::: "memory");
}

// Loads `rows` token rows of head `head` from a (L, heads, 128) tensor into a swizzled tile.
// Consecutive threads take consecutive 16-byte chunks: a warp reads two whole 256-byte rows.
template <int ROWS>
__device__ __forceinline__ void load_rows(uint32_t tile, const __nv_bfloat16* base, int row0,
                                          int heads, int head, int len) {
#pragma unroll
    for (int i = threadIdx.x; i < ROWS * 16; i += THREADS) {
        const int r = i / 16, c = i % 16, t = row0 + r;
        const bool valid = t < len;
        const __nv_bfloat16* src = base + ((size_t)(valid ? t : 0) * heads + head) * HEAD_DIM + c * 8;
        cp_async_16(tile + swizzle(r, c), src, valid);
    }
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t addr, uint32_t (&r)[4]) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t addr, uint32_t (&r)[4]) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

// d += a (16x16, row) * b (16x8, col), bf16 in, f32 accumulate.
__device__ __forceinline__ void mma_16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                                          uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, "
        "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ void attention(const AttentionParams& p, uint8_t* smem) {
    const uint32_t s_q = smem_addr(smem);
    const uint32_t s_k = s_q + Q_BYTES;          // stage s at s_k + s * KV_BYTES
    const uint32_t s_v = s_k + 2 * KV_BYTES;     // stage s at s_v + s * KV_BYTES
    const TileCoord tc = tile_coord(p);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int q_row0 = tc.q_tile * BLOCK_Q;

    // Prologue: Q and the first key tile in one cp.async group.
    load_rows<BLOCK_Q>(s_q, p.q, q_row0, p.heads_q, tc.head, p.len);
    TileCursor loader(p, tc.q_tile);
    if (!loader.done()) {
        load_rows<BLOCK_K>(s_k, p.k, loader.tile * BLOCK_K, p.heads_kv, tc.kv_head, p.len);
        load_rows<BLOCK_K>(s_v, p.v, loader.tile * BLOCK_K, p.heads_kv, tc.kv_head, p.len);
        loader.next();
    }
    cp_async_commit();

    float o[16][4];
#pragma unroll
    for (int c = 0; c < 16; ++c)
#pragma unroll
        for (int i = 0; i < 4; ++i) o[c][i] = 0.f;
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};

    // ldmatrix row addresses that do not change over the loop (see the fragment notes below).
    const int q_row = warp * 16 + lane % 16;      // A operand: rows of matrices 0-1 / 2-3
    const int q_chunk_hi = lane / 16;             // ... matrices 2-3 are the next 8 columns
    const int k_row = (lane / 16) * 8 + lane % 8; // B of Q K^T: keys of the n8 chunk pair
    const int k_chunk_hi = (lane / 8) % 2;
    const int v_row = lane % 8 + ((lane / 8) % 2) * 8;  // B of P V (transposed): keys
    const int v_chunk_hi = lane / 16;

    int stage = 0;
    for (TileCursor tile(p, tc.q_tile); !tile.done(); tile.next(), stage ^= 1) {
        cp_async_wait_all();
        __syncthreads();  // tile `stage` visible to all; everyone is done with the other stage
        if (!loader.done()) {
            const uint32_t k_next = s_k + (stage ^ 1) * KV_BYTES;
            const uint32_t v_next = s_v + (stage ^ 1) * KV_BYTES;
            load_rows<BLOCK_K>(k_next, p.k, loader.tile * BLOCK_K, p.heads_kv, tc.kv_head, p.len);
            load_rows<BLOCK_K>(v_next, p.v, loader.tile * BLOCK_K, p.heads_kv, tc.kv_head, p.len);
            loader.next();
        }
        cp_async_commit();
        const uint32_t k_tile = s_k + stage * KV_BYTES;
        const uint32_t v_tile = s_v + stage * KV_BYTES;

        // S = Q K^T for this warp's 16 rows x 64 keys: 8 steps of k16 over head_dim.
        // ldmatrix x4 on Q gives the m16n8k16 A fragment (rows 0-7/8-15 x cols 0-7/8-15);
        // on K (keys x head_dim, non-transposed) it gives the B fragments of two n8 chunks.
        float s[8][4];
#pragma unroll
        for (int c = 0; c < 8; ++c)
#pragma unroll
            for (int i = 0; i < 4; ++i) s[c][i] = 0.f;
#pragma unroll
        for (int kk = 0; kk < 8; ++kk) {
            uint32_t a[4];
            ldmatrix_x4(s_q + swizzle(q_row, 2 * kk + q_chunk_hi), a);
#pragma unroll
            for (int np = 0; np < 4; ++np) {
                uint32_t b[4];
                ldmatrix_x4(k_tile + swizzle(np * 16 + k_row, 2 * kk + k_chunk_hi), b);
                mma_16816(s[2 * np], a, b[0], b[1]);
                mma_16816(s[2 * np + 1], a, b[2], b[3]);
            }
        }

        if (!tile.full())
            apply_mask<8>(s, p.rects + tile.span->rect_begin,
                          tile.span->rect_end - tile.span->rect_begin, q_row0 + warp * 16 + lane / 4,
                          tile.tile * BLOCK_K + 2 * (lane % 4));
        float correction[2];
        softmax_update<8>(s, m, l, correction, p.scale_log2);
#pragma unroll
        for (int c = 0; c < 16; ++c) {
            o[c][0] *= correction[0];
            o[c][1] *= correction[0];
            o[c][2] *= correction[1];
            o[c][3] *= correction[1];
        }

        // O += P V: 4 steps of k16 over the 64 keys. The accumulator fragments of two
        // adjacent n8 chunks of S are exactly the A fragment of one k16 step; ldmatrix.trans
        // on V (keys x head_dim) gives the B fragments of two n8 chunks of head_dim.
#pragma unroll
        for (int kk = 0; kk < 4; ++kk) {
            const uint32_t a[4] = {pack_bf16(s[2 * kk][0], s[2 * kk][1]),
                                   pack_bf16(s[2 * kk][2], s[2 * kk][3]),
                                   pack_bf16(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                                   pack_bf16(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
            for (int dp = 0; dp < 8; ++dp) {
                uint32_t b[4];
                ldmatrix_x4_trans(v_tile + swizzle(kk * 16 + v_row, 2 * dp + v_chunk_hi), b);
                mma_16816(o[2 * dp], a, b[0], b[1]);
                mma_16816(o[2 * dp + 1], a, b[2], b[3]);
            }
        }
    }

    // Epilogue: thread holds rows t0 and t0 + 8, columns 8c + 2 (lane % 4) + {0, 1}.
    const int t0 = q_row0 + warp * 16 + lane / 4;
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        const int t = t0 + 8 * r;
        const float sum = quad_sum(l[r]);
        if (t >= p.len) continue;
        const float inv_l = sum > 0.f ? 1.f / sum : 0.f;
        const float g = gate_factor(p, t, tc.head);
#pragma unroll
        for (int c = 0; c < 16; ++c)
            store_pair(p, t, tc.head, 8 * c + 2 * (lane % 4), o[c][2 * r], o[c][2 * r + 1], inv_l, g);
    }
}

}  // namespace sm80
}  // namespace cadence

// The entry point the Rust side loads by name (C linkage). Launch: one CTA per (query tile,
// query head), sm80::THREADS threads, sm80::SMEM_BYTES of dynamic shared memory.
extern "C" __global__ void __launch_bounds__(cadence::sm80::THREADS, cadence::sm80::CTAS_PER_SM)
    cadence_attention_sm80(const cadence::AttentionParams p) {
    extern __shared__ __align__(128) uint8_t smem[];
    cadence::sm80::attention(p, smem);
}
