//! MaxSim over stored pages: the hot loop of every search.
//!
//! A page's rows are stored *block-transposed* ([`layout`]): rows are taken 16 at a time and each block is
//! written dimension-major (`dim × 16` values: value `k` of rows `r..r+16` side by side). With that layout one
//! vector load gives dimension `k` of 16 page rows, and a query row's value `k` is broadcast against it: the dot
//! products of 16 page rows with several query rows accumulate in registers with no horizontal reduction until
//! the page is done (a reduction per query row per page). A trailing partial block is padded by repeating the
//! page's last row, which cannot change a maximum.
//!
//! MaxSim (ColBERT late interaction): for each query row the largest dot product with any page row, summed over
//! query rows. [`colqwen_core::maxsim`] is the plain-loop oracle the tests compare against.
//!
//! The instruction set is chosen once per process ([`Isa::detect`]): AVX-512F (which includes the f16→f32
//! conversion `vcvtph2ps`), else AVX2 + FMA + F16C, else portable Rust. Stored values are f32, f16 or i8; an
//! i8 block ends with the 16 rows' f32 scales ([`layout::encode_i8`]), applied to the 16 dot products before the
//! max (a row's score is its scale × the dot product of the query row with its integer values).

use half::f16;

/// Page rows per block of the stored layout.
pub(crate) const BLOCK: usize = 16;

/// An element type of stored vectors.
pub(crate) trait Elem: Copy + Send + Sync + 'static {
    fn from_f32(v: f32) -> Self;
    fn to_f32(self) -> f32;
}

impl Elem for f32 {
    fn from_f32(v: f32) -> Self {
        v
    }
    fn to_f32(self) -> f32 {
        self
    }
}

impl Elem for f16 {
    fn from_f32(v: f32) -> Self {
        f16::from_f32(v)
    }
    fn to_f32(self) -> f32 {
        self.to_f32()
    }
}

/// The stored layout of a page.
pub(crate) mod layout {
    use super::{BLOCK, Elem};

    /// Rows after padding to whole blocks.
    pub(crate) fn padded_rows(rows: usize) -> usize {
        rows.div_ceil(BLOCK) * BLOCK
    }

    /// Row-major `rows × dim` → block-transposed, padded with copies of the last row.
    pub(crate) fn encode<T: Elem>(rows_data: &[f32], dim: usize, out: &mut Vec<T>) {
        let rows = rows_data.len() / dim;
        let padded = padded_rows(rows);
        out.reserve(padded * dim);
        for block in 0..padded / BLOCK {
            for k in 0..dim {
                for j in 0..BLOCK {
                    let r = (block * BLOCK + j).min(rows - 1);
                    out.push(T::from_f32(rows_data[r * dim + k]));
                }
            }
        }
    }

    /// Bytes of one i8 block: `dim × 16` values, then the 16 rows' f32 scales (little-endian).
    pub(crate) fn i8_block_bytes(dim: usize) -> usize {
        BLOCK * dim + BLOCK * 4
    }

    /// Bytes of one block of 16 rows in `storage` ([`super::Stored::block_len`] elements).
    pub(crate) fn block_bytes(storage: colqwen_core::VectorStorage, dim: usize) -> usize {
        use colqwen_core::VectorStorage;
        fn of<T: super::Stored>(dim: usize) -> usize {
            T::block_len(dim) * size_of::<T>()
        }
        match storage {
            VectorStorage::F32 => of::<f32>(dim),
            VectorStorage::F16 => of::<half::f16>(dim),
            VectorStorage::I8 => of::<i8>(dim),
        }
    }

    /// One row quantized to i8 with its scale `max |x| / 127` (0 for an all-zero row, whose values are then 0).
    pub(crate) fn quantize_row(row: &[f32], out: &mut [i8]) -> f32 {
        let scale = row.iter().fold(0f32, |m, x| m.max(x.abs())) / 127.0;
        for (o, &x) in out.iter_mut().zip(row) {
            *o = if scale > 0.0 { (x / scale).round().clamp(-127.0, 127.0) as i8 } else { 0 };
        }
        scale
    }

    /// Row-major `rows × dim` → i8 blocks ([`i8_block_bytes`] each): the block-transposed values, then the 16
    /// scales; the last block padded with copies of the last row as in [`encode`].
    pub(crate) fn encode_i8(rows_data: &[f32], dim: usize, out: &mut Vec<u8>) {
        let rows = rows_data.len() / dim;
        let padded = padded_rows(rows);
        let mut q = vec![0i8; rows * dim];
        let scales: Vec<f32> =
            rows_data.chunks_exact(dim).zip(q.chunks_exact_mut(dim)).map(|(r, o)| quantize_row(r, o)).collect();
        out.reserve(padded / BLOCK * i8_block_bytes(dim));
        for block in 0..padded / BLOCK {
            let row = |j: usize| (block * BLOCK + j).min(rows - 1);
            for k in 0..dim {
                out.extend((0..BLOCK).map(|j| q[row(j) * dim + k] as u8));
            }
            out.extend((0..BLOCK).flat_map(|j| scales[row(j)].to_le_bytes()));
        }
    }

    /// i8 blocks → row-major `rows × dim` f32 (each value times its row's scale; the padding dropped).
    pub(crate) fn decode_i8(stored: &[i8], rows: usize, dim: usize) -> Vec<f32> {
        let mut out = vec![0.0f32; rows * dim];
        for (b, block) in stored.chunks_exact(i8_block_bytes(dim)).enumerate() {
            let scales = super::block_scales(block, dim);
            for (j, scale) in scales.iter().enumerate().take(rows.saturating_sub(b * BLOCK)) {
                let r = b * BLOCK + j;
                for k in 0..dim {
                    out[r * dim + k] = block[k * BLOCK + j] as f32 * scale;
                }
            }
        }
        out
    }

    /// Block-transposed → row-major `rows × dim` (the padding dropped).
    pub(crate) fn decode<T: Elem>(stored: &[T], rows: usize, dim: usize) -> Vec<f32> {
        let mut out = vec![0.0f32; rows * dim];
        for r in 0..rows {
            let (block, j) = (r / BLOCK, r % BLOCK);
            for k in 0..dim {
                out[r * dim + k] = stored[block * BLOCK * dim + k * BLOCK + j].to_f32();
            }
        }
        out
    }
}

/// The vector instructions this process uses, detected once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Isa {
    /// [`Isa::Avx512`] plus 8-bit dot products (VNNI `vpdpbusd`) and byte permutes (VBMI `vpermb`): i8 pages
    /// are scored against the query quantized to 8 bits ([`QueryU8`], [`maxsim_u8`]), 64 multiply-adds an
    /// instruction instead of 16.
    #[cfg(target_arch = "x86_64")]
    Avx512Vnni,
    /// 16 lanes; f16 converted with `vcvtph2ps`.
    #[cfg(target_arch = "x86_64")]
    Avx512,
    /// 8 lanes with FMA; f16 converted with F16C.
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// Plain Rust (the compiler's baseline vectorisation).
    Portable,
}

impl Isa {
    pub(crate) fn detect() -> Isa {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                if std::arch::is_x86_feature_detected!("avx512bw")
                    && std::arch::is_x86_feature_detected!("avx512vbmi")
                    && std::arch::is_x86_feature_detected!("avx512vnni")
                {
                    return Isa::Avx512Vnni;
                }
                return Isa::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
                && std::arch::is_x86_feature_detected!("f16c")
            {
                return Isa::Avx2;
            }
        }
        Isa::Portable
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512Vnni => "avx512+vnni",
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => "avx512",
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => "avx2",
            Isa::Portable => "portable",
        }
    }
}

/// Stored element types the kernels read.
pub(crate) trait Stored: Copy + Send + Sync + 'static {
    /// Whether a block ends with 16 f32 row scales (i8).
    const SCALED: bool;
    /// Elements one block of 16 rows takes (i8: the values, then 64 bytes of scales).
    fn block_len(dim: usize) -> usize;
    /// The stored value widened to f32 (before its row's scale).
    fn widen(self) -> f32;
}

impl Stored for f32 {
    const SCALED: bool = false;
    fn block_len(dim: usize) -> usize {
        BLOCK * dim
    }
    fn widen(self) -> f32 {
        self
    }
}

impl Stored for f16 {
    const SCALED: bool = false;
    fn block_len(dim: usize) -> usize {
        BLOCK * dim
    }
    fn widen(self) -> f32 {
        self.to_f32()
    }
}

impl Stored for i8 {
    const SCALED: bool = true;
    fn block_len(dim: usize) -> usize {
        layout::i8_block_bytes(dim)
    }
    fn widen(self) -> f32 {
        self as f32
    }
}

/// A stored type with its vector loads (x86); every [`Stored`] type is one.
#[cfg(target_arch = "x86_64")]
pub(crate) trait Kernel: Stored + x86::Load512 + x86::Load256 {}
#[cfg(target_arch = "x86_64")]
impl<T: Stored + x86::Load512 + x86::Load256> Kernel for T {}
/// A stored type with its vector loads (x86); every [`Stored`] type is one.
#[cfg(not(target_arch = "x86_64"))]
pub(crate) trait Kernel: Stored {}
#[cfg(not(target_arch = "x86_64"))]
impl<T: Stored> Kernel for T {}

/// MaxSim of `query` (`nq × dim` row-major f32) against one stored page (whole blocks of `T::block_len`);
/// `best` is scratch of at least `nq` values.
pub(crate) fn maxsim<T: Kernel>(isa: Isa, query: &[f32], page: &[T], dim: usize, best: &mut [f32]) -> f32 {
    debug_assert_eq!(page.len() % T::block_len(dim), 0);
    debug_assert_eq!(query.len() % dim, 0);
    let nq = query.len() / dim;
    let best = &mut best[..nq];
    best.fill(f32::NEG_INFINITY);
    match isa {
        // SAFETY: the variant is only constructed after runtime detection of these features; the slices'
        // lengths are checked above and every index stays inside them.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 | Isa::Avx512Vnni => unsafe { x86::maxsim_avx512(query, page, dim, best) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { x86::maxsim_avx2(query, page, dim, best) },
        Isa::Portable => portable(query, page, dim, best),
    }
    best.iter().sum()
}

/// A query prepared for i8 pages on [`Isa::Avx512Vnni`]: every row quantized like a stored row (integers
/// -127..=127 times one scale, `max |x| / 127`, [`layout::quantize_row`]) and kept as unsigned bytes `v + 128`,
/// the operand type of `vpdpbusd`. The offset is taken back per page row: `Σ (v + 128)·p = Σ v·p + 128·Σ p`.
/// Against the f32 query this moves a query row's dot product with a page row by at most half a query step
/// times the page row's absolute sum (`scale / 2 · Σ |p|`, about 1e-3 of a unit row's score at 128 dims).
pub(crate) struct QueryU8 {
    bytes: Vec<u8>,
    scales: Vec<f32>,
}

impl QueryU8 {
    /// The query for [`maxsim_u8`] where `isa` has 8-bit dot products ([`Isa::Avx512Vnni`]); `None` elsewhere,
    /// and for a `dim` that is not a multiple of 4: those keep scoring i8 pages with the f32 query.
    pub(crate) fn for_isa(isa: Isa, query: &[f32], dim: usize) -> Option<QueryU8> {
        #[cfg(target_arch = "x86_64")]
        if isa == Isa::Avx512Vnni {
            return QueryU8::new(query, dim);
        }
        let _ = (isa, query);
        None
    }

    /// `None` if `dim` is not a multiple of 4 (the kernel takes 4 dimensions at a time).
    fn new(query: &[f32], dim: usize) -> Option<QueryU8> {
        if dim == 0 || !dim.is_multiple_of(4) {
            return None;
        }
        let mut row = vec![0i8; dim];
        let mut bytes = Vec::with_capacity(query.len());
        let mut scales = Vec::with_capacity(query.len() / dim);
        for q in query.chunks_exact(dim) {
            scales.push(layout::quantize_row(q, &mut row));
            bytes.extend(row.iter().map(|&v| (i16::from(v) + 128) as u8));
        }
        Some(QueryU8 { bytes, scales })
    }

    fn rows(&self) -> usize {
        self.scales.len()
    }
}

/// MaxSim of a quantized query ([`QueryU8`]) against one i8 page: each dot product in integers, then times the
/// page row's scale, maximised, times the query row's scale (both scales ≥ 0, so the maximum is unchanged by the
/// order). `best` is scratch of at least one value per query row.
pub(crate) fn maxsim_u8(isa: Isa, query: &QueryU8, page: &[i8], dim: usize, best: &mut [f32]) -> f32 {
    debug_assert_eq!(page.len() % layout::i8_block_bytes(dim), 0);
    debug_assert_eq!(query.bytes.len(), query.rows() * dim);
    let best = &mut best[..query.rows()];
    match isa {
        // SAFETY: `Avx512Vnni` is only constructed after runtime detection of AVX-512 F/BW/VBMI/VNNI; the slices'
        // lengths are checked above (`QueryU8::new` guarantees `dim % 4 == 0`).
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512Vnni => unsafe { x86::maxsim_vnni(&query.bytes, page, dim, best) },
        _ => portable_u8(&query.bytes, page, dim, best),
    }
    best.iter().zip(&query.scales).map(|(b, s)| b * s).sum()
}

/// [`maxsim_u8`]'s arithmetic in plain Rust (the same integers and the same float operations, so the same
/// result to the bit); `best` gets each query row's maximum before its scale.
fn portable_u8(query: &[u8], page: &[i8], dim: usize, best: &mut [f32]) {
    best.fill(f32::NEG_INFINITY);
    for block in page.chunks_exact(layout::i8_block_bytes(dim)) {
        let scales = block_scales(block, dim);
        let mut sums = [0i32; BLOCK];
        for k in 0..dim {
            for (j, s) in sums.iter_mut().enumerate() {
                *s += i32::from(block[k * BLOCK + j]);
            }
        }
        for (q, b) in query.chunks_exact(dim).zip(best.iter_mut()) {
            for (j, (&sum, &scale)) in sums.iter().zip(&scales).enumerate() {
                let dot: i32 = (0..dim).map(|k| i32::from(q[k]) * i32::from(block[k * BLOCK + j])).sum();
                *b = b.max((dot - 128 * sum) as f32 * scale);
            }
        }
    }
}

/// The 16 f32 row scales at the end of an i8 block (`block_len` elements of one byte).
fn block_scales<T: Stored>(block: &[T], dim: usize) -> [f32; BLOCK] {
    debug_assert!(T::SCALED && size_of::<T>() == 1);
    let tail = &block[BLOCK * dim..BLOCK * dim + BLOCK * 4];
    // SAFETY: `T` is one byte wide (i8), so the tail is 64 bytes.
    let bytes: &[u8] = unsafe { std::slice::from_raw_parts(tail.as_ptr().cast::<u8>(), BLOCK * 4) };
    std::array::from_fn(|j| f32::from_le_bytes(bytes[4 * j..4 * j + 4].try_into().expect("4 bytes")))
}

fn portable<T: Stored>(query: &[f32], page: &[T], dim: usize, best: &mut [f32]) {
    let mut acc = [0.0f32; BLOCK];
    for block in page.chunks_exact(T::block_len(dim)) {
        let scales = if T::SCALED { block_scales(block, dim) } else { [1.0; BLOCK] };
        for (q, b) in query.chunks_exact(dim).zip(best.iter_mut()) {
            acc.fill(0.0);
            for (k, &qk) in q.iter().enumerate() {
                let col = &block[k * BLOCK..(k + 1) * BLOCK];
                for (a, v) in acc.iter_mut().zip(col) {
                    *a += qk * v.widen();
                }
            }
            if T::SCALED {
                acc.iter_mut().zip(&scales).for_each(|(a, s)| *a *= s);
            }
            *b = acc.iter().fold(*b, |m, &v| m.max(v));
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! Register-blocked kernels: `G` query rows × one block of 16 page rows per inner loop, `G` a constant so
    //! that the accumulators live in registers (AVX-512: up to 8 × 16 lanes; AVX2: up to 6 × 2 × 8 lanes).
    use std::arch::x86_64::*;

    use super::BLOCK;
    use half::f16;

    /// Dimension `k` of a block's 16 rows, widened to f32.
    pub(crate) trait Load512: super::Stored {
        unsafe fn load512(p: *const Self) -> __m512;
    }
    impl Load512 for f32 {
        #[inline(always)]
        unsafe fn load512(p: *const f32) -> __m512 {
            unsafe { _mm512_loadu_ps(p) }
        }
    }
    impl Load512 for f16 {
        #[inline(always)]
        unsafe fn load512(p: *const f16) -> __m512 {
            unsafe { _mm512_cvtph_ps(_mm256_loadu_si256(p.cast::<__m256i>())) }
        }
    }
    impl Load512 for i8 {
        #[inline(always)]
        unsafe fn load512(p: *const i8) -> __m512 {
            unsafe { _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(p.cast::<__m128i>()))) }
        }
    }

    pub(crate) trait Load256: super::Stored {
        unsafe fn load256(p: *const Self) -> (__m256, __m256);
    }
    impl Load256 for f32 {
        #[inline(always)]
        unsafe fn load256(p: *const f32) -> (__m256, __m256) {
            unsafe { (_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8))) }
        }
    }
    impl Load256 for f16 {
        #[inline(always)]
        unsafe fn load256(p: *const f16) -> (__m256, __m256) {
            unsafe {
                (
                    _mm256_cvtph_ps(_mm_loadu_si128(p.cast::<__m128i>())),
                    _mm256_cvtph_ps(_mm_loadu_si128(p.add(8).cast::<__m128i>())),
                )
            }
        }
    }
    impl Load256 for i8 {
        #[inline(always)]
        unsafe fn load256(p: *const i8) -> (__m256, __m256) {
            unsafe {
                (
                    _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(p.cast::<__m128i>()))),
                    _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(p.add(8).cast::<__m128i>()))),
                )
            }
        }
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn pass512<T: Load512, const G: usize>(q: &[f32], page: &[T], dim: usize, best: &mut [f32]) {
        let stride = T::block_len(dim);
        let blocks = page.len() / stride;
        let mut maxes = [_mm512_set1_ps(f32::NEG_INFINITY); G];
        for b in 0..blocks {
            // SAFETY: block `b` spans `stride` elements inside `page` (i8: the values, then 64 bytes of scales);
            // `q` holds `G * dim` values.
            unsafe {
                let base = page.as_ptr().add(b * stride);
                let mut acc = [_mm512_setzero_ps(); G];
                for k in 0..dim {
                    let v = T::load512(base.add(k * BLOCK));
                    for i in 0..G {
                        acc[i] = _mm512_fmadd_ps(_mm512_set1_ps(*q.get_unchecked(i * dim + k)), v, acc[i]);
                    }
                }
                if T::SCALED {
                    let scales = _mm512_loadu_ps(base.add(BLOCK * dim).cast::<f32>());
                    for a in acc.iter_mut() {
                        *a = _mm512_mul_ps(*a, scales);
                    }
                }
                for i in 0..G {
                    maxes[i] = _mm512_max_ps(maxes[i], acc[i]);
                }
            }
        }
        for i in 0..G {
            best[i] = _mm512_reduce_max_ps(maxes[i]);
        }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn pass256<T: Load256, const G: usize>(q: &[f32], page: &[T], dim: usize, best: &mut [f32]) {
        let stride = T::block_len(dim);
        let blocks = page.len() / stride;
        let mut lo_max = [_mm256_set1_ps(f32::NEG_INFINITY); G];
        let mut hi_max = [_mm256_set1_ps(f32::NEG_INFINITY); G];
        for b in 0..blocks {
            // SAFETY: as in `pass512`.
            unsafe {
                let base = page.as_ptr().add(b * stride);
                let mut lo = [_mm256_setzero_ps(); G];
                let mut hi = [_mm256_setzero_ps(); G];
                for k in 0..dim {
                    let (vl, vh) = T::load256(base.add(k * BLOCK));
                    for i in 0..G {
                        let s = _mm256_set1_ps(*q.get_unchecked(i * dim + k));
                        lo[i] = _mm256_fmadd_ps(s, vl, lo[i]);
                        hi[i] = _mm256_fmadd_ps(s, vh, hi[i]);
                    }
                }
                if T::SCALED {
                    let scales = base.add(BLOCK * dim).cast::<f32>();
                    let (sl, sh) = (_mm256_loadu_ps(scales), _mm256_loadu_ps(scales.add(8)));
                    for i in 0..G {
                        lo[i] = _mm256_mul_ps(lo[i], sl);
                        hi[i] = _mm256_mul_ps(hi[i], sh);
                    }
                }
                for i in 0..G {
                    lo_max[i] = _mm256_max_ps(lo_max[i], lo[i]);
                    hi_max[i] = _mm256_max_ps(hi_max[i], hi[i]);
                }
            }
        }
        for i in 0..G {
            let mut lanes = [0.0f32; 8];
            // SAFETY: `lanes` holds 8 f32.
            unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), _mm256_max_ps(lo_max[i], hi_max[i])) };
            best[i] = lanes.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        }
    }

    /// `vpermb` indices: byte `4j + t` of the result is byte `16t + j` of four stored dimensions (dimension `t`
    /// of row `j`), so that each 32-bit lane holds four consecutive dimensions of one page row, as `vpdpbusd`
    /// multiplies them.
    const ROWS_OF_FOUR: [u8; 64] = {
        let mut idx = [0u8; 64];
        let mut i = 0;
        while i < 64 {
            idx[i] = ((i % 4) * 16 + i / 4) as u8;
            i += 1;
        }
        idx
    };

    /// [`super::maxsim_u8`] for `G` query rows (unsigned bytes, `G × dim`) against one i8 page: per four
    /// dimensions of a block, one 64-byte load, one permute, one `vpdpbusd` for the rows' sums and one per query
    /// row; the accumulators stay in registers for the whole block.
    #[target_feature(enable = "avx512f,avx512bw,avx512vbmi,avx512vnni")]
    unsafe fn pass_vnni<const G: usize>(q: &[u8], page: &[i8], dim: usize, best: &mut [f32]) {
        let stride = super::layout::i8_block_bytes(dim);
        let blocks = page.len() / stride;
        // SAFETY (whole body): block `b` spans `stride` bytes inside `page` (the values, then 64 bytes of
        // scales); `q` holds `G * dim` bytes and `dim % 4 == 0`, so every 4-byte query read is inside it.
        unsafe {
            let perm = _mm512_loadu_si512(ROWS_OF_FOUR.as_ptr().cast());
            let ones = _mm512_set1_epi8(1);
            let mut maxes = [_mm512_set1_ps(f32::NEG_INFINITY); G];
            for b in 0..blocks {
                let base = page.as_ptr().add(b * stride);
                let mut acc = [_mm512_setzero_si512(); G];
                let mut sums = _mm512_setzero_si512();
                for k in (0..dim).step_by(4) {
                    let v = _mm512_permutexvar_epi8(perm, _mm512_loadu_si512(base.add(k * BLOCK).cast()));
                    sums = _mm512_dpbusd_epi32(sums, ones, v);
                    for i in 0..G {
                        let word = q.as_ptr().add(i * dim + k).cast::<i32>().read_unaligned();
                        acc[i] = _mm512_dpbusd_epi32(acc[i], _mm512_set1_epi32(word), v);
                    }
                }
                let offset = _mm512_slli_epi32::<7>(sums);
                let scales = _mm512_loadu_ps(base.add(BLOCK * dim).cast::<f32>());
                for i in 0..G {
                    let dots = _mm512_cvtepi32_ps(_mm512_sub_epi32(acc[i], offset));
                    maxes[i] = _mm512_max_ps(maxes[i], _mm512_mul_ps(dots, scales));
                }
            }
            for i in 0..G {
                best[i] = _mm512_reduce_max_ps(maxes[i]);
            }
        }
    }

    /// Runs the passes over query rows in groups of `$g`, the remainder with its own constant. `$gen` lists the
    /// pass's type parameters before the group size (`[T]` or `[]`).
    macro_rules! groups {
        (@call $pass:ident [$($t:ty),*] $n:literal, $q:expr, $page:expr, $dim:expr, $out:expr) => {
            $pass::<$($t,)* $n>($q, $page, $dim, $out)
        };
        ($pass:ident $gen:tt, $g:literal, $query:ident, $page:ident, $dim:ident, $best:ident, [$($n:literal),*]) => {{
            let nq = $best.len();
            let mut q0 = 0;
            while q0 < nq {
                let g = (nq - q0).min($g);
                let q = &$query[q0 * $dim..(q0 + g) * $dim];
                let out = &mut $best[q0..q0 + g];
                // SAFETY: the caller detected the instruction set; `q` and `out` hold `g` rows.
                unsafe {
                    match g {
                        $($n => groups!(@call $pass $gen $n, q, $page, $dim, out),)*
                        _ => unreachable!("group sizes cover 1..=G"),
                    }
                }
                q0 += g;
            }
        }};
    }

    /// # Safety
    /// The CPU supports AVX-512F.
    #[allow(private_bounds)]
    pub(super) unsafe fn maxsim_avx512<T: Load512>(query: &[f32], page: &[T], dim: usize, best: &mut [f32]) {
        groups!(pass512[T], 8, query, page, dim, best, [1, 2, 3, 4, 5, 6, 7, 8]);
    }

    /// # Safety
    /// The CPU supports AVX-512 F, BW, VBMI and VNNI; `dim % 4 == 0`.
    pub(super) unsafe fn maxsim_vnni(query: &[u8], page: &[i8], dim: usize, best: &mut [f32]) {
        groups!(pass_vnni [], 16, query, page, dim, best, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]);
    }

    /// # Safety
    /// The CPU supports AVX2, FMA and F16C.
    #[allow(private_bounds)]
    pub(super) unsafe fn maxsim_avx2<T: Load256>(query: &[f32], page: &[T], dim: usize, best: &mut [f32]) {
        groups!(pass256[T], 6, query, page, dim, best, [1, 2, 3, 4, 5, 6]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use colqwen_core::maxsim as oracle_maxsim;

    fn data(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5
            })
            .collect()
    }

    fn isas() -> Vec<Isa> {
        let mut v = vec![Isa::Portable];
        let best = Isa::detect();
        #[cfg(target_arch = "x86_64")]
        if best == Isa::Avx512Vnni {
            v.extend([Isa::Avx2, Isa::Avx512]);
        }
        #[cfg(target_arch = "x86_64")]
        if best == Isa::Avx512 {
            v.push(Isa::Avx2);
        }
        if best != Isa::Portable {
            v.push(best);
        }
        v
    }

    #[test]
    fn layout_round_trips() {
        for rows in [1, 15, 16, 17, 40] {
            let dim = 8;
            let d = data(rows * dim, rows as u64);
            let mut stored = Vec::<f32>::new();
            layout::encode(&d, dim, &mut stored);
            assert_eq!(stored.len(), layout::padded_rows(rows) * dim);
            assert_eq!(layout::decode(&stored, rows, dim), d);
        }
    }

    #[test]
    fn i8_rows_round_trip_within_half_a_step() {
        for rows in [1, 15, 16, 17, 40] {
            let dim = 8;
            let mut d = data(rows * dim, rows as u64);
            d[..dim].fill(0.0); // an all-zero row: scale 0, values 0
            let mut stored = Vec::<u8>::new();
            layout::encode_i8(&d, dim, &mut stored);
            let stored: Vec<i8> = stored.iter().map(|&b| b as i8).collect();
            let back = layout::decode_i8(&stored, rows, dim);
            for (row, got) in d.chunks_exact(dim).zip(back.chunks_exact(dim)) {
                let step = row.iter().fold(0f32, |m, v| m.max(v.abs())) / 127.0;
                for (a, b) in row.iter().zip(got) {
                    assert!((a - b).abs() <= step * 0.5 + 1e-7, "{a} vs {b}");
                }
            }
            assert!(back[..dim].iter().all(|&v| v == 0.0));
        }
    }

    #[test]
    fn kernels_equal_the_oracle() {
        for isa in isas() {
            for (rows, nq, dim) in [(1, 1, 128), (17, 3, 128), (100, 20, 128), (33, 9, 64), (16, 13, 128), (5, 8, 16)] {
                let page = data(rows * dim, 7 + rows as u64);
                let query = data(nq * dim, 99 + nq as u64);
                let oracle = oracle_maxsim(&query, &page, dim);
                let mut best = vec![0.0; nq];
                let mut s32 = Vec::<f32>::new();
                layout::encode(&page, dim, &mut s32);
                let got = maxsim(isa, &query, &s32, dim, &mut best);
                assert!((got - oracle).abs() <= 1e-4 * (1.0 + oracle.abs()), "{isa:?} f32 {got} vs {oracle}");
                let mut s16 = Vec::<f16>::new();
                layout::encode(&page, dim, &mut s16);
                let rounded: Vec<f32> = page.iter().map(|&v| f16::from_f32(v).to_f32()).collect();
                let oracle16 = oracle_maxsim(&query, &rounded, dim);
                let got = maxsim(isa, &query, &s16, dim, &mut best);
                assert!((got - oracle16).abs() <= 1e-4 * (1.0 + oracle16.abs()), "{isa:?} f16 {got} vs {oracle16}");
                // i8: the oracle over the decoded rows (value × its row's scale).
                let mut s8 = Vec::<u8>::new();
                layout::encode_i8(&page, dim, &mut s8);
                assert_eq!(s8.len(), layout::padded_rows(rows) / BLOCK * layout::i8_block_bytes(dim));
                let s8: Vec<i8> = s8.iter().map(|&b| b as i8).collect();
                let decoded = layout::decode_i8(&s8, rows, dim);
                let oracle8 = oracle_maxsim(&query, &decoded, dim);
                let got = maxsim(isa, &query, &s8, dim, &mut best);
                assert!((got - oracle8).abs() <= 1e-4 * (1.0 + oracle8.abs()), "{isa:?} i8 {got} vs {oracle8}");
            }
        }
    }

    #[test]
    fn the_8_bit_query_kernel_stays_within_its_bound_of_the_oracle() {
        for (rows, nq, dim) in [(1, 1, 128), (17, 3, 128), (100, 20, 128), (33, 9, 64), (16, 17, 128), (5, 33, 16)] {
            let mut page = data(rows * dim, 3 + rows as u64);
            page[..dim].fill(0.0); // an all-zero row (scale 0)
            let mut query = data(nq * dim, 41 + nq as u64);
            query[..dim].iter_mut().for_each(|v| *v *= 1e-3); // a row of small values
            let mut s8 = Vec::<u8>::new();
            layout::encode_i8(&page, dim, &mut s8);
            let s8: Vec<i8> = s8.iter().map(|&b| b as i8).collect();
            let decoded = layout::decode_i8(&s8, rows, dim);
            let oracle = oracle_maxsim(&query, &decoded, dim);
            let q8 = QueryU8::new(&query, dim).expect("dim is a multiple of 4");
            // Half a query step times the largest absolute row sum, per query row (see `QueryU8`).
            let widest = decoded.chunks_exact(dim).map(|r| r.iter().map(|v| v.abs()).sum::<f32>()).fold(0.0, f32::max);
            let bound: f32 = q8.scales.iter().map(|s| s / 2.0 * widest).sum();
            let mut best = vec![0.0; nq];
            let want = maxsim_u8(Isa::Portable, &q8, &s8, dim, &mut best);
            assert!((want - oracle).abs() <= bound + 1e-4 * (1.0 + oracle.abs()), "{want} vs {oracle} (bound {bound})");
            for isa in isas() {
                let got = maxsim_u8(isa, &q8, &s8, dim, &mut best);
                assert_eq!(got.to_bits(), want.to_bits(), "{isa:?}: {got} vs {want}");
            }
        }
        assert!(QueryU8::new(&[0.5; 6], 6).is_none(), "dimensions not a multiple of 4 keep the f32 query");
    }
}
