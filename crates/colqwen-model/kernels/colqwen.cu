// Fused CUDA kernels of colqwen's bf16 path, compiled to PTX by build.rs with the pinned nvcc
// (scripts/cuda-build.sh) and loaded by src/kernels.rs. Each kernel has a generic candle twin (the CPU,
// Metal and f32 path) and a test comparing the two (tests/cuda_kernels.rs).
//
//   flash_fwd_d{16,...,128,256}      variable-length attention over packed sequences (FlashAttention-2
//                                    scheme: scores and probabilities never leave registers)
//   rope_f32 / rope_bf16             NeoX rotary of q and k straight out of the fused qkv GEMM
//   rope_partial_f32 / _bf16         the same over the first r dims of each head (Qwen3.5), any width
//   silu_mul_bf16                    silu(gate) * up over the fused gate/up GEMM output
//   add_rms_norm_bf16                residual add fused with the next RMSNorm (Qwen2 / Qwen3 decoders, Qwen2.5-VL
//                                    vision blocks)
//   add_layer_norm_bf16              residual add fused with the next LayerNorm with bias (Qwen3-VL vision blocks)
//   maxsim_reduce_f16 / _f32         MaxSim's max-over-rows and sum-over-query-rows after the device search's GEMM
//   add_centred_rms_norm_bf16        residual add fused with Qwen3.5's zero-centred RMSNorm ((1 + w) in f32)
//   causal_conv_silu_bf16            Gated DeltaNet: short causal depthwise convolution + SiLU, packed sequences
//   gdn_chunk_prepare                Gated DeltaNet: per chunk, gates, L2 norms, the triangular solve (f32)
//   gdn_chunk_scan_bv{8,16,32}       Gated DeltaNet: the state carried through each sequence's chunks (f32)
//   gated_rms_norm_bf16              Gated DeltaNet: RMSNorm of the core gated by silu(z)

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

typedef __nv_bfloat16 bf16;

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);  // .x (low half) = lo
    return *reinterpret_cast<uint32_t*>(&v);
}

// D += A·B on tensor cores: A 16×16 (row), B 16×8 (col), f32 accumulators. Fragment layouts: PTX ISA,
// "Matrix Fragments for mma.m16n8k16 with floating point type" (g = lane/4, c = lane%4):
//   A regs: (g, 2c..2c+1), (g+8, 2c..), (g, 2c+8..), (g+8, 2c+8..)
//   B regs: (k 2c..2c+1, n g), (k 2c+8.., n g)
//   C/D:    (g, 2c), (g, 2c+1), (g+8, 2c), (g+8, 2c+1)
__device__ __forceinline__ void mma_bf16(float (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                         uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// 16-byte global → shared copy that bypasses registers; `valid == false` writes zeros (rows past the end of
// a sequence must be zero, not garbage: 0 · NaN would poison the accumulators).
__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, bool valid) {
    uint32_t s = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
    int n = valid ? 16 : 0;
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(n));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

// Four transposed 8×8 bf16 matrices from shared memory (row addresses from lanes 8i..8i+7 for matrix i).
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t& r0, uint32_t& r1, uint32_t& r2, uint32_t& r3,
                                                  const void* smem) {
    uint32_t s = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
                 : "r"(s));
}

constexpr int BR = 64;  // query rows per block: 4 warps × 16
constexpr int THREADS = 128;

// One block = one tile of up to 64 query rows of one sequence, for one query head.
//   q [N, Hq, D], k/v [N, Hkv, D], o [N, Hq, D]: row strides q_rs, k_rs, v_rs, o_rs (elements), head stride D.
//   tiles [T][3] = (first row of the sequence, its length, first query row of the tile inside it).
//   Query head h reads kv head h / group (GQA). Softmax of scale·q·k in f32 (exp2 of log2-scaled scores),
//   probabilities rounded to bf16 for P·V, as FlashAttention-2 and SDPA's flash kernel do.
// BC keys per tile (64; 32 for D = 256, whose two 64-key tiles would pass the 48 KB of static shared memory).
template <int D, int BC>
__device__ __forceinline__ void flash_fwd(const bf16* __restrict__ q, const bf16* __restrict__ k,
                                          const bf16* __restrict__ v, bf16* __restrict__ o,
                                          const uint32_t* __restrict__ tiles, int q_rs, int k_rs, int v_rs,
                                          int o_rs, int group, float scale_log2, int causal) {
    static_assert(D % 16 == 0, "head dim must be a multiple of 16");
    constexpr int DP = D + 8;  // padded shared row: conflict-free fragment loads and ldmatrix
    __shared__ __align__(16) bf16 ks[BC * DP];
    __shared__ __align__(16) bf16 vs[BC * DP];

    const int h = blockIdx.y, kvh = h / group;
    const int start = tiles[3 * blockIdx.x], len = tiles[3 * blockIdx.x + 1], q0 = tiles[3 * blockIdx.x + 2];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, c = lane % 4;
    const int r0 = q0 + warp * 16 + g, r1 = r0 + 8;  // query rows of this thread, inside the sequence

    uint32_t qa[D / 16][4];
    const bf16* qb = q + (size_t)start * q_rs + (size_t)h * D;
#pragma unroll
    for (int t = 0; t < D / 16; ++t) {
        const int col = t * 16 + 2 * c;
        qa[t][0] = r0 < len ? *reinterpret_cast<const uint32_t*>(qb + (size_t)r0 * q_rs + col) : 0u;
        qa[t][1] = r1 < len ? *reinterpret_cast<const uint32_t*>(qb + (size_t)r1 * q_rs + col) : 0u;
        qa[t][2] = r0 < len ? *reinterpret_cast<const uint32_t*>(qb + (size_t)r0 * q_rs + col + 8) : 0u;
        qa[t][3] = r1 < len ? *reinterpret_cast<const uint32_t*>(qb + (size_t)r1 * q_rs + col + 8) : 0u;
    }

    float acc[D / 8][4];
#pragma unroll
    for (int j = 0; j < D / 8; ++j) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.f;
    float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.f, l1 = 0.f;

    const int kend = causal ? min(len, q0 + BR) : len;
    const bf16* kb = k + (size_t)start * k_rs + (size_t)kvh * D;
    const bf16* vb = v + (size_t)start * v_rs + (size_t)kvh * D;
    constexpr int CH = D / 8;  // 16-byte chunks per row

    for (int k0 = 0; k0 < kend; k0 += BC) {
        for (int i = threadIdx.x; i < BC * CH; i += THREADS) {
            const int row = i / CH, ch = i % CH;
            const bool ok = k0 + row < len;
            cp_async16(&ks[row * DP + ch * 8], kb + (size_t)(ok ? k0 + row : 0) * k_rs + ch * 8, ok);
        }
        cp_async_commit();
        for (int i = threadIdx.x; i < BC * CH; i += THREADS) {
            const int row = i / CH, ch = i % CH;
            const bool ok = k0 + row < len;
            cp_async16(&vs[row * DP + ch * 8], vb + (size_t)(ok ? k0 + row : 0) * v_rs + ch * 8, ok);
        }
        cp_async_commit();
        cp_async_wait<1>();  // K has landed; V may still be in flight during the softmax
        __syncthreads();

        float s[BC / 8][4];
#pragma unroll
        for (int j = 0; j < BC / 8; ++j) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.f;
#pragma unroll
        for (int t = 0; t < D / 16; ++t) {
#pragma unroll
            for (int j = 0; j < BC / 8; ++j) {
                const bf16* kr = &ks[(j * 8 + g) * DP + t * 16 + 2 * c];
                const uint32_t b0 = *reinterpret_cast<const uint32_t*>(kr);
                const uint32_t b1 = *reinterpret_cast<const uint32_t*>(kr + 8);
                mma_bf16(s[j], qa[t][0], qa[t][1], qa[t][2], qa[t][3], b0, b1);
            }
        }

        float mx0 = m0, mx1 = m1;
#pragma unroll
        for (int j = 0; j < BC / 8; ++j) {
#pragma unroll
            for (int e = 0; e < 2; ++e) {
                const int key = k0 + j * 8 + 2 * c + e;
                float v0 = s[j][e] * scale_log2, v1 = s[j][2 + e] * scale_log2;
                if (key >= len || (causal && key > r0)) v0 = -INFINITY;
                if (key >= len || (causal && key > r1)) v1 = -INFINITY;
                s[j][e] = v0;
                s[j][2 + e] = v1;
                mx0 = fmaxf(mx0, v0);
                mx1 = fmaxf(mx1, v1);
            }
        }
        mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
        mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
        mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
        mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
        // Rows with nothing visible yet (past the sequence end) keep a finite base: exp2(-inf - 0) = 0.
        const float base0 = mx0 == -INFINITY ? 0.f : mx0, base1 = mx1 == -INFINITY ? 0.f : mx1;
        const float alpha0 = exp2f(m0 - base0), alpha1 = exp2f(m1 - base1);
        m0 = mx0;
        m1 = mx1;
        l0 *= alpha0;
        l1 *= alpha1;
#pragma unroll
        for (int j = 0; j < D / 8; ++j) {
            acc[j][0] *= alpha0;
            acc[j][1] *= alpha0;
            acc[j][2] *= alpha1;
            acc[j][3] *= alpha1;
        }
#pragma unroll
        for (int j = 0; j < BC / 8; ++j) {
            s[j][0] = exp2f(s[j][0] - base0);
            s[j][1] = exp2f(s[j][1] - base0);
            s[j][2] = exp2f(s[j][2] - base1);
            s[j][3] = exp2f(s[j][3] - base1);
            l0 += s[j][0] + s[j][1];
            l1 += s[j][2] + s[j][3];
        }

        cp_async_wait<0>();
        __syncthreads();
#pragma unroll
        for (int t = 0; t < BC / 16; ++t) {
            const uint32_t a0 = pack_bf16(s[2 * t][0], s[2 * t][1]);
            const uint32_t a1 = pack_bf16(s[2 * t][2], s[2 * t][3]);
            const uint32_t a2 = pack_bf16(s[2 * t + 1][0], s[2 * t + 1][1]);
            const uint32_t a3 = pack_bf16(s[2 * t + 1][2], s[2 * t + 1][3]);
            const int key = t * 16 + ((lane >> 3) & 1) * 8 + (lane & 7);
#pragma unroll
            for (int j = 0; j < D / 8; j += 2) {
                uint32_t b0, b1, b2, b3;
                ldmatrix_x4_trans(b0, b1, b2, b3, &vs[key * DP + j * 8 + (lane >> 4) * 8]);
                mma_bf16(acc[j], a0, a1, a2, a3, b0, b1);
                mma_bf16(acc[j + 1], a0, a1, a2, a3, b2, b3);
            }
        }
        __syncthreads();  // before the next tile overwrites ks/vs
    }

    l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
    l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
    const float inv0 = l0 > 0.f ? 1.f / l0 : 0.f, inv1 = l1 > 0.f ? 1.f / l1 : 0.f;
    bf16* ob = o + (size_t)start * o_rs + (size_t)h * D;
#pragma unroll
    for (int j = 0; j < D / 8; ++j) {
        const int col = j * 8 + 2 * c;
        if (r0 < len) *reinterpret_cast<uint32_t*>(ob + (size_t)r0 * o_rs + col) = pack_bf16(acc[j][0] * inv0, acc[j][1] * inv0);
        if (r1 < len) *reinterpret_cast<uint32_t*>(ob + (size_t)r1 * o_rs + col) = pack_bf16(acc[j][2] * inv1, acc[j][3] * inv1);
    }
}

#define FLASH_FWD_BC(D, BC)                                                                                   \
    extern "C" __global__ void __launch_bounds__(THREADS) flash_fwd_d##D(                                     \
        const bf16* q, const bf16* k, const bf16* v, bf16* o, const uint32_t* tiles, int q_rs, int k_rs,     \
        int v_rs, int o_rs, int group, float scale_log2, int causal) {                                        \
        flash_fwd<D, BC>(q, k, v, o, tiles, q_rs, k_rs, v_rs, o_rs, group, scale_log2, causal);               \
    }
#define FLASH_FWD(D) FLASH_FWD_BC(D, 64)
FLASH_FWD(16)
FLASH_FWD(32)
FLASH_FWD(64)
FLASH_FWD(80)
FLASH_FWD(96)
FLASH_FWD(128)
FLASH_FWD_BC(256, 32)  // Qwen3.5's full-attention heads

// 8 bf16 values through one 16-byte access.
union Pack8 {
    uint4 u;
    bf16 v[8];
};

// NeoX ("half") rotary of the first `heads` heads of each row of `src` (row stride src_rs, head h at h·d) into
// dst [n, heads, d]; cos/sin [n, d/2]; d/2, src_rs and the offsets multiples of 8. One thread per 8 rotated
// pairs, 16-byte accesses.
//   rope_f32:  the vision tower's recipe (fact sheet trap 12): x and the tables in f32, one rounding at the end.
//   rope_bf16: the language model's recipe (trap 16): `q·cos + rotate_half(q)·sin` in bf16 with bf16 tables,
//              each product and the sum rounded to bf16 as PyTorch's bf16 ops do.
// __fmul_rn/__fadd_rn keep nvcc from contracting to FMA, so the f32 arithmetic equals PyTorch's.
__device__ __forceinline__ float rbf(float x) { return __bfloat162float(__float2bfloat16(x)); }
__device__ __forceinline__ void load8(const float* p, float (&out)[8]) {
    const float4 a = *reinterpret_cast<const float4*>(p), b = *reinterpret_cast<const float4*>(p + 4);
    out[0] = a.x, out[1] = a.y, out[2] = a.z, out[3] = a.w, out[4] = b.x, out[5] = b.y, out[6] = b.z, out[7] = b.w;
}
__device__ __forceinline__ void load8(const bf16* p, float (&out)[8]) {
    Pack8 v;
    v.u = *reinterpret_cast<const uint4*>(p);
#pragma unroll
    for (int e = 0; e < 8; ++e) out[e] = __bfloat162float(v.v[e]);
}

template <typename Table, bool ROUND_EACH_STEP>
__device__ __forceinline__ void rope(const bf16* __restrict__ src, int src_rs, const Table* __restrict__ cos,
                                     const Table* __restrict__ sin, bf16* __restrict__ dst, int n, int heads, int d) {
    const int half = d / 2, per_head = half / 8;
    const long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (long long)n * heads * per_head) return;
    const int i = (idx % per_head) * 8;
    const long long t = idx / per_head;
    const int h = t % heads;
    const long long r = t / heads;
    const bf16* x = src + r * src_rs + (long long)h * d;
    Pack8 a, b, ya, yb;
    a.u = *reinterpret_cast<const uint4*>(x + i);
    b.u = *reinterpret_cast<const uint4*>(x + half + i);
    float cs[8], sn[8];
    load8(cos + r * half + i, cs);
    load8(sin + r * half + i, sn);
#pragma unroll
    for (int e = 0; e < 8; ++e) {
        const float x1 = __bfloat162float(a.v[e]), x2 = __bfloat162float(b.v[e]);
        float p1c = __fmul_rn(x1, cs[e]), p2s = __fmul_rn(x2, sn[e]), p2c = __fmul_rn(x2, cs[e]), p1s = __fmul_rn(x1, sn[e]);
        if (ROUND_EACH_STEP) {
            p1c = rbf(p1c);
            p2s = rbf(p2s);
            p2c = rbf(p2c);
            p1s = rbf(p1s);
        }
        ya.v[e] = __float2bfloat16(__fadd_rn(p1c, -p2s));
        yb.v[e] = __float2bfloat16(__fadd_rn(p2c, p1s));
    }
    bf16* y = dst + (r * heads + h) * d;
    *reinterpret_cast<uint4*>(y + i) = ya.u;
    *reinterpret_cast<uint4*>(y + half + i) = yb.u;
}

extern "C" __global__ void rope_f32(const bf16* src, int src_rs, const float* cos, const float* sin, bf16* dst,
                                   int n, int heads, int d) {
    rope<float, false>(src, src_rs, cos, sin, dst, n, heads, d);
}

extern "C" __global__ void rope_bf16(const bf16* src, int src_rs, const bf16* cos, const bf16* sin, bf16* dst,
                                    int n, int heads, int d) {
    rope<bf16, true>(src, src_rs, cos, sin, dst, n, heads, d);
}

// out [n, inter] = silu(gu[:, :inter]) · gu[:, inter:], gu [n, 2·inter] contiguous, inter % 8 == 0: the
// reference's `act_fn(gate_proj(x)) * up_proj(x)` with its two bf16 roundings (silu in f32 rounded, then the
// product). One thread per 8 outputs, 16-byte loads and stores.
extern "C" __global__ void silu_mul_bf16(const bf16* __restrict__ gu, bf16* __restrict__ out, int n, int inter) {
    const int per_row = inter / 8;
    const long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (long long)n * per_row) return;
    const long long r = idx / per_row;
    const int j = (idx % per_row) * 8;
    Pack8 g, u, o;
    g.u = *reinterpret_cast<const uint4*>(gu + r * 2 * inter + j);
    u.u = *reinterpret_cast<const uint4*>(gu + r * 2 * inter + inter + j);
#pragma unroll
    for (int e = 0; e < 8; ++e) {
        const float gv = __bfloat162float(g.v[e]);
        o.v[e] = __float2bfloat16(rbf(gv / (1.0f + expf(-gv))) * __bfloat162float(u.v[e]));
    }
    *reinterpret_cast<uint4*>(out + r * inter + j) = o.u;
}

// Residual add fused with the next RMSNorm, one warp per row (d % 8 == 0, d ≤ 8 · 32 · MAX_CHUNKS), the row kept
// in registers:
//   h = x + delta            (bf16, as the reference's residual add; skipped when delta is null: h = x)
//   ROUND_FIRST (Qwen2 / Qwen3, bf16 w):
//     y = bf16(bf16(h · rsqrt(mean(h²) + eps)) · w)   — statistics in f32 from the rounded h, normalised values
//                                                       cast back before the weight multiply (trap 13);
//   else (Qwen3.5's zero-centred norm, w = 1 + w' in f32):
//     y = bf16((h · rsqrt(mean(h²) + eps)) · w)       — the whole product in f32, one rounding
//                                                       (`Qwen3_5RMSNorm`: `(x * w).to(float16)`, unlike Llama).
// Writes h to h_out (when delta is given) and y.
constexpr int NORM_WARPS = 4;
template <typename W, int MAX_CHUNKS, bool ROUND_FIRST>
__device__ __forceinline__ void add_rms_norm_rows(const bf16* __restrict__ x, const bf16* __restrict__ delta,
                                                  const W* __restrict__ w, bf16* __restrict__ h_out,
                                                  bf16* __restrict__ y, int n, int d, float eps) {
    const int lane = threadIdx.x % 32;
    const long long row = (long long)blockIdx.x * NORM_WARPS + threadIdx.x / 32;
    if (row >= n) return;
    Pack8 hv[MAX_CHUNKS];
    float ss = 0.f;
#pragma unroll
    for (int k = 0; k < MAX_CHUNKS; ++k) {
        const int c = (k * 32 + lane) * 8;
        if (c < d) {
            hv[k].u = *reinterpret_cast<const uint4*>(x + row * d + c);
            if (delta) {
                Pack8 b;
                b.u = *reinterpret_cast<const uint4*>(delta + row * d + c);
#pragma unroll
                for (int e = 0; e < 8; ++e)
                    hv[k].v[e] = __float2bfloat16(__bfloat162float(hv[k].v[e]) + __bfloat162float(b.v[e]));
                *reinterpret_cast<uint4*>(h_out + row * d + c) = hv[k].u;
            }
#pragma unroll
            for (int e = 0; e < 8; ++e) {
                const float v = __bfloat162float(hv[k].v[e]);
                ss += v * v;
            }
        }
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
    const float r = rsqrtf(ss / d + eps);
#pragma unroll
    for (int k = 0; k < MAX_CHUNKS; ++k) {
        const int c = (k * 32 + lane) * 8;
        if (c < d) {
            float wv[8];
            load8(w + c, wv);
            Pack8 o;
#pragma unroll
            for (int e = 0; e < 8; ++e) {
                const float normed = __bfloat162float(hv[k].v[e]) * r;
                o.v[e] = __float2bfloat16(ROUND_FIRST ? rbf(normed) * wv[e] : __fmul_rn(normed, wv[e]));
            }
            *reinterpret_cast<uint4*>(y + row * d + c) = o.u;
        }
    }
}

constexpr int NORM_MAX_CHUNKS = 8;  // 16-byte chunks per lane: d ≤ 8 · 8 · 32
extern "C" __global__ void __launch_bounds__(NORM_WARPS * 32)
    add_rms_norm_bf16(const bf16* __restrict__ x, const bf16* __restrict__ delta, const bf16* __restrict__ w,
                      bf16* __restrict__ h_out, bf16* __restrict__ y, int n, int d, float eps) {
    add_rms_norm_rows<bf16, NORM_MAX_CHUNKS, true>(x, delta, w, h_out, y, n, d, eps);
}

// Qwen3.5's zero-centred RMSNorm, `w1` = 1 + w in f32; d ≤ 4096 (16 chunks per lane).
extern "C" __global__ void __launch_bounds__(NORM_WARPS * 32)
    add_centred_rms_norm_bf16(const bf16* __restrict__ x, const bf16* __restrict__ delta, const float* __restrict__ w1,
                              bf16* __restrict__ h_out, bf16* __restrict__ y, int n, int d, float eps) {
    add_rms_norm_rows<float, 16, false>(x, delta, w1, h_out, y, n, d, eps);
}

// Residual add fused with the next LayerNorm (with bias), one warp per row (d % 8 == 0, d ≤ 2048), the row kept
// in registers — torch's LayerNorm for bf16 inputs:
//   h = x + delta                                  (bf16; skipped when delta is null)
//   y = bf16((h − mean)·rsqrt(var + eps)·w + b)    — mean, then the variance of the centred values, in f32 from
//                                                    the rounded h; the affine part in f32; one rounding.
extern "C" __global__ void __launch_bounds__(NORM_WARPS * 32)
    add_layer_norm_bf16(const bf16* __restrict__ x, const bf16* __restrict__ delta, const bf16* __restrict__ w,
                        const bf16* __restrict__ bias, bf16* __restrict__ h_out, bf16* __restrict__ y, int n, int d,
                        float eps) {
    const int lane = threadIdx.x % 32;
    const long long row = (long long)blockIdx.x * NORM_WARPS + threadIdx.x / 32;
    if (row >= n) return;
    Pack8 hv[NORM_MAX_CHUNKS];
    float sum = 0.f;
#pragma unroll
    for (int k = 0; k < NORM_MAX_CHUNKS; ++k) {
        const int c = (k * 32 + lane) * 8;
        if (c < d) {
            hv[k].u = *reinterpret_cast<const uint4*>(x + row * d + c);
            if (delta) {
                Pack8 b;
                b.u = *reinterpret_cast<const uint4*>(delta + row * d + c);
#pragma unroll
                for (int e = 0; e < 8; ++e)
                    hv[k].v[e] = __float2bfloat16(__bfloat162float(hv[k].v[e]) + __bfloat162float(b.v[e]));
                *reinterpret_cast<uint4*>(h_out + row * d + c) = hv[k].u;
            }
#pragma unroll
            for (int e = 0; e < 8; ++e) sum += __bfloat162float(hv[k].v[e]);
        }
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
    const float mean = sum / d;
    float ss = 0.f;
#pragma unroll
    for (int k = 0; k < NORM_MAX_CHUNKS; ++k) {
        const int c = (k * 32 + lane) * 8;
        if (c < d) {
#pragma unroll
            for (int e = 0; e < 8; ++e) {
                const float v = __bfloat162float(hv[k].v[e]) - mean;
                ss += v * v;
            }
        }
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
    const float r = rsqrtf(ss / d + eps);
#pragma unroll
    for (int k = 0; k < NORM_MAX_CHUNKS; ++k) {
        const int c = (k * 32 + lane) * 8;
        if (c < d) {
            Pack8 wv, bv, o;
            wv.u = *reinterpret_cast<const uint4*>(w + c);
            bv.u = *reinterpret_cast<const uint4*>(bias + c);
#pragma unroll
            for (int e = 0; e < 8; ++e)
                o.v[e] = __float2bfloat16((__bfloat162float(hv[k].v[e]) - mean) * r * __bfloat162float(wv.v[e]) +
                                          __bfloat162float(bv.v[e]));
            *reinterpret_cast<uint4*>(y + row * d + c) = o.u;
        }
    }
}

// The reduction of MaxSim after the device search's GEMM (not the model: colqwen's exact search on the GPU).
// scores [nq, n·rows] (row-major) = query rows × the rows of n pages of `rows` rows each →
// out[p] = Σ_q max_r scores[q, p·rows + r] in f32, the query rows summed in order (as the CPU scan does).
// One warp per page, lanes striding over the page's rows (coalesced reads), a shuffle max per query row.
template <typename T>
__device__ __forceinline__ float to_f32(T v);
template <>
__device__ __forceinline__ float to_f32<__half>(__half v) {
    return __half2float(v);
}
template <>
__device__ __forceinline__ float to_f32<float>(float v) {
    return v;
}
template <typename T>
__device__ __forceinline__ void maxsim_reduce(const T* __restrict__ s, float* __restrict__ out, int nq, long long n,
                                              int rows) {
    const long long page = ((long long)blockIdx.x * blockDim.x + threadIdx.x) / 32;
    const int lane = threadIdx.x % 32;
    if (page >= n) return;  // the whole warp: `page` is per warp
    const long long stride = n * rows;
    float total = 0.f;
    for (int q = 0; q < nq; ++q) {
        const T* row = s + q * stride + page * rows;
        float m = -INFINITY;
        for (int r = lane; r < rows; r += 32) m = fmaxf(m, to_f32(row[r]));
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
        total += m;
    }
    if (lane == 0) out[page] = total;
}
extern "C" __global__ void maxsim_reduce_f16(const __half* __restrict__ s, float* __restrict__ out, int nq,
                                             long long n, int rows) {
    maxsim_reduce(s, out, nq, n, rows);
}
extern "C" __global__ void maxsim_reduce_f32(const float* __restrict__ s, float* __restrict__ out, int nq,
                                             long long n, int rows) {
    maxsim_reduce(s, out, nq, n, rows);
}

// ---------------------------------------------------------------------------------------------------------------
// Qwen3.5 (ColQwen3.5): partial rotary, zero-centred RMSNorm, and the Gated DeltaNet layers.
// ---------------------------------------------------------------------------------------------------------------

// NeoX rotary of the first r dims of each head (r ≤ d, r even; Qwen3.5 rotates a quarter of each head), the other
// d − r dims copied: the first `heads` heads of each row of `src` (row stride src_rs, head h at h·d) into dst
// [n, heads, d]; cos/sin [n, r/2]. One thread per output element (any d and r: the rotated width of the tiny
// checkpoints is 8). Same recipes as `rope_f32` / `rope_bf16`.
template <typename Table, bool ROUND_EACH_STEP>
__device__ __forceinline__ void rope_partial(const bf16* __restrict__ src, int src_rs, const Table* __restrict__ cos,
                                             const Table* __restrict__ sin, bf16* __restrict__ dst, int n, int heads,
                                             int d, int r) {
    const long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (long long)n * heads * d) return;
    const int e = idx % d;
    const long long t = idx / d;
    const int h = t % heads;
    const long long row = t / heads;
    const bf16* x = src + row * src_rs + (long long)h * d;
    const int half = r / 2;
    if (e >= r) {
        dst[idx] = x[e];
        return;
    }
    const int j = e < half ? e : e - half;
    const float c = (float)cos[row * half + j], s = (float)sin[row * half + j];
    const float xe = __bfloat162float(x[e]);
    // e < r/2: x_e·cos − x_{e+r/2}·sin; e ≥ r/2: x_e·cos + x_{e−r/2}·sin (rotate_half = cat(−x2, x1)).
    const float other = __bfloat162float(x[e < half ? e + half : e - half]);
    float pc = __fmul_rn(xe, c), ps = __fmul_rn(other, s);
    if (ROUND_EACH_STEP) {
        pc = rbf(pc);
        ps = rbf(ps);
    }
    dst[idx] = __float2bfloat16(e < half ? __fadd_rn(pc, -ps) : __fadd_rn(pc, ps));
}

extern "C" __global__ void rope_partial_f32(const bf16* src, int src_rs, const float* cos, const float* sin, bf16* dst,
                                           int n, int heads, int d, int r) {
    rope_partial<float, false>(src, src_rs, cos, sin, dst, n, heads, d, r);
}

extern "C" __global__ void rope_partial_bf16(const bf16* src, int src_rs, const bf16* cos, const bf16* sin, bf16* dst,
                                            int n, int heads, int d, int r) {
    rope_partial<bf16, true>(src, src_rs, cos, sin, dst, n, heads, d, r);
}

// Gated DeltaNet, step 1: the depthwise causal convolution (kernel k, no bias) over the [q | k | v] channels of
// the `in_proj_qkv` output, then SiLU (`causal_conv1d_fn(..., activation="silu")`):
//   out[t, c] = silu(bf16(Σ_j w[c, j] · x[t − (k−1) + j, c]))   — rows before the sequence's first row are zeros;
// the sum in f32 rounded once (the conv's bf16 output), SiLU in f32 rounded once. x [n, c] with row stride x_rs,
// w [c, k], seq_start[t] the first row of row t's sequence; out [n, c] contiguous. One thread per output.
extern "C" __global__ void causal_conv_silu_bf16(const bf16* __restrict__ x, int x_rs, const bf16* __restrict__ w,
                                                 const uint32_t* __restrict__ seq_start, bf16* __restrict__ out, int n,
                                                 int c, int k) {
    const long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (long long)n * c) return;
    const int ch = idx % c;
    const long long t = idx / c;
    const long long first = seq_start[t];
    float acc = 0.f;
    for (int j = 0; j < k; ++j) {
        const long long src = t - (k - 1) + j;
        if (src >= first) acc = fmaf(__bfloat162float(w[ch * k + j]), __bfloat162float(x[src * x_rs + ch]), acc);
    }
    const float y = rbf(acc);
    out[idx] = __float2bfloat16(y / (1.0f + expf(-y)));
}

// Gated DeltaNet, step 2: the chunked gated delta rule over packed sequences, in f32, in two kernels — the form of
// `torch_chunk_gated_delta_rule` (chunks of 64, the in-chunk work done with a unit-lower-triangular solve), split
// as the fused kernels of the field split it (flash-linear-attention's chunked gated delta rule, which vLLM
// serves Qwen3.5 with): everything that only needs one chunk runs for all chunks at once (`gdn_chunk_prepare`),
// and only the state's pass from chunk to chunk runs in order (`gdn_chunk_scan`), parallel over sequences, value
// heads and blocks of value columns (the state's columns never mix).
//
// Per value head h (key head kh = h / (nv / nk), `repeat_interleave`), per chunk of C rows (i, j < C; rows past a
// sequence's end are the reference's zero padding: q = k = v = 0, g = β = 0):
//   q̂ = l2norm(q)·dk^-½, k̂ = l2norm(k)   (l2norm(x) = x·rsqrt(Σx² + 1e-6))
//   β = bf16(sigmoid(b)), g = −exp(A_log)·softplus(a + dt_bias), c_i = Σ_{j≤i} g_j
//   A[i][j] = (β_i k̂_i)·k̂_j · exp(c_i − c_j)  for j < i           → T = (I + A)⁻¹ (forward substitution)
//   W = T·(β k̂ ⊙ exp(c)),  U = T·(β v)                              (k_cumdecay, new_values)
//   P[i][j] = q̂_i·k̂_j · exp(c_i − c_j)  for j ≤ i, else 0           (intra-chunk attention)
// then in order over the chunks of a sequence, with the state S [dk, dv] = 0 at its start:
//   V = U − W·S,  o = (q̂ ⊙ exp(c))·S + P·V,  S = S·exp(c_last) + (k̂ ⊙ exp(c_last − c))ᵀ·V.
constexpr int GDN_C = 64;

// Parameters shared by both kernels.
struct GdnShape {
    int nk, nv, dk, dv;
    int conv_rs;                // row stride of the convolution output [n, 2·nk·dk + nv·dv]
    float scale;                // dk^-½ (as f32, as torch uses the Python float)
};

// Loads the L2-normalised rows of key head `kh` (channel offset `col`) of chunk rows [row0, row0 + m) into
// dst[i·ld + e] · factor(i), zeros for i ≥ m; one warp per row.
template <typename Factor>
__device__ __forceinline__ void gdn_load_normalised(const bf16* __restrict__ conv, int conv_rs, long long row0, int m,
                                                    int col, int dk, float* dst, int ld, Factor factor) {
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, warps = blockDim.x / 32;
    for (int i = warp; i < GDN_C; i += warps) {
        if (i >= m) {
            for (int e = lane; e < dk; e += 32) dst[i * ld + e] = 0.f;
            continue;
        }
        const bf16* src = conv + (row0 + i) * conv_rs + col;
        float ss = 0.f;
        for (int e = lane; e < dk; e += 32) {
            const float v = __bfloat162float(src[e]);
            ss += v * v;
        }
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
        const float inv = 1.0f / sqrtf(ss + 1e-6f);
        const float f = factor(i);
        for (int e = lane; e < dk; e += 32) dst[i * ld + e] = (__bfloat162float(src[e]) * inv) * f;
    }
}

// One block per (chunk, value head): chunks[3·blockIdx.x] = (first row of the sequence, its length, the chunk's
// first row inside it). a, b: the `in_proj_a` / `in_proj_b` outputs [n, nv] (row stride ab_rs). Writes, for the
// chunk's valid rows, W [n, nv, dk], U [n, nv, dv], P [n, nv, C] and c [n, nv] (f32). Dynamic shared memory:
// C·(dk+1) + C·(C+1) + C·(dk+dv) + 3·C floats.
extern "C" __global__ void __launch_bounds__(256)
    gdn_chunk_prepare(const bf16* __restrict__ conv, const bf16* __restrict__ a, const bf16* __restrict__ b, int ab_rs,
                      const float* __restrict__ a_log, const float* __restrict__ dt_bias,
                      const uint32_t* __restrict__ chunks, int nk, int nv_, int dk_, int dv_, int conv_rs, float scale_,
                      float* __restrict__ w_out, float* __restrict__ u_out, float* __restrict__ p_out,
                      float* __restrict__ c_out) {
    const GdnShape sh{nk, nv_, dk_, dv_, conv_rs, scale_};
    extern __shared__ float gdn_prepare_smem[];
    const int h = blockIdx.y, nv = sh.nv, dk = sh.dk, dv = sh.dv;
    const int kh = h / (nv / sh.nk);
    const long long start = chunks[3 * blockIdx.x];
    const int len = chunks[3 * blockIdx.x + 1], c0 = chunks[3 * blockIdx.x + 2];
    const int m = min(GDN_C, len - c0);
    const long long row0 = start + c0;
    const int ldk = dk + 1, lda = GDN_C + 1, ldx = dk + dv;
    float* ks = gdn_prepare_smem;         // [C][dk+1]  k̂
    float* am = ks + GDN_C * ldk;         // [C][C+1]   A (strict lower)
    float* xs = am + GDN_C * lda;         // [C][dk+dv] q̂ (phase 3), then [β k̂ e^c | β v] solved in place
    float* cs = xs + GDN_C * ldx;         // [C] c
    float* bs = cs + GDN_C;               // [C] β
    float* gs = bs + GDN_C;               // [C] g
    const int tid = threadIdx.x, nt = blockDim.x;

    // Gates (f32; β rounded to bf16 as `b.sigmoid()` in the model dtype).
    for (int i = tid; i < GDN_C; i += nt) {
        float g = 0.f, beta = 0.f;
        if (i < m) {
            const float av = __bfloat162float(a[(row0 + i) * ab_rs + h]) + dt_bias[h];
            const float sp = av > 20.f ? av : log1pf(expf(av));
            g = -expf(a_log[h]) * sp;
            const float bv = __bfloat162float(b[(row0 + i) * ab_rs + h]);
            beta = rbf(1.0f / (1.0f + expf(-bv)));
        }
        gs[i] = g;
        bs[i] = beta;
    }
    __syncthreads();
    if (tid == 0) {
        float acc = 0.f;
        for (int i = 0; i < GDN_C; ++i) cs[i] = (acc += gs[i]);
    }
    const int kcol = sh.nk * dk + kh * dk, qcol = kh * dk, vcol = 2 * sh.nk * dk + h * dv;
    gdn_load_normalised(conv, sh.conv_rs, row0, m, kcol, dk, ks, ldk, [](int) { return 1.0f; });
    const float scale = sh.scale;
    gdn_load_normalised(conv, sh.conv_rs, row0, m, qcol, dk, xs, dk, [scale](int) { return scale; });
    __syncthreads();

    // A (strict lower) and P (lower with the diagonal; written straight out).
    for (int p = tid; p < GDN_C * GDN_C; p += nt) {
        const int i = p / GDN_C, j = p % GDN_C;
        float av = 0.f, pv = 0.f;
        if (j <= i) {
            const float decay = expf(cs[i] - cs[j]);
            float kk = 0.f, qk = 0.f;
            for (int e = 0; e < dk; ++e) {
                const float kj = ks[j * ldk + e];
                kk = fmaf(ks[i * ldk + e] * bs[i], kj, kk);
                qk = fmaf(xs[i * dk + e], kj, qk);
            }
            if (j < i) av = kk * decay;
            pv = qk * decay;
        }
        am[i * lda + j] = av;
        if (i < m) p_out[((row0 + i) * nv + h) * GDN_C + j] = pv;
    }
    __syncthreads();

    // Right-hand sides [β k̂ e^c | β v], then (I + A) X = RHS by forward substitution: each thread owns whole
    // columns, so the rows need no barrier between them.
    for (int p = tid; p < GDN_C * ldx; p += nt) {
        const int i = p / ldx, col = p % ldx;
        float v = 0.f;
        if (i < m) {
            v = col < dk ? (ks[i * ldk + col] * bs[i]) * expf(cs[i])
                         : __bfloat162float(conv[(row0 + i) * sh.conv_rs + vcol + col - dk]) * bs[i];
        }
        xs[p] = v;
    }
    __syncthreads();
    for (int col = tid; col < ldx; col += nt) {
        for (int i = 1; i < GDN_C; ++i) {
            float v = xs[i * ldx + col];
            for (int j = 0; j < i; ++j) v = fmaf(-am[i * lda + j], xs[j * ldx + col], v);
            xs[i * ldx + col] = v;
        }
    }
    __syncthreads();
    for (int p = tid; p < m * ldx; p += nt) {
        const int i = p / ldx, col = p % ldx;
        const long long r = (row0 + i) * nv + h;
        if (col < dk) w_out[r * dk + col] = xs[p];
        else u_out[r * dv + col - dk] = xs[p];
    }
    for (int i = tid; i < m; i += nt) c_out[(row0 + i) * nv + h] = cs[i];
}

// A thread's register tile of a product in shared memory: acc[a][j] = Σ_{t<k} A[(r0 + a)·lda + t] · B[t·ldb + c0 + j]
// for a < TI, j < TJ.
template <int TI, int TJ>
__device__ __forceinline__ void tile_product(const float* a, int lda, int r0, const float* b, int ldb, int c0, int k,
                                             float (&acc)[TI][TJ]) {
#pragma unroll
    for (int i = 0; i < TI; ++i)
#pragma unroll
        for (int j = 0; j < TJ; ++j) acc[i][j] = 0.f;
    for (int t = 0; t < k; ++t) {
        float bv[TJ];
#pragma unroll
        for (int j = 0; j < TJ; ++j) bv[j] = b[t * ldb + c0 + j];
#pragma unroll
        for (int i = 0; i < TI; ++i) {
            const float av = a[(r0 + i) * lda + t];
#pragma unroll
            for (int j = 0; j < TJ; ++j) acc[i][j] = fmaf(av, bv[j], acc[i][j]);
        }
    }
}

// One block of 128 threads per (block of BV value columns, value head, sequence): seqs[2·blockIdx.z] = (first
// row, length). Carries S [dk, BV] through the sequence's chunks and writes o as bf16 into core [n, nv, dv].
// Thread tiles: 16 row groups × 8 column groups; for V and o a thread owns rows 4·rg..4·rg+3 and columns
// cg·TJ..cg·TJ+TJ−1 (TJ = BV/8), for S the rows rg, rg+16, … (dk ≤ 128). Dynamic shared memory:
// C·(dk+1) + dk·BV + C·BV + C·(C+1) + C floats.
template <int BV>
__device__ __forceinline__ void gdn_chunk_scan(const bf16* __restrict__ conv, const uint32_t* __restrict__ seqs,
                                               GdnShape sh, const float* __restrict__ w_in,
                                               const float* __restrict__ u_in, const float* __restrict__ p_in,
                                               const float* __restrict__ c_in, bf16* __restrict__ core) {
    constexpr int TJ = BV / 8, TI = GDN_C / 16, MAXR = 8;
    extern __shared__ float gdn_scan_smem[];
    const int h = blockIdx.y, nv = sh.nv, dk = sh.dk, dv = sh.dv;
    const int kh = h / (nv / sh.nk), j0 = blockIdx.x * BV;
    const long long start = seqs[2 * blockIdx.z];
    const int len = seqs[2 * blockIdx.z + 1];
    const int ldx = dk + 1, lda = GDN_C + 1;
    float* xs = gdn_scan_smem;        // [C][dk+1]: W, then q̂ e^c, then k̂ e^{c_last − c}
    float* st = xs + GDN_C * ldx;     // [dk][BV] S
    float* vs = st + dk * BV;         // [C][BV]  U, then V
    float* ps = vs + GDN_C * BV;      // [C][C+1] P
    float* cs = ps + GDN_C * lda;     // [C] c
    const int tid = threadIdx.x, rg = tid / 8, cg = tid % 8;
    const int kcol = sh.nk * dk + kh * dk, qcol = kh * dk;
    for (int p = tid; p < dk * BV; p += blockDim.x) st[p] = 0.f;

    for (int c0 = 0; c0 < len; c0 += GDN_C) {
        const int m = min(GDN_C, len - c0);
        const long long row0 = start + c0;
        __syncthreads();  // the previous chunk's last reads of xs / vs are done
        for (int p = tid; p < GDN_C * dk; p += blockDim.x) {
            const int i = p / dk, e = p % dk;
            xs[i * ldx + e] = i < m ? w_in[((row0 + i) * nv + h) * dk + e] : 0.f;
        }
        for (int p = tid; p < GDN_C * BV; p += blockDim.x) {
            const int i = p / BV, j = p % BV;
            vs[p] = i < m ? u_in[((row0 + i) * nv + h) * dv + j0 + j] : 0.f;
        }
        for (int p = tid; p < GDN_C * GDN_C; p += blockDim.x) {
            const int i = p / GDN_C, j = p % GDN_C;
            ps[i * lda + j] = i < m ? p_in[((row0 + i) * nv + h) * GDN_C + j] : 0.f;
        }
        // Past the end g = 0: c stays at the last valid row's.
        for (int i = tid; i < GDN_C; i += blockDim.x) cs[i] = c_in[(row0 + min(i, m - 1)) * nv + h];
        __syncthreads();
        const float c_last = cs[GDN_C - 1];

        // V = U − W·S (each thread rewrites only its own outputs).
        {
            float acc[TI][TJ];
            tile_product(xs, ldx, rg * TI, st, BV, cg * TJ, dk, acc);
#pragma unroll
            for (int a = 0; a < TI; ++a)
#pragma unroll
                for (int bq = 0; bq < TJ; ++bq) {
                    float& v = vs[(rg * TI + a) * BV + cg * TJ + bq];
                    v = v - acc[a][bq];
                }
        }
        __syncthreads();
        const float scale = sh.scale;
        gdn_load_normalised(conv, sh.conv_rs, row0, m, qcol, dk, xs, ldx,
                            [cs, scale](int i) { return scale * expf(cs[i]); });
        __syncthreads();

        // o = (q̂ e^c)·S + P·V.
        {
            float acc[TI][TJ], intra[TI][TJ];
            tile_product(xs, ldx, rg * TI, st, BV, cg * TJ, dk, acc);
            tile_product(ps, lda, rg * TI, vs, BV, cg * TJ, GDN_C, intra);
#pragma unroll
            for (int a = 0; a < TI; ++a) {
                const int i = rg * TI + a;
                if (i >= m) continue;
                bf16* dst = core + ((row0 + i) * nv + h) * dv + j0 + cg * TJ;
#pragma unroll
                for (int bq = 0; bq < TJ; ++bq) dst[bq] = __float2bfloat16(acc[a][bq] + intra[a][bq]);
            }
        }
        __syncthreads();
        gdn_load_normalised(conv, sh.conv_rs, row0, m, kcol, dk, xs, ldx,
                            [cs, c_last](int i) { return expf(c_last - cs[i]); });
        __syncthreads();

        // S = S·exp(c_last) + (k̂ e^{c_last − c})ᵀ·V.
        {
            const float decay = expf(c_last);
            float acc[MAXR][TJ];
#pragma unroll
            for (int r = 0; r < MAXR; ++r)
#pragma unroll
                for (int bq = 0; bq < TJ; ++bq) acc[r][bq] = 0.f;
            for (int i = 0; i < GDN_C; ++i) {
                float vv[TJ];
#pragma unroll
                for (int bq = 0; bq < TJ; ++bq) vv[bq] = vs[i * BV + cg * TJ + bq];
#pragma unroll
                for (int r = 0; r < MAXR; ++r) {
                    const int e = rg + 16 * r;
                    if (e < dk) {
                        const float kv = xs[i * ldx + e];
#pragma unroll
                        for (int bq = 0; bq < TJ; ++bq) acc[r][bq] = fmaf(kv, vv[bq], acc[r][bq]);
                    }
                }
            }
#pragma unroll
            for (int r = 0; r < MAXR; ++r) {
                const int e = rg + 16 * r;
                if (e >= dk) continue;
#pragma unroll
                for (int bq = 0; bq < TJ; ++bq) {
                    float& s = st[e * BV + cg * TJ + bq];
                    s = s * decay + acc[r][bq];
                }
            }
        }
    }
}

#define GDN_SCAN(BV)                                                                                            \
    extern "C" __global__ void __launch_bounds__(128) gdn_chunk_scan_bv##BV(                                    \
        const bf16* conv, const uint32_t* seqs, int nk, int nv, int dk, int dv, int conv_rs, float scale,       \
        const float* w_in, const float* u_in, const float* p_in, const float* c_in, bf16* core) {              \
        gdn_chunk_scan<BV>(conv, seqs, GdnShape{nk, nv, dk, dv, conv_rs, scale}, w_in, u_in, p_in, c_in, core); \
    }
GDN_SCAN(8)
GDN_SCAN(16)
GDN_SCAN(32)

// Gated DeltaNet, step 3: `Qwen3_5RMSNormGated(core, z)` per (row, value head), one warp each:
//   y = bf16(w · bf16(x · rsqrt(mean(x²) + eps)))  then  out = bf16(y · silu(z))  with silu(z) in f32.
// core [n·nv, dv] contiguous; z [n, nv·dv] with row stride z_rs; out [n, nv·dv] contiguous.
extern "C" __global__ void __launch_bounds__(NORM_WARPS * 32)
    gated_rms_norm_bf16(const bf16* __restrict__ core, const bf16* __restrict__ z, int z_rs,
                        const bf16* __restrict__ w, bf16* __restrict__ out, int rows, int nv, int dv, float eps) {
    const int lane = threadIdx.x % 32;
    const long long r = (long long)blockIdx.x * NORM_WARPS + threadIdx.x / 32;
    if (r >= rows) return;
    const long long t = r / nv;
    const int h = r % nv;
    const bf16* x = core + r * dv;
    float ss = 0.f;
    for (int e = lane; e < dv; e += 32) {
        const float v = __bfloat162float(x[e]);
        ss += v * v;
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
    const float inv = rsqrtf(ss / dv + eps);
    const bf16* zr = z + t * z_rs + (long long)h * dv;
    bf16* dst = out + r * dv;
    for (int e = lane; e < dv; e += 32) {
        const float n = rbf(__bfloat162float(x[e]) * inv);
        const float y = rbf(__bfloat162float(w[e]) * n);
        const float zv = __bfloat162float(zr[e]);
        dst[e] = __float2bfloat16(y * (zv / (1.0f + expf(-zv))));
    }
}
