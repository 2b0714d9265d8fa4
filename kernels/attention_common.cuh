// Shared pieces of the attention kernels (attention_sm80.cu, attention_sm90.cu).
//
// Both kernels compute, for one query head h and one tile of queries,
//
//     out[t, h, :] = bf16( bf16( softmax_j(q_t . k_j * scale) . v_j ) * sigmoid(gate[t, h]) )
//
// over the keys j the block-sparse schedule lists for the tile, with query head h reading
// key/value head h / group. Scores, softmax and the P.V accumulation are f32; P is rounded to
// bf16 for the tensor cores (as FlashAttention does); the result is rounded to bf16 before the
// gate and again after it, exactly the reference's bf16(bf16(attn) * sigmoid(g)).
//
// The schedule (built on the CPU by crates/kernels/src/attention/schedule.rs) lists, per query
// tile, spans of key tiles: runs of full tiles (no masking) and single partial tiles that carry
// rectangles of allowed (query, key) pairs. The structs below mirror its #[repr(C)] types.
#pragma once

#include <cuda_bf16.h>
#include <stddef.h>
#include <stdint.h>

namespace cadence {

// A run of key tiles [tile_begin, tile_end); rect_begin == rect_end means "full, no mask".
struct KeySpan {
    int tile_begin, tile_end, rect_begin, rect_end;
};

// Allowed pairs of a partial tile: queries [q_begin, q_end) x keys [k_begin, k_end).
struct MaskRect {
    int q_begin, q_end, k_begin, k_end;
};

// Everything a launch needs besides the tensors themselves (passed by value).
struct AttentionParams {
    const __nv_bfloat16* q;   // (L, Hq, 128)
    const __nv_bfloat16* k;   // (L, Hk, 128)
    const __nv_bfloat16* v;   // (L, Hk, 128)
    const float* gate;        // (L, Hq) f32, or nullptr for no gate
    __nv_bfloat16* out;       // (L, Hq, 128)
    const int* span_offsets;  // query tiles + 1
    const KeySpan* spans;
    const MaskRect* rects;
    int len;                  // L
    int heads_q;              // Hq
    int heads_kv;             // Hk
    int q_tiles;              // ceil(L / BLOCK_Q)
    float scale_log2;         // softmax scale * log2(e): scores are exponentiated with exp2
};

// The Rust side (crates/kernels/src/attention/cuda.rs, `Params`) writes this struct byte for
// byte and asserts the same size; the schedule structs mirror schedule.rs' #[repr(C)] types.
static_assert(sizeof(AttentionParams) == 88, "layout shared with cuda.rs");
static_assert(offsetof(AttentionParams, len) == 64, "layout shared with cuda.rs");
static_assert(offsetof(AttentionParams, scale_log2) == 80, "layout shared with cuda.rs");
static_assert(sizeof(KeySpan) == 16 && sizeof(MaskRect) == 16, "layout shared with schedule.rs");

constexpr int HEAD_DIM = 128;

// The CTA's (query tile, query head). Consecutive CTAs take the query heads of one KV head
// first (fastest), then the next query tile, then the next KV head: the CTAs resident at one
// time (about 132 on an H100) all stream the same KV head's keys and values, so each K/V tile
// is read from DRAM about once and served from L2 to the other CTAs of the group (5 query heads
// x ~26 query tiles with GQA 5:1).
struct TileCoord {
    int q_tile, head, kv_head;
};

__device__ __forceinline__ TileCoord tile_coord(const AttentionParams& p) {
    const int group = p.heads_q / p.heads_kv;
    int bid = blockIdx.x;
    const int in_group = bid % group;
    bid /= group;
    TileCoord c;
    c.q_tile = bid % p.q_tiles;
    c.kv_head = bid / p.q_tiles;
    c.head = c.kv_head * group + in_group;
    return c;
}

// Walks the key tiles of one query tile in schedule order.
struct TileCursor {
    const KeySpan* span;
    const KeySpan* end;
    int tile;

    __device__ __forceinline__ TileCursor(const AttentionParams& p, int q_tile)
        : span(p.spans + p.span_offsets[q_tile]), end(p.spans + p.span_offsets[q_tile + 1]),
          tile(span < end ? span->tile_begin : 0) {}

    __device__ __forceinline__ bool done() const { return span >= end; }
    __device__ __forceinline__ bool full() const { return span->rect_begin == span->rect_end; }
    __device__ __forceinline__ void next() {
        if (++tile >= span->tile_end && ++span < end) tile = span->tile_begin;
    }
};

__device__ __forceinline__ float fast_exp2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t*>(&v);
}

// Max and sum across the 4 threads of a quad: the threads that share an accumulator row in
// the mma.sync and wgmma fragment layouts.
__device__ __forceinline__ float quad_max(float x) {
    x = fmaxf(x, __shfl_xor_sync(0xffffffff, x, 1));
    return fmaxf(x, __shfl_xor_sync(0xffffffff, x, 2));
}
__device__ __forceinline__ float quad_sum(float x) {
    x += __shfl_xor_sync(0xffffffff, x, 1);
    return x + __shfl_xor_sync(0xffffffff, x, 2);
}

// Online-softmax update for a new tile of scores held in the accumulator fragment layout
// shared by mma.sync m16n8 and wgmma m64nN: per 8-column chunk c, s[c][0..1] are two adjacent
// columns of the thread's first row and s[c][2..3] the same columns of its row + 8; the 4
// threads of a quad together hold each row. Scores are already -inf where masked.
//
// Works in the exp2 domain (p = exp2(s * scale_log2 - m)). m and l are the two rows' running
// max (of scaled scores) and the thread's partial row sums (the quad's sum is taken once, in
// the epilogue). s is overwritten with the probabilities; correction[r] is the factor the row's
// running output must be multiplied by.
template <int CHUNKS>
__device__ __forceinline__ void softmax_update(float (&s)[CHUNKS][4], float (&m)[2], float (&l)[2],
                                               float (&correction)[2], float scale_log2) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        float tile_max = -INFINITY;
#pragma unroll
        for (int c = 0; c < CHUNKS; ++c)
            tile_max = fmaxf(tile_max, fmaxf(s[c][2 * r], s[c][2 * r + 1]));
        tile_max = quad_max(tile_max) * scale_log2;
        const float m_new = fmaxf(m[r], tile_max);
        // A row with no allowed key so far keeps m = -inf; subtracting 0 then gives p = 0
        // instead of exp2(-inf + inf) = NaN.
        const float base = m_new == -INFINITY ? 0.f : m_new;
        correction[r] = fast_exp2(m[r] - base);  // exp2(-inf) = 0 on the first tile
        float sum = 0.f;
#pragma unroll
        for (int c = 0; c < CHUNKS; ++c) {
#pragma unroll
            for (int i = 2 * r; i < 2 * r + 2; ++i) {
                s[c][i] = fast_exp2(fmaf(s[c][i], scale_log2, -base));
                sum += s[c][i];
            }
        }
        l[r] = l[r] * correction[r] + sum;
        m[r] = m_new;
    }
}

// Sets the scores of a partial tile outside its rectangles to -inf. row0 is the thread's
// first row (absolute token index; its second row is row0 + 8), col0 the absolute key of its
// first column. The rectangles are read once each; which elements they allow is collected in
// a 64-bit mask (one bit per fragment element) so no per-element array is kept in registers.
template <int CHUNKS>
__device__ __forceinline__ void apply_mask(float (&s)[CHUNKS][4], const MaskRect* rects, int n,
                                           int row0, int col0) {
    static_assert(CHUNKS * 4 <= 64, "one bit per fragment element");
    uint64_t keep = 0;
    for (int i = 0; i < n; ++i) {
        const MaskRect r = rects[i];
#pragma unroll
        for (int half = 0; half < 2; ++half) {
            const int row = row0 + 8 * half;
            if (row < r.q_begin || row >= r.q_end) continue;
#pragma unroll
            for (int c = 0; c < CHUNKS; ++c)
#pragma unroll
                for (int j = 0; j < 2; ++j) {
                    const int col = col0 + 8 * c + j;
                    if (col >= r.k_begin && col < r.k_end) keep |= 1ull << (4 * c + 2 * half + j);
                }
        }
    }
#pragma unroll
    for (int c = 0; c < CHUNKS; ++c)
#pragma unroll
        for (int i = 0; i < 4; ++i)
            if (!((keep >> (4 * c + i)) & 1)) s[c][i] = -INFINITY;
}

// The epilogue for one pair of adjacent output columns of row t, head h: normalise by the row
// sum, round to bf16, gate in f32 and round again, store 4 bytes.
__device__ __forceinline__ void store_pair(const AttentionParams& p, int t, int head, int col,
                                           float o0, float o1, float inv_l, float gate) {
    __nv_bfloat162 core = __floats2bfloat162_rn(o0 * inv_l, o1 * inv_l);
    if (p.gate != nullptr) {
        const float2 c = __bfloat1622float2(core);
        core = __floats2bfloat162_rn(c.x * gate, c.y * gate);
    }
    *reinterpret_cast<__nv_bfloat162*>(p.out + ((size_t)t * p.heads_q + head) * HEAD_DIM + col) =
        core;
}

// sigmoid(gate[t, head]) in f32 as the reference computes it: 1 / (1 + exp(-g)).
__device__ __forceinline__ float gate_factor(const AttentionParams& p, int t, int head) {
    if (p.gate == nullptr || t >= p.len) return 1.f;
    const float g = p.gate[(size_t)t * p.heads_q + head];
    return 1.f / (1.f + expf(-g));
}

}  // namespace cadence
