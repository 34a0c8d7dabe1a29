//! The 8-bit projection kernel for CPUs with AVX-512 VNNI: Q8_0 weights (32 weights of a row, one f16 scale)
//! against activations quantized the same way (GGML's Q8_0 rule, as candle's generic path does), `vpdpbusd`
//! accumulating 4 products per lane.
//!
//! Why our own and not candle's (`quantized/repack_x86.rs`, which the other CPUs still use): a query encode of
//! the 3B model is ~85 % inside that kernel, and on the 2-core box of the CI kind it ran at about half of the
//! machine's `vpdpbusd` rate (1.8 of 3.7 G/s, `bench/results.md` 2026-12-08). Per 32-weight block and activation
//! row it spends 4–5 float instructions (convert, subtract the +128 offset's correction, two scale multiplies)
//! for 8 `vpdpbusd`, on the same vector ports. Here the correction is the integer accumulator's starting value
//! (`-128 · Σ activation quants` of the block, one broadcast load), so a block costs 8 `vpdpbusd` + 3 float
//! instructions, and 8 activation rows share each weight load (candle: 4). Measured on that box (3B, batch 1,
//! the bench queries): p50 580 → 440 ms per query encode. No crate offers such a kernel for Q8_0 outside candle.
//!
//! The activation scale could cover more values (it is a parameter, [`ACT`]): per 128 values the encode took
//! 390 ms, but per-token cosine against f32 fell on the narrow tiny fixtures (ColQwen3.5, 64 wide: worst token
//! 0.989 → 0.933, where a 128-value block is the whole row), and even per 32 values a different rounding rule
//! (ties to even, an f32 scale) moved that worst token to 0.973. So the activations follow GGML's Q8_0 rule
//! exactly: the quality of the path before this kernel, on every shape.
//!
//! Layout: the weight `[n, k]` is cut into tiles of 16 rows; a tile is `k / 32` blocks (plus zero blocks up to a
//! multiple of 128 values), each the 16 rows' f32 scales and their 32 weights as `u8` (the `i8` + 128), stored
//! `[4-value group (8)][row (16)][4 bytes]`, so one 64-byte load is the operand of one `vpdpbusd` for 16 rows.
//! Rows past `n` are zero weights with scale 0. About 1.13 bytes per weight (Q8_0: 1.06).

#![allow(unsafe_code)]

use half::f16;
use rayon::prelude::*;

/// Output rows per tile: one 512-bit vector of f32.
const ROWS: usize = 16;
/// Weights per Q8_0 block (one scale).
const BLOCK: usize = 32;
/// Activation values per activation scale.
const ACT: usize = 32;
/// Activation rows per kernel call: three 512-bit accumulators each, 24 of the 32 vector registers at 8.
const MT: usize = 8;
/// Bytes of one GGML Q8_0 block: an f16 scale, 32 `i8`.
const Q8_0_BYTES: usize = 2 + BLOCK;

/// 16 rows × 32 weights.
#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct TileBlock {
    d: [f32; ROWS],
    qs: [u8; BLOCK * ROWS],
}

/// A weight `[n, k]` in tiles for [`Tiles::matmul`].
pub(crate) struct Tiles {
    n: usize,
    k: usize,
    /// `k` rounded up to a multiple of [`ACT`].
    kp: usize,
    data: Vec<TileBlock>,
}

/// Whether this CPU runs the kernel (AVX-512 F, BW and VNNI).
pub(crate) fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vnni")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

impl Tiles {
    /// Tiles of the weight whose Q8_0 blocks are `bytes` (`n` rows of `k / 32` blocks, GGML's row-major layout),
    /// built on all cores. `None` where this CPU lacks the kernel's instructions ([`available`]: so every `Tiles`
    /// can run), or unless `k` is a multiple of 32 and `bytes` exactly that long.
    pub(crate) fn pack(bytes: &[u8], n: usize, k: usize) -> Option<Self> {
        if !available() || n == 0 || k == 0 || !k.is_multiple_of(BLOCK) || bytes.len() != n * (k / BLOCK) * Q8_0_BYTES {
            return None;
        }
        let kb = k / BLOCK;
        let kp = k.div_ceil(ACT) * ACT;
        let kbp = kp / BLOCK;
        let tiles = n.div_ceil(ROWS);
        let mut data: Vec<TileBlock> = Vec::with_capacity(tiles * kbp);
        data.spare_capacity_mut().par_chunks_mut(kbp).enumerate().for_each(|(t, out)| {
            for (b, slot) in out.iter_mut().enumerate() {
                // Padding: weight 0 (stored 128) with scale 0.
                let mut tb = TileBlock { d: [0.0; ROWS], qs: [128; BLOCK * ROWS] };
                for r in 0..ROWS {
                    let row = t * ROWS + r;
                    if row >= n || b >= kb {
                        continue;
                    }
                    let o = (row * kb + b) * Q8_0_BYTES;
                    let blk = &bytes[o..o + Q8_0_BYTES];
                    tb.d[r] = f16::from_le_bytes([blk[0], blk[1]]).to_f32();
                    for g in 0..BLOCK / 4 {
                        for j in 0..4 {
                            // i8 → u8 + 128: the sign bit flipped.
                            tb.qs[(g * ROWS + r) * 4 + j] = blk[2 + g * 4 + j] ^ 0x80;
                        }
                    }
                }
                slot.write(tb);
            }
        });
        // SAFETY: the parallel loop above wrote every one of the `tiles * kbp` slots (chunks of `kbp` cover the
        // whole spare capacity, which `with_capacity` made exactly that long).
        unsafe { data.set_len(tiles * kbp) };
        Some(Self { n, k, kp, data })
    }

    /// Output width `n`.
    pub(crate) fn rows(&self) -> usize {
        self.n
    }

    /// Input width `k`.
    pub(crate) fn cols(&self) -> usize {
        self.k
    }

    /// `x` `[m, k]` (row-major f32) times the weight transposed: `[m, n]`. Runs on candle's CPU thread pool, the
    /// one its other CPU kernels use, so that they never compete for the cores.
    pub(crate) fn matmul(&self, x: &[f32], m: usize) -> Vec<f32> {
        assert_eq!(x.len(), m * self.k, "activations of another width");
        let acts = Acts::quantize(x, m, self.k, self.kp);
        let (n, kbp) = (self.n, self.kp / BLOCK);
        let m_units = m.div_ceil(MT);
        let mut out = vec![0f32; m * n];
        let out_addr = out.as_mut_ptr() as usize;
        // Units are (tile, 8 activation rows), the rows inner: a tile's blocks stay in cache for every row group.
        candle_core::utils::barrier_pool().execute_chunked(n.div_ceil(ROWS) * m_units, |range| {
            for u in range {
                let (t, m0) = (u / m_units, (u % m_units) * MT);
                let rows = (m - m0).min(MT);
                let mut buf = [[0f32; ROWS]; MT];
                let tile = &self.data[t * kbp..(t + 1) * kbp];
                run(tile, &acts, m0, &mut buf[..rows]);
                let cols = (n - t * ROWS).min(ROWS);
                for (i, row) in buf[..rows].iter().enumerate() {
                    // SAFETY: `out` has `m * n` values and outlives the pool call (which returns when every
                    // unit is done); unit (t, m0) writes only rows m0.. m0+rows, columns t*16.. t*16+cols,
                    // which no other unit writes.
                    unsafe {
                        let dst = (out_addr as *mut f32).add((m0 + i) * n + t * ROWS);
                        std::ptr::copy_nonoverlapping(row.as_ptr(), dst, cols);
                    }
                }
            }
        });
        out
    }
}

/// Activations quantized per [`ACT`] values by GGML's Q8_0 rule (`d = max|x| / 127` rounded to f16,
/// `q = round(x · 127 / max|x|)`, halves away from zero), with each 32-value block's `-128 · Σq` (the correction
/// of the weights' +128 offset).
struct Acts {
    /// `[m, kp]`, zero past `k`.
    q: Vec<i8>,
    /// `[m, kp / 128]`.
    d: Vec<f32>,
    /// `[m, kp / 32]`.
    corr: Vec<i32>,
    kp: usize,
}

impl Acts {
    fn quantize(x: &[f32], m: usize, k: usize, kp: usize) -> Self {
        let mut q = vec![0i8; m * kp];
        let mut d = vec![0f32; m * kp / ACT];
        let mut corr = vec![0i32; m * kp / BLOCK];
        // One thread: with the loops vectorised (below) a few tens of microseconds per projection, less than the
        // hand-over to the pool would save.
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Acts` are only made for `Tiles`, which exist only where `available()` found AVX-512.
        unsafe {
            quantize_rows(x, k, kp, &mut q, &mut d, &mut corr)
        };
        #[cfg(not(target_arch = "x86_64"))]
        quantize_rows(x, k, kp, &mut q, &mut d, &mut corr);
        Self { q, d, corr, kp }
    }
}

/// [`Acts::quantize`]'s loops, compiled for AVX-512 so that they vectorise (the rounding among them: a call to
/// the C library per value otherwise, 10 % of a query encode).
#[cfg_attr(target_arch = "x86_64", target_feature(enable = "avx512f,avx512bw"))]
fn quantize_rows(x: &[f32], k: usize, kp: usize, q: &mut [i8], d: &mut [f32], corr: &mut [i32]) {
    let rows = x.chunks(k).zip(q.chunks_mut(kp)).zip(d.chunks_mut(kp / ACT)).zip(corr.chunks_mut(kp / BLOCK));
    for (((x, q), d), corr) in rows {
        for (c, d) in d.iter_mut().enumerate() {
            let xs = &x[(c * ACT).min(k)..((c + 1) * ACT).min(k)];
            let amax = xs.iter().fold(0f32, |a, v| a.max(v.abs()));
            *d = f16::from_f32(amax / 127.0).to_f32();
            let id = if amax > 0.0 { 127.0 / amax } else { 0.0 };
            for (q, x) in q[c * ACT..c * ACT + xs.len()].iter_mut().zip(xs) {
                *q = (x * id).round() as i8;
            }
        }
        for (s, corr) in corr.iter_mut().enumerate() {
            *corr = -128 * q[s * BLOCK..(s + 1) * BLOCK].iter().map(|&v| i32::from(v)).sum::<i32>();
        }
    }
}

/// One tile against activation rows `m0..m0 + out.len()` (at most [`MT`]).
fn run(tile: &[TileBlock], acts: &Acts, m0: usize, out: &mut [[f32; ROWS]]) {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: `Tiles::pack` builds tiles only where `available()` found these instructions; the rows exist
        // (`m0 + out.len() <= m`).
        unsafe {
            match out.len() {
                1 => tile_rows::<1>(tile, acts, m0, out),
                2 => tile_rows::<2>(tile, acts, m0, out),
                3 => tile_rows::<3>(tile, acts, m0, out),
                4 => tile_rows::<4>(tile, acts, m0, out),
                5 => tile_rows::<5>(tile, acts, m0, out),
                6 => tile_rows::<6>(tile, acts, m0, out),
                7 => tile_rows::<7>(tile, acts, m0, out),
                _ => tile_rows::<MT>(tile, acts, m0, out),
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (tile, acts, m0, out);
        unreachable!("the VNNI tiles are only built on x86_64");
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn tile_rows<const M: usize>(tile: &[TileBlock], acts: &Acts, m0: usize, out: &mut [[f32; ROWS]]) {
    use std::arch::x86_64::*;
    let kbp = tile.len();
    let kp = acts.kp;
    let (groups, blocks_per_act) = (BLOCK / 4, ACT / BLOCK);
    let mut acc = [_mm512_setzero_ps(); M];
    for c in 0..kbp / blocks_per_act {
        let mut part = [_mm512_setzero_ps(); M];
        for s in 0..blocks_per_act {
            let b = c * blocks_per_act + s;
            let tb = &tile[b];
            let mut isum = [_mm512_setzero_si512(); M];
            for (i, v) in isum.iter_mut().enumerate() {
                *v = _mm512_set1_epi32(acts.corr[(m0 + i) * kbp + b]);
            }
            for g in 0..groups {
                // SAFETY: `qs` holds `groups` 64-byte groups; `TileBlock` is 64-byte aligned and `d` is 64 bytes.
                let w = unsafe { _mm512_load_si512(tb.qs.as_ptr().add(g * 64).cast()) };
                for (i, v) in isum.iter_mut().enumerate() {
                    // SAFETY: row m0+i has `kp` quants; b*32 + g*4 + 4 <= kp.
                    let a = unsafe {
                        std::ptr::read_unaligned(acts.q.as_ptr().add((m0 + i) * kp + b * BLOCK + g * 4).cast::<i32>())
                    };
                    *v = _mm512_dpbusd_epi32(*v, w, _mm512_set1_epi32(a));
                }
            }
            // SAFETY: `d` is 16 f32 at the start of a 64-byte-aligned block.
            let dw = unsafe { _mm512_load_ps(tb.d.as_ptr()) };
            for (p, v) in part.iter_mut().zip(&isum) {
                *p = _mm512_fmadd_ps(_mm512_cvtepi32_ps(*v), dw, *p);
            }
        }
        for (i, (a, p)) in acc.iter_mut().zip(&part).enumerate() {
            *a = _mm512_fmadd_ps(*p, _mm512_set1_ps(acts.d[(m0 + i) * (kp / ACT) + c]), *a);
        }
    }
    for (o, a) in out.iter_mut().zip(&acc) {
        // SAFETY: `o` is 16 f32.
        unsafe { _mm512_storeu_ps(o.as_mut_ptr(), *a) };
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// GGML Q8_0 blocks of `w` `[n, k]` (scale `max|x| / 127`, round half away from zero), as bytes.
    fn q8_0(w: &[f32], k: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for block in w.chunks(BLOCK) {
            let amax = block.iter().fold(0f32, |a, v| a.max(v.abs()));
            let d = amax / 127.0;
            let id = if d > 0.0 { 1.0 / d } else { 0.0 };
            out.extend(f16::from_f32(d).to_le_bytes());
            out.extend(block.iter().map(|v| (v * id).round() as i8 as u8));
        }
        assert_eq!(out.len(), w.len() / k * (k / BLOCK) * Q8_0_BYTES);
        out
    }

    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        (0..n)
            .map(|i| {
                s = s.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                let x = ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0;
                if i % 97 == 0 { 6.0 * x } else { x }
            })
            .collect()
    }

    /// The kernel's arithmetic, written plainly: integer sums per 32-block, the weight scale per block, the
    /// activation scale per [`ACT`] values.
    fn reference(bytes: &[u8], n: usize, k: usize, x: &[f32], m: usize) -> Vec<f32> {
        let kp = k.div_ceil(ACT) * ACT;
        let acts = Acts::quantize(x, m, k, kp);
        let kb = k / BLOCK;
        let mut out = vec![0f32; m * n];
        for i in 0..m {
            for r in 0..n {
                let mut total = 0f64;
                for c in 0..kp / ACT {
                    let mut part = 0f64;
                    let per = ACT / BLOCK;
                    for b in c * per..(c * per + per).min(kb) {
                        let blk = &bytes[(r * kb + b) * Q8_0_BYTES..(r * kb + b + 1) * Q8_0_BYTES];
                        let dw = f16::from_le_bytes([blk[0], blk[1]]).to_f32() as f64;
                        let dot: i64 = (0..BLOCK)
                            .map(|j| i64::from(blk[2 + j] as i8) * i64::from(acts.q[i * kp + b * BLOCK + j]))
                            .sum();
                        part += dot as f64 * dw;
                    }
                    total += part * acts.d[i * kp / ACT + c] as f64;
                }
                out[i * n + r] = total as f32;
            }
        }
        out
    }

    #[test]
    fn the_kernel_computes_its_arithmetic_at_every_shape() {
        if !available() {
            eprintln!("skipped: no AVX-512 VNNI on this CPU");
            return;
        }
        // Tiles cut (n not a multiple of 16), activations padded (k not a multiple of 128), every row count of
        // the kernel and more than one row group.
        for (n, k) in [(48, 256), (37, 96), (16, 2048 + 32)] {
            let w = values(n * k, 1);
            let bytes = q8_0(&w, k);
            let tiles = Tiles::pack(&bytes, n, k).unwrap();
            for m in [1, 3, 8, 13] {
                let x = values(m * k, 2 + m as u64);
                let got = tiles.matmul(&x, m);
                let want = reference(&bytes, n, k, &x, m);
                for (g, w) in got.iter().zip(&want) {
                    assert!((g - w).abs() <= 1e-4 * (1.0 + w.abs()), "{n}×{k}, m {m}: {g} vs {w}");
                }
                // And close to the f32 product (8 bits on both sides).
                for i in 0..m {
                    let exact: Vec<f32> = (0..n).map(|r| (0..k).map(|j| x[i * k + j] * w[r * k + j]).sum()).collect();
                    let row = &got[i * n..(i + 1) * n];
                    let dot: f32 = exact.iter().zip(row).map(|(a, b)| a * b).sum();
                    let norm = |v: &[f32]| v.iter().map(|a| a * a).sum::<f32>().sqrt();
                    let cos = dot / (norm(&exact) * norm(row));
                    assert!(cos > 0.999, "{n}×{k}, m {m}, row {i}: cos {cos}");
                }
            }
        }
        // The same arithmetic as candle's generic Q8_0 path (activations by the same rule), the path of CPUs
        // without VNNI: equal up to the order of the float sums.
        let (n, k, m) = (40, 96, 5);
        let w = candle_core::Tensor::from_vec(values(n * k, 9), (n, k), &candle_core::Device::Cpu).unwrap();
        let q = super::super::quantize(&w).unwrap();
        let x = values(m * k, 10);
        let xt = candle_core::Tensor::from_vec(x.clone(), (m, k), &candle_core::Device::Cpu).unwrap();
        let candles: Vec<f32> =
            candle_core::Module::forward(&candle_core::quantized::QMatMul::from_qtensor(q).unwrap(), &xt)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
        let q = super::super::quantize(&w).unwrap();
        let ours = Tiles::pack(&q.data().unwrap(), n, k).unwrap().matmul(&x, m);
        for (o, c) in ours.iter().zip(&candles) {
            assert!((o - c).abs() <= 1e-5 * (1.0 + c.abs()), "ours {o}, candle's {c}");
        }
        assert!(Tiles::pack(&[0; 10], 1, 32).is_none(), "bytes of another shape");
        assert!(Tiles::pack(&[], 1, 20).is_none(), "k not a multiple of 32");
    }
}
