// A CPU emulation of the small part of CUDA the conv3d kernels use, so that their real source
// (kernels/conv3d_sm80.cu, compiled as host C++ with CADENCE_EMULATE) can be run and checked on
// a machine without a GPU.
//
// Model:
// * A launch runs its CTAs one after another. Each CTA's threads are cooperative fibers on one
//   OS thread (deterministic): a fiber runs until it reaches __syncthreads or a warp-collective
//   instruction, then the scheduler runs the next one. A warp instruction completes when all
//   32 lanes of the warp have reached it (same instruction), __syncthreads when every live
//   thread of the CTA has; anything else is reported as a deadlock or a divergence.
// * ldmatrix.x4 and mma.sync.m16n8k16 (bf16 in, f32 accumulate) are computed from all lanes'
//   operands with the fragment layouts of the PTX ISA ("Matrix Fragments for mma.m16n8k16",
//   "ldmatrix"), written independently of the kernel.
// * cp.async copies either complete at issue ("eager") or only when a cp.async.wait_group
//   forces them ("lazy"). Warps either advance in lockstep (one warp instruction each per
//   round) or greedily (one warp runs ahead until it waits at __syncthreads, then the next),
//   taken in thread order or in reverse. A kernel must be right under every combination:
//   together they expose missing waits and barriers (data read before it has landed, or
//   overwritten while another warp still reads it).
// * Shared memory is filled with bf16 NaN before every CTA, so reading what was never written
//   poisons the result. Every shared access of ldmatrix/cp.async is bounds- and
//   alignment-checked, global accesses must fall inside a registered buffer, and guard bytes
//   after the dynamic shared memory must survive the CTA.
// Any violation prints a message and exits with status 3.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cmath>
#include <cstring>
#include <functional>
#include <memory>
#include <vector>

#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))

namespace cadence {
namespace emu {

struct alignas(16) uint4 {
    uint32_t x, y, z, w;
};
struct Dim3 {
    unsigned x = 1, y = 1, z = 1;
};

[[noreturn]] inline void fail(const char* what, long long a = 0, long long b = 0) {
    std::fprintf(stderr, "emulation error: %s (%lld, %lld)\n", what, a, b);
    std::fflush(stderr);
    std::exit(3);
}

// ---------------------------------------------------------------------------------------------
// Fibers: a minimal stack switch (callee-saved registers and the stack pointer).

#if defined(__x86_64__)
extern "C" void cadence_emu_switch(void** save_sp, void* load_sp);
asm(R"(
    .pushsection .text
    .globl cadence_emu_switch
    .type cadence_emu_switch, @function
cadence_emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size cadence_emu_switch, .-cadence_emu_switch
    .popsection
)");
#else
#error "the conv3d emulator's fiber switch is written for x86-64"
#endif

enum class State { Ready, AtBarrier, AtWarpOp, Done };
enum class Op { None, Ldmatrix, Mma };

struct Copy {
    uint32_t dst;
    const uint8_t* src;
    bool valid;
    int group;
};

struct Fiber {
    void* sp = nullptr;
    State state = State::Ready;
    Dim3 tid;
    int linear = 0;
    // cp.async
    std::vector<Copy> pending;
    int committed = 0;
    // the warp instruction this lane waits in, with its operands and results
    Op op = Op::None;
    uint32_t in[6] = {};
    float acc[4] = {};
    uint32_t out[4] = {};
};

struct Buffer {
    const uint8_t* begin;
    size_t bytes;
    bool writable;
};

struct Policy {
    bool lazy_copies = false;    // cp.async completes at wait_group instead of at issue
    bool reverse_order = false;  // threads and warps are taken from the last to the first
    bool warp_greedy = false;    // one warp runs until it waits at a barrier before the next
                                 // starts (else every warp advances one instruction per round)
};

constexpr size_t STACK_BYTES = 128 * 1024;
constexpr size_t GUARD_BYTES = 256;
constexpr uint8_t GUARD = 0xA5;

struct Emulator {
    std::vector<Fiber> fibers;
    std::vector<std::unique_ptr<uint8_t[]>> stacks;
    Fiber* current = nullptr;
    void* scheduler_sp = nullptr;
    std::function<void()> entry;
    Dim3 block, grid, block_idx;
    std::vector<uint8_t> smem;  // dynamic shared memory + guard
    size_t smem_bytes = 0;
    std::vector<Buffer> buffers;
    Policy policy;
};

inline Emulator& state() {
    static Emulator e;
    return e;
}

inline Dim3 thread_idx() { return state().current->tid; }
inline Dim3 block_idx() { return state().block_idx; }
inline Dim3 block_dim() { return state().block; }
inline Dim3 grid_dim() { return state().grid; }

inline void yield(State s) {
    Emulator& e = state();
    Fiber* f = e.current;
    f->state = s;
    cadence_emu_switch(&f->sp, e.scheduler_sp);
}

inline void fiber_main() {
    Emulator& e = state();
    e.entry();
    Fiber* f = e.current;
    if (!f->pending.empty()) fail("thread exits with cp.async copies in flight", f->linear);
    f->state = State::Done;
    cadence_emu_switch(&f->sp, e.scheduler_sp);
    fail("a finished fiber was resumed");
}

// ---------------------------------------------------------------------------------------------
// Memory checks.

inline void register_buffer(const void* p, size_t bytes, bool writable) {
    state().buffers.push_back({static_cast<const uint8_t*>(p), bytes, writable});
}

inline void check_global(const void* p, size_t bytes, bool write) {
    const uint8_t* q = static_cast<const uint8_t*>(p);
    if (reinterpret_cast<uintptr_t>(q) % bytes != 0) fail("misaligned global access", (long long)bytes);
    for (const Buffer& b : state().buffers)
        if (q >= b.begin && q + bytes <= b.begin + b.bytes) {
            if (write && !b.writable) fail("store to a read-only buffer");
            return;
        }
    fail("global access outside every buffer", (long long)bytes);
}

template <typename T>
inline T global_load(const T* p) {
    check_global(p, sizeof(T), false);
    T v;
    std::memcpy(&v, p, sizeof(T));
    return v;
}

template <typename T>
inline void global_store(T* p, T v) {
    check_global(p, sizeof(T), true);
    std::memcpy(p, &v, sizeof(T));
}

inline uint8_t* dynamic_smem() { return state().smem.data(); }

inline uint32_t smem_offset(const void* p) {
    Emulator& e = state();
    const uint8_t* q = static_cast<const uint8_t*>(p);
    if (q < e.smem.data() || q > e.smem.data() + e.smem_bytes) fail("not a shared-memory pointer");
    return uint32_t(q - e.smem.data());
}

inline uint8_t* smem_at(uint32_t addr, size_t bytes) {
    Emulator& e = state();
    if (addr % 16 != 0) fail("shared address not 16-byte aligned", addr);
    if (size_t(addr) + bytes > e.smem_bytes) fail("shared access past the dynamic allocation", addr, (long long)e.smem_bytes);
    return e.smem.data() + addr;
}

// ---------------------------------------------------------------------------------------------
// bf16

inline float bf16_to_float(uint16_t b) {
    const uint32_t u = uint32_t(b) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

inline uint16_t float_to_bf16(float f) {  // round to nearest even
    uint32_t u;
    std::memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fc0;
    u += 0x7fffu + ((u >> 16) & 1u);
    return uint16_t(u >> 16);
}

// __expf: the hardware's ex2.approx-based exponential; the host's expf stands in for it (the
// two differ in the last bits, well inside a bf16 rounding).
inline float exp_f32(float x) { return std::exp(x); }

// ---------------------------------------------------------------------------------------------
// cp.async

inline void do_copy(const Copy& c) {
    uint8_t* dst = smem_at(c.dst, 16);
    if (c.valid)
        std::memcpy(dst, c.src, 16);
    else
        std::memset(dst, 0, 16);
}

inline void cp_async_16(uint32_t dst, const void* src, bool valid) {
    Emulator& e = state();
    smem_at(dst, 16);
    if (valid) check_global(src, 16, false);
    const Copy c{dst, static_cast<const uint8_t*>(src), valid, e.current->committed};
    if (e.policy.lazy_copies)
        e.current->pending.push_back(c);
    else
        do_copy(c);
}

inline void cp_async_commit() { state().current->committed++; }

inline void cp_async_wait(int n) {
    Fiber* f = state().current;
    std::vector<Copy> keep;
    for (const Copy& c : f->pending) {
        if (c.group < f->committed - n)
            do_copy(c);
        else
            keep.push_back(c);
    }
    f->pending.swap(keep);
}

// ---------------------------------------------------------------------------------------------
// Barriers and warp instructions.

inline void sync_cta() { yield(State::AtBarrier); }

inline void ldmatrix_x4(uint32_t addr, uint32_t (&r)[4]) {
    Fiber* f = state().current;
    f->op = Op::Ldmatrix;
    f->in[0] = addr;
    yield(State::AtWarpOp);
    for (int i = 0; i < 4; ++i) r[i] = f->out[i];
}

inline void mma_bf16_16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    Fiber* f = state().current;
    f->op = Op::Mma;
    for (int i = 0; i < 4; ++i) {
        f->in[i] = a[i];
        f->acc[i] = d[i];
    }
    f->in[4] = b0;
    f->in[5] = b1;
    yield(State::AtWarpOp);
    for (int i = 0; i < 4; ++i) std::memcpy(&d[i], &f->out[i], 4);
}

inline uint16_t lo(uint32_t v) { return uint16_t(v & 0xffff); }
inline uint16_t hi(uint32_t v) { return uint16_t(v >> 16); }

// ldmatrix.sync.aligned.m8n8.x4.b16: threads 8i..8i+7 give the row addresses of matrix i;
// thread t receives, for each matrix i, elements (row t/4, columns 2(t%4), 2(t%4)+1).
inline void resolve_ldmatrix(Fiber* const* lanes) {
    uint16_t m[4][8][8];
    for (int i = 0; i < 4; ++i)
        for (int r = 0; r < 8; ++r) {
            const uint8_t* row = smem_at(lanes[8 * i + r]->in[0], 16);
            std::memcpy(m[i][r], row, 16);
        }
    for (int t = 0; t < 32; ++t)
        for (int i = 0; i < 4; ++i)
            lanes[t]->out[i] = uint32_t(m[i][t / 4][2 * (t % 4)]) |
                               (uint32_t(m[i][t / 4][2 * (t % 4) + 1]) << 16);
}

// mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32, with g = lane / 4, q = lane % 4:
// A regs {a0 a1} (row g, cols 2q, 2q+1), {a2 a3} (row g+8), {a4 a5} (row g, cols +8),
// {a6 a7} (row g+8, cols +8); B regs {b0 b1} (rows 2q, 2q+1, col g), {b2 b3} (rows +8);
// C/D {c0 c1} (row g, cols 2q, 2q+1), {c2 c3} (row g+8). Lower half-word = lower index.
inline void resolve_mma(Fiber* const* lanes) {
    float a[16][16], b[16][8], c[16][8];
    for (int t = 0; t < 32; ++t) {
        const int g = t / 4, q = t % 4;
        const Fiber* l = lanes[t];
        const int rows[4] = {g, g + 8, g, g + 8}, cols[4] = {2 * q, 2 * q, 2 * q + 8, 2 * q + 8};
        for (int i = 0; i < 4; ++i) {
            a[rows[i]][cols[i]] = bf16_to_float(lo(l->in[i]));
            a[rows[i]][cols[i] + 1] = bf16_to_float(hi(l->in[i]));
        }
        b[2 * q][g] = bf16_to_float(lo(l->in[4]));
        b[2 * q + 1][g] = bf16_to_float(hi(l->in[4]));
        b[2 * q + 8][g] = bf16_to_float(lo(l->in[5]));
        b[2 * q + 9][g] = bf16_to_float(hi(l->in[5]));
        c[g][2 * q] = l->acc[0];
        c[g][2 * q + 1] = l->acc[1];
        c[g + 8][2 * q] = l->acc[2];
        c[g + 8][2 * q + 1] = l->acc[3];
    }
    for (int t = 0; t < 32; ++t) {
        const int g = t / 4, q = t % 4;
        const int rows[4] = {g, g, g + 8, g + 8}, cols[4] = {2 * q, 2 * q + 1, 2 * q, 2 * q + 1};
        for (int i = 0; i < 4; ++i) {
            float s = 0.f;
            for (int k = 0; k < 16; ++k) s += a[rows[i]][k] * b[k][cols[i]];
            const float d = c[rows[i]][cols[i]] + s;
            std::memcpy(&lanes[t]->out[i], &d, 4);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Launch.

// Completes warp w's pending warp instruction if all 32 lanes have reached it.
inline bool resolve_warp(int w) {
    Emulator& e = state();
    Fiber* lanes[32];
    int waiting = 0, done = 0;
    for (int l = 0; l < 32; ++l) {
        lanes[l] = &e.fibers[32 * w + l];
        waiting += lanes[l]->state == State::AtWarpOp;
        done += lanes[l]->state == State::Done;
    }
    if (waiting == 0) return false;
    if (waiting != 32) {
        if (waiting + done == 32) fail("warp instruction with exited lanes", w);
        return false;  // some lanes still run or wait at a barrier
    }
    const Op op = lanes[0]->op;
    for (int l = 1; l < 32; ++l)
        if (lanes[l]->op != op) fail("lanes of a warp at different warp instructions", w, l);
    if (op == Op::Ldmatrix)
        resolve_ldmatrix(lanes);
    else
        resolve_mma(lanes);
    for (Fiber* l : lanes) l->state = State::Ready;
    return true;
}

inline void run_cta() {
    Emulator& e = state();
    const int n = int(e.fibers.size());
    std::fill(e.smem.begin(), e.smem.begin() + e.smem_bytes, 0);
    for (size_t i = 0; i + 1 < e.smem_bytes; i += 2) {  // bf16 NaN everywhere
        e.smem[i] = 0xc0;
        e.smem[i + 1] = 0x7f;
    }
    std::fill(e.smem.begin() + e.smem_bytes, e.smem.end(), GUARD);
    for (int i = 0; i < n; ++i) {
        Fiber& f = e.fibers[i];
        f.state = State::Ready;
        f.pending.clear();
        f.committed = 0;
        f.op = Op::None;
        // Initial stack: six zero callee-saved registers, then fiber_main as the return
        // address, then an unused slot, so fiber_main starts with the ABI's stack alignment.
        uint8_t* top = e.stacks[i].get() + STACK_BYTES;
        void** sp = reinterpret_cast<void**>(top) - 1;
        *sp-- = nullptr;
        *sp = reinterpret_cast<void*>(&fiber_main);
        for (int r = 0; r < 6; ++r) *--sp = nullptr;
        f.sp = sp;
    }
    const int warps = n / 32;
    for (;;) {
        bool progress = false;
        for (int k = 0; k < warps; ++k) {
            const int w = e.policy.reverse_order ? warps - 1 - k : k;
            // Greedy: the first warp (in policy order) that can move runs until it waits at a
            // barrier or finishes; the others wait for their turn.
            do {
                bool ran = false;
                for (int j = 0; j < 32; ++j) {
                    Fiber& f = e.fibers[32 * w + (e.policy.reverse_order ? 31 - j : j)];
                    if (f.state != State::Ready) continue;
                    e.current = &f;
                    cadence_emu_switch(&e.scheduler_sp, f.sp);
                    ran = true;
                }
                e.current = nullptr;
                const bool resolved = resolve_warp(w);
                progress = progress || ran || resolved;
                if (!ran && !resolved) break;
            } while (e.policy.warp_greedy);
            if (e.policy.warp_greedy && progress) break;
        }
        if (progress) continue;
        int at_barrier = 0, done = 0;
        for (const Fiber& f : e.fibers) {
            at_barrier += f.state == State::AtBarrier;
            done += f.state == State::Done;
        }
        if (done == n) break;
        if (at_barrier + done != n) fail("deadlock: threads wait in a warp instruction and at a barrier", at_barrier, done);
        if (done != 0) fail("__syncthreads after some threads exited", done);
        for (Fiber& f : e.fibers) f.state = State::Ready;
    }
    for (size_t i = e.smem_bytes; i < e.smem.size(); ++i)
        if (e.smem[i] != GUARD) fail("write past the dynamic shared memory", (long long)(i - e.smem_bytes));
}

// Runs `kernel(params)` on every CTA of `grid` with `block` threads.
template <typename P>
inline void launch(void (*kernel)(P), Dim3 grid, Dim3 block, size_t smem_bytes, const P& params) {
    Emulator& e = state();
    const int n = int(block.x * block.y * block.z);
    if (n % 32 != 0) fail("block size is not a whole number of warps", n);
    if (smem_bytes > 232448) fail("more dynamic shared memory than an sm_90 CTA may have", (long long)smem_bytes);
    e.grid = grid;
    e.block = block;
    e.smem_bytes = smem_bytes;
    e.smem.assign(smem_bytes + GUARD_BYTES, 0);
    e.fibers.assign(n, Fiber{});
    while (int(e.stacks.size()) < n) e.stacks.emplace_back(new uint8_t[STACK_BYTES]);
    for (int i = 0; i < n; ++i) {
        Fiber& f = e.fibers[i];
        f.linear = i;
        f.tid.x = unsigned(i) % block.x;
        f.tid.y = (unsigned(i) / block.x) % block.y;
        f.tid.z = unsigned(i) / (block.x * block.y);
    }
    e.entry = [kernel, &params] { kernel(params); };
    for (unsigned z = 0; z < grid.z; ++z)
        for (unsigned y = 0; y < grid.y; ++y)
            for (unsigned x = 0; x < grid.x; ++x) {
                e.block_idx.x = x;
                e.block_idx.y = y;
                e.block_idx.z = z;
                run_cta();
            }
}

}  // namespace emu
}  // namespace cadence

#define threadIdx (::cadence::emu::thread_idx())
#define blockIdx (::cadence::emu::block_idx())
#define blockDim (::cadence::emu::block_dim())
#define gridDim (::cadence::emu::grid_dim())
